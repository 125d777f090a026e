package api

import (
	"crypto/sha256"
	"hash"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/membership"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// SnapshotChunkSize is the most snapshot data one Snapshot message carries,
// far below any gRPC message limit.
const SnapshotChunkSize = 64 << 10

// Snapshot streams a consistent backup of the membership state: info, the
// FSM's snapshot encoding in chunks of at most SnapshotChunkSize, and the
// digest. The copy is taken after a consistent read's wait (a read index),
// so it holds every write acknowledged before the call.
func (c *Coordinator) Snapshot(_ *heartbeatpb.SnapshotRequest, stream heartbeatpb.Coordinator_SnapshotServer) error {
	if c.cfg.Membership == nil {
		return status.Error(codes.Unimplemented, "snapshot: no membership state on this server")
	}
	ctx := stream.Context()
	if _, err := c.read(ctx, heartbeatpb.Consistency_CONSISTENCY_CONSISTENT); err != nil {
		return err
	}
	rev, snap, err := c.cfg.Membership.Backup()
	if err != nil {
		return status.Errorf(codes.Internal, "snapshot: %v", err)
	}
	defer snap.Release()
	var term uint64
	if r := c.cfg.Election.Raft(); r != nil {
		term = r.CurrentTerm()
	}
	info := &heartbeatpb.SnapshotInfo{ClusterId: c.cfg.ClusterID, NodeId: c.cfg.ID, Revision: rev, Term: term, Format: membership.BackupFormat}
	if err := stream.Send(&heartbeatpb.SnapshotResponse{Part: &heartbeatpb.SnapshotResponse_Info{Info: info}}); err != nil {
		return err
	}
	sink := &chunkSink{send: stream.Send, sum: sha256.New(), buf: make([]byte, 0, SnapshotChunkSize)}
	if err := snap.Persist(sink); err != nil {
		if ctx.Err() != nil {
			return status.FromContextError(ctx.Err()).Err()
		}
		return status.Errorf(codes.Internal, "snapshot: encode: %v", err)
	}
	if sink.err != nil {
		return sink.err
	}
	return stream.Send(&heartbeatpb.SnapshotResponse{Part: &heartbeatpb.SnapshotResponse_Digest{
		Digest: &heartbeatpb.SnapshotDigest{Size: sink.size, Sha256: sink.sum.Sum(nil)},
	}})
}

// chunkSink is the raft.SnapshotSink Persist writes into: it sends full
// chunks as they fill and the last one on Close, hashing everything sent.
type chunkSink struct {
	send func(*heartbeatpb.SnapshotResponse) error
	sum  hash.Hash
	buf  []byte
	size uint64
	err  error // the first send error; every later Write fails with it
}

// Write buffers p, sending every full chunk.
func (s *chunkSink) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		if s.err != nil {
			return n, s.err
		}
		k := min(len(p), SnapshotChunkSize-len(s.buf))
		s.buf = append(s.buf, p[:k]...)
		p, n = p[k:], n+k
		if len(s.buf) == SnapshotChunkSize {
			s.flush()
		}
	}
	return n, s.err
}

func (s *chunkSink) flush() {
	if len(s.buf) == 0 || s.err != nil {
		return
	}
	s.sum.Write(s.buf)
	s.size += uint64(len(s.buf))
	// gRPC may keep a sent message (stats handlers read it lazily): each
	// chunk gets its own buffer.
	s.err = s.send(&heartbeatpb.SnapshotResponse{Part: &heartbeatpb.SnapshotResponse_Chunk{Chunk: s.buf}})
	s.buf = make([]byte, 0, SnapshotChunkSize)
}

// Close sends the last chunk.
func (s *chunkSink) Close() error {
	s.flush()
	return s.err
}

// ID names the sink (raft.SnapshotSink).
func (s *chunkSink) ID() string { return "backup" }

// Cancel drops what is buffered.
func (s *chunkSink) Cancel() error {
	s.buf = s.buf[:0]
	return nil
}
