package client

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"testing"

	"google.golang.org/grpc"

	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// fakeSnapshotStream replays canned Snapshot messages, then io.EOF.
type fakeSnapshotStream struct {
	grpc.ClientStream
	msgs []*heartbeatpb.SnapshotResponse
}

func (f *fakeSnapshotStream) Recv() (*heartbeatpb.SnapshotResponse, error) {
	if len(f.msgs) == 0 {
		return nil, io.EOF
	}
	m := f.msgs[0]
	f.msgs = f.msgs[1:]
	return m, nil
}

// TestReceiveSnapshot: the stream's data is kept only when it matches the
// digest; a changed chunk, a wrong size, a missing digest or missing info
// are ErrSnapshotDamaged.
func TestReceiveSnapshot(t *testing.T) {
	a, b := bytes.Repeat([]byte("a"), 1000), bytes.Repeat([]byte("b"), 10)
	sum := sha256.Sum256(append(bytes.Clone(a), b...))
	info := &heartbeatpb.SnapshotResponse{Part: &heartbeatpb.SnapshotResponse_Info{Info: &heartbeatpb.SnapshotInfo{ClusterId: "c", Revision: 7, Term: 2}}}
	chunk := func(p []byte) *heartbeatpb.SnapshotResponse {
		return &heartbeatpb.SnapshotResponse{Part: &heartbeatpb.SnapshotResponse_Chunk{Chunk: p}}
	}
	digest := func(size uint64, sha []byte) *heartbeatpb.SnapshotResponse {
		return &heartbeatpb.SnapshotResponse{Part: &heartbeatpb.SnapshotResponse_Digest{Digest: &heartbeatpb.SnapshotDigest{Size: size, Sha256: sha}}}
	}
	damaged := bytes.Clone(b)
	damaged[3] = 'x'
	for _, tc := range []struct {
		name string
		msgs []*heartbeatpb.SnapshotResponse
		ok   bool
	}{
		{"whole", []*heartbeatpb.SnapshotResponse{info, chunk(a), chunk(b), digest(1010, sum[:])}, true},
		{"changed chunk", []*heartbeatpb.SnapshotResponse{info, chunk(a), chunk(damaged), digest(1010, sum[:])}, false},
		{"lost chunk", []*heartbeatpb.SnapshotResponse{info, chunk(a), digest(1010, sum[:])}, false},
		{"no digest", []*heartbeatpb.SnapshotResponse{info, chunk(a), chunk(b)}, false},
		{"no info", []*heartbeatpb.SnapshotResponse{chunk(a), chunk(b), digest(1010, sum[:])}, false},
	} {
		var buf bytes.Buffer
		got, err := receiveSnapshot(&fakeSnapshotStream{msgs: tc.msgs}, &buf)
		switch {
		case tc.ok && (err != nil || got.Size != 1010 || got.Revision != 7 || !bytes.Equal(got.SHA256, sum[:])):
			t.Errorf("%s: %+v, %v; want the whole snapshot", tc.name, got, err)
		case !tc.ok && !errors.Is(err, ErrSnapshotDamaged):
			t.Errorf("%s: %v, want ErrSnapshotDamaged", tc.name, err)
		}
	}
}
