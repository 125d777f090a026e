package api

import (
	"crypto/sha256"

	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// ChunkWrites runs the Snapshot stream's sink over writes and returns the
// chunks it sent, with the size and SHA-256 it counted.
func ChunkWrites(writes [][]byte) (chunks [][]byte, size uint64, sum []byte, err error) {
	s := &chunkSink{send: func(m *heartbeatpb.SnapshotResponse) error {
		chunks = append(chunks, m.GetChunk())
		return nil
	}, sum: sha256.New(), buf: make([]byte, 0, SnapshotChunkSize)}
	for _, w := range writes {
		if _, err := s.Write(w); err != nil {
			return nil, 0, nil, err
		}
	}
	if err := s.Close(); err != nil {
		return nil, 0, nil, err
	}
	return chunks, s.size, s.sum.Sum(nil), nil
}
