package api_test

import (
	"bytes"
	"crypto/sha256"
	"testing"

	"github.com/heartbeat-sidecar/heartbeat/rpc/api"
)

// TestSnapshotChunks: whatever the sizes of the encoder's writes (one of
// 300 KiB, many small ones), the stream sends chunks of at most
// SnapshotChunkSize, all full but the last, whose concatenation and digest
// are the data.
func TestSnapshotChunks(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 300<<10/16)
	var small [][]byte
	for i := 0; i < len(big); i += 1000 {
		small = append(small, big[i:min(i+1000, len(big))])
	}
	for name, writes := range map[string][][]byte{"one write": {big}, "small writes": small, "empty": nil} {
		chunks, size, sum, err := api.ChunkWrites(writes)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want := bytes.Join(writes, nil)
		for i, c := range chunks {
			if len(c) > api.SnapshotChunkSize || len(c) == 0 || (i < len(chunks)-1 && len(c) != api.SnapshotChunkSize) {
				t.Errorf("%s: chunk %d of %d has %d bytes (limit %d)", name, i, len(chunks), len(c), api.SnapshotChunkSize)
			}
		}
		wantSum := sha256.Sum256(want)
		if got := bytes.Join(chunks, nil); !bytes.Equal(got, want) || size != uint64(len(want)) || !bytes.Equal(sum, wantSum[:]) {
			t.Errorf("%s: %d bytes sent (size %d), want %d with their SHA-256", name, len(got), size, len(want))
		}
	}
}
