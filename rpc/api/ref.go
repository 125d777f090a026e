package api

import (
	"context"
	"sync/atomic"

	"github.com/hashicorp/raft"

	"github.com/heartbeat-sidecar/heartbeat/election"
)

// ElectionRef is an Election that is filled in later. The ClusterAdmin
// server must be registered on the transport before the election exists (the
// election needs the transport); it reads the election through an
// ElectionRef that is Set once the election is built. Until then it answers
// as a node that knows no leader: Join and Remove fail with a
// NotLeaderError, Members with election.ErrNoLeader, Watch returns nil.
type ElectionRef struct{ p atomic.Pointer[election.Node] }

var (
	_ Election   = (*ElectionRef)(nil)
	_ Transferer = (*ElectionRef)(nil)
	_ Transferer = (*election.Node)(nil)
)

// Set fills in the election; later calls are served by it.
func (r *ElectionRef) Set(e *election.Node) { r.p.Store(e) }

// Leadership implements Election.
func (r *ElectionRef) Leadership() election.Leadership {
	if e := r.p.Load(); e != nil {
		return e.Leadership()
	}
	return election.Leadership{}
}

// Watch implements Election; nil before Set.
func (r *ElectionRef) Watch() *election.Watcher {
	if e := r.p.Load(); e != nil {
		return e.Watch()
	}
	return nil
}

// Members implements Election.
func (r *ElectionRef) Members() ([]election.Member, error) {
	if e := r.p.Load(); e != nil {
		return e.Members()
	}
	return nil, election.ErrNoLeader
}

// Join implements Election.
func (r *ElectionRef) Join(ctx context.Context, id, addr string, voter bool) error {
	if e := r.p.Load(); e != nil {
		return e.Join(ctx, id, addr, voter)
	}
	return &election.NotLeaderError{}
}

// Remove implements Election.
func (r *ElectionRef) Remove(ctx context.Context, id string) error {
	if e := r.p.Load(); e != nil {
		return e.Remove(ctx, id)
	}
	return &election.NotLeaderError{}
}

// CheckRemove implements Election.
func (r *ElectionRef) CheckRemove(ctx context.Context, id string) error {
	if e := r.p.Load(); e != nil {
		return e.CheckRemove(ctx, id)
	}
	return &election.NotLeaderError{}
}

// TransferLeadership implements Transferer; a NotLeaderError before Set.
func (r *ElectionRef) TransferLeadership(ctx context.Context, target string) (election.Leadership, error) {
	if e := r.p.Load(); e != nil {
		return e.TransferLeadership(ctx, target)
	}
	return election.Leadership{}, &election.NotLeaderError{}
}

// CheckTransferTarget implements Transferer; ErrNoLeader before Set.
func (r *ElectionRef) CheckTransferTarget(target string) error {
	if e := r.p.Load(); e != nil {
		return e.CheckTransferTarget(target)
	}
	return election.ErrNoLeader
}

// Raft implements Election; nil before Set.
func (r *ElectionRef) Raft() *raft.Raft {
	if e := r.p.Load(); e != nil {
		return e.Raft()
	}
	return nil
}

// ReadIndex implements ReadIndexer; a NotLeaderError before Set.
func (r *ElectionRef) ReadIndex(ctx context.Context) (uint64, error) {
	if e := r.p.Load(); e != nil {
		return e.ReadIndex(ctx)
	}
	return 0, &election.NotLeaderError{}
}
