package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/membership"
	"github.com/heartbeat-sidecar/heartbeat/proto/raftpb"
	"github.com/heartbeat-sidecar/heartbeat/rpc/api"
)

const (
	// leaveHandOffTimeout bounds the leadership hand-off of a leaving leader
	// and the wait until a new leader is known.
	leaveHandOffTimeout = 10 * time.Second
	// leaveRemoveTimeout bounds the removal from the raft configuration,
	// retried while the leader moves.
	leaveRemoveTimeout = 15 * time.Second
)

// Leave makes this node leave the cluster for good, like a planned stop
// that is not followed by a restart:
//
//  1. check that the cluster can do without it (a leader is known; a voter
//     leaves behind voters with a live majority) — nothing is applied when
//     a check fails;
//  2. drain: its resources move to live members (bounded by DrainTimeout);
//  3. a leader hands leadership to another voter;
//  4. record it as left in the membership state;
//  5. ask the leader (another node by now) to remove it from the raft
//     configuration, and wait for that to commit;
//  6. close Left(): Run returns nil after a graceful Shutdown, which the
//     caller of Leave does not wait for (the Coordinator's Leave answers
//     first; the client server drains in-flight calls before it stops).
//
// It returns the number of resources the node owned when the drain began
// (all moved unless the drain timed out; the leader then moves the rest,
// the node being left). Errors are gRPC status errors: FailedPrecondition
// while another Leave runs, after the node stopped, for the last voter or
// a voter whose departure would leave no live majority; Unavailable
// without a leader. When a step after the drain fails, the node stays
// draining (and possibly left) and Leave may be called again.
func (n *Node) Leave(ctx context.Context) (moved int, err error) {
	if n.stopped.Load() {
		return 0, status.Error(codes.FailedPrecondition, "leave: the node is stopping")
	}
	if !n.leaving.CompareAndSwap(false, true) {
		return 0, status.Error(codes.FailedPrecondition, "leave: this node is already leaving")
	}
	defer func() {
		if err != nil {
			n.leaving.Store(false)
		}
	}()
	if err := n.checkLeave(); err != nil {
		return 0, err
	}
	start := time.Now()
	n.log.Info("leaving the cluster")
	if n.mfsm != nil {
		if _, ok := n.selfMember(); ok {
			moved = n.numOwned(n.cfg.ID)
			if err := n.drain(ctx); err != nil {
				return 0, leaveStatus("drain", err)
			}
		}
	}
	n.handOffForLeave(ctx)
	if n.mfsm != nil {
		if _, ok := n.selfMember(); ok {
			if err := n.markLeft(ctx); err != nil {
				return 0, leaveStatus("record the departure", err)
			}
		}
	}
	if err := n.removeSelf(ctx); err != nil {
		return 0, leaveStatus("leave the raft configuration", err)
	}
	n.markLeftOnDisk()
	if n.mfsm != nil {
		moved -= n.numOwned(n.cfg.ID)
	}
	n.log.Info("left the cluster", "moved", moved, "took", time.Since(start))
	n.leftOnce.Do(func() { close(n.left) })
	return moved, nil
}

// Left is closed once Leave has taken this node out of the cluster; Run
// then shuts the node down and returns nil. An application that does not
// use Run selects on it and calls Shutdown itself.
func (n *Node) Left() <-chan struct{} { return n.left }

// leaveStatus keeps a status error's code and prefixes the step.
func leaveStatus(step string, err error) error {
	if s, ok := status.FromError(err); ok && s.Code() != codes.Unknown {
		return status.Errorf(s.Code(), "leave: %s: %s", step, s.Message())
	}
	code := codes.Unavailable
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	}
	return status.Errorf(code, "leave: %s: %v", step, err)
}

// checkLeave refuses a departure the cluster cannot absorb.
func (n *Node) checkLeave() error {
	if n.el.Leadership().LeaderID == "" {
		return status.Errorf(codes.Unavailable, "leave: %v; nothing can commit, retry later", election.ErrNoLeader)
	}
	ms, err := n.el.Members()
	if err != nil {
		return leaveStatus("read the configuration", err)
	}
	selfVoter, found := false, false
	for _, m := range ms {
		if m.ID == n.cfg.ID {
			found, selfVoter = true, m.Voter
		}
	}
	if !found {
		return status.Error(codes.FailedPrecondition, "leave: this node is not in the raft configuration")
	}
	if m, ok := n.selfMember(); ok && m.State == membership.StateLeft {
		return status.Error(codes.FailedPrecondition, "leave: this node is already recorded as left")
	}
	if !selfVoter {
		return nil
	}
	voters, live := 0, 0
	for _, m := range ms {
		if !m.Voter || m.ID == n.cfg.ID {
			continue
		}
		voters++
		if rec, ok := n.recordOf(m.ID); !ok || rec.State == membership.StateAlive {
			live++
		}
	}
	if voters == 0 {
		return status.Error(codes.FailedPrecondition, "leave: this node is the only voter; the cluster cannot go on without it")
	}
	if live < voters/2+1 {
		return status.Errorf(codes.FailedPrecondition,
			"leave: the %d voters left behind would have %d alive members: no majority", voters, live)
	}
	return nil
}

// recordOf returns a member's record (false without the membership state).
func (n *Node) recordOf(id string) (membership.Member, bool) {
	if n.mfsm == nil {
		return membership.Member{}, false
	}
	var m membership.Member
	var ok bool
	n.mfsm.Read(func(s *membership.State) { m, ok = s.Member(id) })
	return m, ok
}

// handOffForLeave transfers leadership away when this node leads and waits
// until another leader is known. A failure is logged: removing a leader
// from the configuration makes it step down too.
func (n *Node) handOffForLeave(ctx context.Context) {
	if n.el.Leadership().LeaderID != n.cfg.ID {
		return
	}
	hctx, cancel := context.WithTimeout(ctx, leaveHandOffTimeout)
	defer cancel()
	if err := n.el.Transfer(hctx, ""); err != nil {
		n.log.Warn("leave: leadership hand-off failed; the removal will make this node step down", "error", err)
		return
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if l := n.el.Leadership(); l.LeaderID != "" && l.LeaderID != n.cfg.ID {
			n.log.Info("leave: leadership handed off", "new_leader", l.LeaderID)
			return
		}
		select {
		case <-hctx.Done():
			n.log.Warn("leave: no new leader known after the hand-off", "error", hctx.Err())
			return
		case <-t.C:
		}
	}
}

// removeSelf asks the leader, through ClusterAdmin, to remove this node
// from the raft configuration, retrying while the leader moves or none is
// known. A node already absent from the leader's configuration is done.
func (n *Node) removeSelf(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, leaveRemoveTimeout)
	defer cancel()
	backoff := writeRetryMin
	for {
		_, err := n.admin.Remove(rctx, &raftpb.RemoveRequest{Id: n.cfg.ID})
		switch {
		case err == nil, status.Code(err) == codes.NotFound:
			return nil
		case status.Code(err) == codes.Unavailable,
			status.Code(err) == codes.FailedPrecondition && api.ReasonOf(err) == api.ReasonNotLeader:
		default:
			return err
		}
		n.log.Debug("leave: removal not done yet", "error", err)
		select {
		case <-rctx.Done():
			return fmt.Errorf("%w (last error: %v)", rctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, writeRetryMax)
	}
}
