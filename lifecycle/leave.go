package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/internal/retry"
	"github.com/heartbeat-sidecar/heartbeat/membership"
	mpb "github.com/heartbeat-sidecar/heartbeat/proto/membershippb"
	"github.com/heartbeat-sidecar/heartbeat/proto/raftpb"
)

const (
	// handOffTimeout bounds the leadership hand-off of a leaving leader and
	// the wait until a new leader is known.
	handOffTimeout = 10 * time.Second
	// removeTimeout bounds the removal from the raft configuration,
	// retried while the leader moves.
	removeTimeout = 15 * time.Second
	// markLeftTimeout bounds the MarkLeft of a departure, after the drain.
	markLeftTimeout = 2 * time.Second
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
//  6. record the departure on disk (left.json) and close Left(): the node
//     then shuts down, which the caller of Leave does not wait for.
//
// It returns the number of resources the node owned when the drain began
// (all moved unless the drain timed out; the leader then moves the rest,
// the node being left). Errors are gRPC status errors: FailedPrecondition
// while another Leave runs, after the node stopped, for the last voter or
// a voter whose departure would leave no live majority; Unavailable
// without a leader. When a step after the drain fails, the node stays
// draining (and possibly left) and Leave may be called again.
func (l *Local) Leave(ctx context.Context) (moved int, err error) {
	if l.stopped() {
		return 0, status.Error(codes.FailedPrecondition, "leave: the node is stopping")
	}
	if !l.leaving.CompareAndSwap(false, true) {
		return 0, status.Error(codes.FailedPrecondition, "leave: this node is already leaving")
	}
	defer func() {
		if err != nil {
			l.leaving.Store(false)
		}
	}()
	if err := l.checkLeave(); err != nil {
		return 0, err
	}
	start := time.Now()
	l.cfg.Logger.Info("leaving the cluster")
	if _, ok := l.Self(); ok {
		moved = l.NumOwned(l.cfg.ID)
		if err := l.drain(ctx); err != nil {
			return 0, leaveStatus("drain", err)
		}
	}
	l.handOff(ctx)
	if _, ok := l.Self(); ok {
		if err := l.markLeft(ctx); err != nil {
			return 0, leaveStatus("record the departure", err)
		}
	}
	if err := l.removeSelf(ctx); err != nil {
		return 0, leaveStatus("leave the raft configuration", err)
	}
	l.markLeftOnDisk()
	moved -= l.NumOwned(l.cfg.ID)
	l.cfg.Logger.Info("left the cluster", "moved", moved, "took", time.Since(start))
	l.leftOnce.Do(func() { close(l.left) })
	return moved, nil
}

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
func (l *Local) checkLeave() error {
	if l.el.Leadership().LeaderID == "" {
		return status.Errorf(codes.Unavailable, "leave: %v; nothing can commit, retry later", election.ErrNoLeader)
	}
	ms, err := l.el.Members()
	if err != nil {
		return leaveStatus("read the configuration", err)
	}
	selfVoter, found := false, false
	for _, m := range ms {
		if m.ID == l.cfg.ID {
			found, selfVoter = true, m.Voter
		}
	}
	if !found {
		return status.Error(codes.FailedPrecondition, "leave: this node is not in the raft configuration")
	}
	if m, ok := l.Self(); ok && m.State == membership.StateLeft {
		return status.Error(codes.FailedPrecondition, "leave: this node is already recorded as left")
	}
	if !selfVoter {
		return nil
	}
	voters, live := 0, 0
	for _, m := range ms {
		if !m.Voter || m.ID == l.cfg.ID {
			continue
		}
		voters++
		if rec, ok := l.Record(m.ID); !ok || rec.State == membership.StateAlive {
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

// handOff transfers leadership away when this node leads; TransferLeadership
// waits until another leader is known. A failure is logged: removing a
// leader from the configuration makes it step down too.
func (l *Local) handOff(ctx context.Context) {
	if l.el.Leadership().LeaderID != l.cfg.ID {
		return
	}
	hctx, cancel := context.WithTimeout(ctx, handOffTimeout)
	defer cancel()
	nl, err := l.el.TransferLeadership(hctx, "")
	switch {
	case err != nil:
		l.cfg.Logger.Warn("leave: leadership hand-off failed; the removal will make this node step down", "error", err)
	case nl.LeaderID == "" || nl.LeaderID == l.cfg.ID:
		l.cfg.Logger.Warn("leave: no new leader known after the hand-off", "error", hctx.Err())
	default:
		l.cfg.Logger.Info("leave: leadership handed off", "new_leader", nl.LeaderID)
	}
}

// removeSelf asks the leader, through ClusterAdmin, to remove this node
// from the raft configuration, retrying while the leader moves or none is
// known (retry.Retryable). A node already absent from the leader's
// configuration is done.
func (l *Local) removeSelf(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, removeTimeout)
	defer cancel()
	p := retry.Policy{Min: 50 * time.Millisecond, Max: time.Second,
		OnRetry: func(_ int, err error) { l.cfg.Logger.Debug("leave: removal not done yet", "error", err) }}
	var last error
	err := retry.Do(rctx, p, func(actx context.Context) error {
		_, err := l.admin.Remove(actx, &raftpb.RemoveRequest{Id: l.cfg.ID})
		if status.Code(err) == codes.NotFound {
			return nil
		}
		last = err
		return err
	})
	if err != nil && rctx.Err() != nil {
		// The bound's end decides the code (DeadlineExceeded), not the
		// leader's last answer.
		return fmt.Errorf("%w (last error: %v)", rctx.Err(), last)
	}
	return err
}

// PlannedStop is the membership part of a planned stop (the node's
// Shutdown): drain this node (its resources move to live members), wait
// until it owns nothing (bounded by Config.DrainTimeout and ctx; at once
// when no other member can take work), then record it as left. A node that
// never registered, or already left, has nothing to do. Failures are
// logged: the stop goes on.
func (l *Local) PlannedStop(ctx context.Context) {
	if l.state == nil {
		return
	}
	if m, ok := l.Self(); !ok || m.State == membership.StateLeft {
		return
	}
	if l.el.Leadership().LeaderID == "" {
		// No leader (the rest of the cluster is gone or has no quorum):
		// nothing can commit, do not wait for DrainTimeout in vain.
		l.cfg.Logger.Warn("no leader known: stopping without draining")
		return
	}
	if err := l.drain(ctx); err != nil {
		l.cfg.Logger.Warn("drain before stop failed", "error", err)
	}
	if err := l.markLeft(ctx); err != nil {
		l.cfg.Logger.Warn("could not record the departure (the leader will declare this node dead instead)", "error", err)
	}
}

// drain commits SetDrain for this node and waits until it owns nothing
// (bounded by Config.DrainTimeout and ctx; at once when no other member can
// take work). It returns the drain command's error; a drain that did not
// finish in time is logged, not an error: the departure goes on and the
// leader moves what is left once the node is recorded left.
func (l *Local) drain(ctx context.Context) error {
	dctx, cancel := context.WithTimeout(ctx, l.cfg.DrainTimeout)
	defer cancel()
	start := time.Now()
	if err := l.write(dctx, "drain", func() (*mpb.Command, error) {
		return membership.SetDrainCmd(l.cfg.ID, true), nil
	}); err != nil {
		return err
	}
	err := l.state.WaitFor(dctx, func(s *membership.State) bool {
		if s.NumOwned(l.cfg.ID) == 0 {
			return true
		}
		for _, m := range s.Members() {
			if m.ID != l.cfg.ID && m.CanTake() {
				return false
			}
		}
		return true // nobody could take them: do not wait for nothing
	})
	if err != nil {
		l.cfg.Logger.Warn("drain did not finish before the timeout", "owned", l.NumOwned(l.cfg.ID), "error", err)
	} else {
		l.cfg.Logger.Info("drained", "took", time.Since(start))
	}
	return nil
}

// markLeft records this node as left. It gets its own bound
// (markLeftTimeout): a drain that used the whole DrainTimeout still records
// the departure.
func (l *Local) markLeft(ctx context.Context) error {
	lctx, cancel := context.WithTimeout(ctx, markLeftTimeout)
	defer cancel()
	return l.write(lctx, "leave", func() (*mpb.Command, error) { return membership.MarkLeftCmd(l.cfg.ID), nil })
}

// BeforeRemove records a member that is being removed from the raft
// configuration as left, so that the detector does not declare it dead
// (ClusterAdmin calls it on the leader). A member already left, or unknown
// to the state, passes.
func (l *Local) BeforeRemove(ctx context.Context, id string) error {
	if l.state == nil {
		return nil
	}
	if _, known := l.Record(id); !known {
		return nil
	}
	_, err := membership.Commit(ctx, l.el, membership.MarkLeftCmd(id))
	var rej *membership.RejectedError
	if errors.As(err, &rej) && errors.Is(err, membership.ErrInvalidTransition) {
		return nil
	}
	return err
}

// OnRemoved handles the leader's notice that this node was removed from the
// configuration while it ran: it records a rejoin for its next start and
// stops the node (fail with ErrRemoved). A node that is leaving on its own
// ignores it (Leave goes on and records its departure itself).
func (l *Local) OnRemoved(notice *raftpb.RemovedRequest) error {
	if l.leaving.Load() {
		return nil
	}
	l.cfg.Logger.Warn("the leader removed this node from the cluster; stopping (start it again to rejoin)",
		"leader", notice.GetLeaderId(), "index", notice.GetIndex())
	m := Marker{Phase: PhaseRejoining, ClusterID: l.cfg.ClusterID, LeftAt: time.Now().UTC()}
	if err := WriteMarker(l.cfg.DataDir, m); err != nil {
		l.cfg.Logger.Warn("could not record the removal on disk", "error", err)
	}
	l.fail(fmt.Errorf("%w by %s at index %d; start it again to rejoin", ErrRemoved, notice.GetLeaderId(), notice.GetIndex()))
	return nil
}
