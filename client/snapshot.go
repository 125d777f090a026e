package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// ErrSnapshotDamaged: a Snapshot stream ended early or its data does not
// match the digest the node sent. What was written to the writer must be
// thrown away.
var ErrSnapshotDamaged = errors.New("client: snapshot stream damaged")

// Snapshot describes a backup of the cluster state that Client.Snapshot
// received.
type Snapshot struct {
	ClusterID string // the cluster it comes from
	NodeID    string // the node that encoded it
	Revision  uint64 // raft index of the last command it includes
	Term      uint64 // raft term when it was taken
	Format    string // the encoding of the data
	Size      uint64 // bytes of data written
	SHA256    []byte // SHA-256 of the data, as the node sent it and checked
}

// Snapshot streams a consistent backup of the cluster state from the LOCAL
// node (role admin) into w and checks it against the node's digest. Made
// once, bounded by ctx only. On any error (ErrSnapshotDamaged for a short
// or mismatched stream) the bytes already written to w are not a backup.
func (c *Client) Snapshot(ctx context.Context, w io.Writer) (Snapshot, error) {
	var out Snapshot
	err := c.invoke(ctx, callSpec{name: "snapshot", route: routeLocal, once: true, noTimeout: true}, func(ctx context.Context, s heartbeatpb.CoordinatorClient, _ string) error {
		stream, err := s.Snapshot(ctx, &heartbeatpb.SnapshotRequest{})
		if err != nil {
			return err
		}
		out, err = receiveSnapshot(stream, w)
		return err
	})
	return out, err
}

// receiveSnapshot reads info, chunks and the digest off a Snapshot stream.
func receiveSnapshot(stream heartbeatpb.Coordinator_SnapshotClient, w io.Writer) (Snapshot, error) {
	var out Snapshot
	first, err := stream.Recv()
	if err != nil {
		return out, err
	}
	info := first.GetInfo()
	if info == nil {
		return out, fmt.Errorf("%w: the stream does not start with its info", ErrSnapshotDamaged)
	}
	out = Snapshot{ClusterID: info.GetClusterId(), NodeID: info.GetNodeId(), Revision: info.GetRevision(), Term: info.GetTerm(), Format: info.GetFormat()}
	sum := sha256.New()
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out, fmt.Errorf("%w: the stream ended after %d bytes without its digest", ErrSnapshotDamaged, out.Size)
		}
		if err != nil {
			return out, err
		}
		switch p := m.GetPart().(type) {
		case *heartbeatpb.SnapshotResponse_Chunk:
			if _, err := w.Write(p.Chunk); err != nil {
				return out, fmt.Errorf("client: snapshot: write: %w", err)
			}
			sum.Write(p.Chunk)
			out.Size += uint64(len(p.Chunk))
		case *heartbeatpb.SnapshotResponse_Digest:
			got := sum.Sum(nil)
			if p.Digest.GetSize() != out.Size || !bytes.Equal(p.Digest.GetSha256(), got) {
				return out, fmt.Errorf("%w: received %d bytes (SHA-256 %x), the node sent %d (%x)",
					ErrSnapshotDamaged, out.Size, got, p.Digest.GetSize(), p.Digest.GetSha256())
			}
			out.SHA256 = got
			return out, nil
		default:
			return out, fmt.Errorf("%w: unexpected message %T", ErrSnapshotDamaged, p)
		}
	}
}
