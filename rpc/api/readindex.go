package api

import (
	"context"
	"errors"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/internal/batch"
	"github.com/heartbeat-sidecar/heartbeat/proto/raftpb"
)

// ReadIndexer is the optional part of an Election that serves read indexes
// (*election.Node and *ElectionRef implement it): on the leader, a revision
// every acknowledged write is at or below, once leadership is confirmed.
type ReadIndexer interface {
	ReadIndex(ctx context.Context) (uint64, error)
}

var (
	_ ReadIndexer = (*election.Node)(nil)
	_ ReadIndexer = (*ElectionRef)(nil)
)

// ReadIndex serves ClusterAdmin.ReadIndex: the leader's read index.
func (a *Admin) ReadIndex(ctx context.Context, _ *raftpb.ReadIndexRequest) (*raftpb.ReadIndexResponse, error) {
	ri, ok := a.cfg.Election.(ReadIndexer)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "read index: the election serves none")
	}
	a.readIndexServed.Add(1)
	rev, err := ri.ReadIndex(ctx)
	if err != nil {
		return nil, readIndexStatus(err)
	}
	return &raftpb.ReadIndexResponse{Revision: rev, LeaderId: a.cfg.ID}, nil
}

// ReadIndexServed counts the ReadIndex calls this node has served to
// followers (each stands for a batch of their consistent reads).
func (a *Admin) ReadIndexServed() uint64 { return a.readIndexServed.Load() }

// readIndexStatus maps a read-index failure to a status: not the leader
// (FailedPrecondition naming it), no leader, or not ready (Unavailable).
func readIndexStatus(err error) error {
	switch {
	case errors.Is(err, election.ErrNotReadyForReads):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, election.ErrNoLeader):
		return noLeaderStatus("read index")
	}
	return toStatus(err)
}

// readIndexer gets read indexes for a node's consistent reads: from its own
// election when it leads, else from the leader's ClusterAdmin.ReadIndex over
// one connection it keeps to the leader's peer port. Concurrent reads on a
// follower share one request (batch).
type readIndexer struct {
	id, clusterID string
	election      Election
	dialOpts      []grpc.DialOption
	timeout       time.Duration
	remote        *batch.Batcher[uint64]

	mu       sync.Mutex
	conn     *grpc.ClientConn
	connAddr string
	closed   bool
}

func newReadIndexer(ctx context.Context, id, clusterID string, e Election, dialOpts []grpc.DialOption, timeout time.Duration) *readIndexer {
	r := &readIndexer{id: id, clusterID: clusterID, election: e, dialOpts: dialOpts, timeout: timeout}
	r.remote = batch.New(ctx, r.askLeader)
	return r
}

// index returns a read index for a read that began before the call.
func (r *readIndexer) index(ctx context.Context) (uint64, error) {
	l := r.election.Leadership()
	if l.LeaderID == r.id {
		ri, ok := r.election.(ReadIndexer)
		if !ok {
			return 0, status.Error(codes.Unimplemented, "consistent read: the election serves no read index")
		}
		rev, err := ri.ReadIndex(ctx)
		if err == nil {
			return rev, nil
		}
		if !errors.Is(err, election.ErrNotLeader) {
			return 0, readIndexStatus(err)
		}
		// Lost leadership meanwhile: ask the new leader.
	}
	return r.remote.Do(ctx)
}

// askLeader is one batched round on a follower: ClusterAdmin.ReadIndex on
// the leader this node knows.
func (r *readIndexer) askLeader(ctx context.Context) (uint64, error) {
	l := r.election.Leadership()
	if l.LeaderID == "" || l.LeaderAddr == "" {
		return 0, noLeaderStatus("consistent read")
	}
	if l.LeaderID == r.id {
		return 0, status.Error(codes.Unavailable, "consistent read: leadership changed; retry")
	}
	conn, err := r.connTo(l.LeaderAddr)
	if err != nil {
		return 0, err
	}
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	cctx = OutgoingContext(cctx, r.id, r.clusterID)
	resp, err := raftpb.NewClusterAdminClient(conn).ReadIndex(cctx, &raftpb.ReadIndexRequest{})
	if err != nil {
		if s, ok := status.FromError(err); ok && s.Code() != codes.Unknown && s.Code() != codes.DeadlineExceeded {
			return 0, status.Errorf(s.Code(), "read index from leader %s: %s", l.LeaderID, s.Message())
		}
		return 0, status.Errorf(codes.Unavailable, "read index from leader %s at %s: %v", l.LeaderID, l.LeaderAddr, err)
	}
	return resp.GetRevision(), nil
}

// connTo returns the kept connection to addr, replacing one to another
// address (the leader moved).
func (r *readIndexer) connTo(addr string) (*grpc.ClientConn, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, status.Error(codes.Unavailable, ErrClosed.Error())
	}
	if r.conn != nil && r.connAddr == addr {
		return r.conn, nil
	}
	if r.conn != nil {
		r.conn.Close()
		r.conn = nil
	}
	conn, err := grpc.NewClient(addr, r.dialOpts...)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "read index: dial leader at %s: %v", addr, err)
	}
	r.conn, r.connAddr = conn, addr
	return conn, nil
}

// close closes the kept connection.
func (r *readIndexer) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	if r.conn != nil {
		r.conn.Close()
		r.conn = nil
	}
}
