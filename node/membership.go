package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/membership"
	mpb "github.com/heartbeat-sidecar/heartbeat/proto/membershippb"
)

// Retry pacing of the node's own membership writes (registration, health,
// drain): they go through the leader and fail while none is known.
const (
	writeRetryMin     = 50 * time.Millisecond
	writeRetryMax     = time.Second
	writeAttemptLimit = 5 * time.Second
	// leaveTimeout bounds the MarkLeft of a planned stop, after the drain.
	leaveTimeout = 2 * time.Second
)

// Membership is the node's replicated membership state; nil when Config.FSM
// replaced it with another state machine. Read it (View, Read, Subscribe);
// never Apply to it directly.
func (n *Node) Membership() *membership.FSM { return n.mfsm }

// Reconciler is the node's reconcile loop (it acts only while this node
// leads); nil without the membership state.
func (n *Node) Reconciler() *membership.Reconciler { return n.rec }

// Commit commits a membership command through the leader (forwarded when
// this node follows) and returns its result; errors are gRPC status errors
// (see api.Coordinator.Commit).
func (n *Node) Commit(ctx context.Context, cmd *mpb.Command) (*membership.Result, error) {
	if n.mfsm == nil {
		return nil, status.Error(codes.Unimplemented, "node runs without the membership state")
	}
	return n.coord.Commit(ctx, cmd)
}

// setupMembership builds the reconciler over the election and transport.
func (n *Node) setupMembership() error {
	rc := n.cfg.Reconciler
	rc.SelfID = n.cfg.ID
	if rc.Logger == nil {
		rc.Logger = n.log.Named("reconciler")
	}
	rc.Grants, rc.OwnershipLease = grantSource{n}, n.el.OwnershipLeaseDuration()
	leader := membership.LeaderFunc(func() bool { return n.el.Leadership().IsLeader })
	hb := membership.HeartbeatSourceFunc(n.lastReplies)
	rec, err := membership.NewReconciler(rc, n.mfsm, n.el, leader, hb)
	if err != nil {
		return fmt.Errorf("node: reconciler: %w", err)
	}
	n.rec = rec
	return nil
}

// grantSource gives the reconciler the ownership grants this node sent as
// leader (membership.Grants).
type grantSource struct{ n *Node }

func (g grantSource) LastGrants() map[string]time.Time {
	src := g.n.tr.Grants()
	out := make(map[string]time.Time, len(src))
	for addr, t := range src {
		out[string(addr)] = t
	}
	return out
}

func (g grantSource) SelfGranted() time.Time { return g.n.el.SelfGrantedAt() }

// lastReplies converts the transport's acks for the failure detector.
func (n *Node) lastReplies() map[string]time.Time {
	acks := n.tr.Acks()
	out := make(map[string]time.Time, len(acks))
	for addr, a := range acks {
		out[string(addr)] = a.RepliedAt
	}
	return out
}

// startMembership starts the reconciler, the leader-priority loop, the
// self-registration and the application-health loops, all owned by the
// node's WaitGroup and ended by bgCancel (the reconciler by recCancel, which
// Shutdown calls later so that a draining leader still moves its own
// resources).
func (n *Node) startMembership() {
	rctx, cancel := context.WithCancel(context.Background())
	n.recCancel = cancel
	n.wg.Add(4)
	// The reconciler and the priority loop act only on the leader: each
	// sleeps on a leadership watch while this node follows.
	recWatch, prioWatch := n.el.Watch(), n.el.Watch()
	go func() { defer n.wg.Done(); defer recWatch.Close(); _ = membership.RunGated(rctx, n.rec, recWatch.C()) }()
	go func() { defer n.wg.Done(); defer prioWatch.Close(); n.priorityLoop(n.bgCtx, prioWatch.C()) }()
	go func() { defer n.wg.Done(); n.registerLoop(n.bgCtx) }()
	go func() { defer n.wg.Done(); n.app.run(n.bgCtx) }()
	if n.app.url != "" {
		n.wg.Add(1)
		go func() { defer n.wg.Done(); n.app.pollLoop(n.bgCtx) }()
	}
}

// selfSpec is this node's member record: its peer address exactly as the raft
// configuration holds it (the detector keys heartbeats by it), its dialable
// client and HTTP addresses, and its suffrage.
func (n *Node) selfSpec() (membership.MemberSpec, bool) {
	spec := membership.MemberSpec{ID: n.cfg.ID, ClientAddr: n.advertised(n.ClientAddr()), HTTPAddr: n.advertised(n.HTTPAddr()),
		LeaderPriority: n.cfg.LeaderPriority}
	ms, err := n.el.Members()
	if err != nil {
		return spec, false
	}
	for _, m := range ms {
		if m.ID == n.cfg.ID {
			spec.PeerAddr, spec.Voter = m.Address, m.Voter
			return spec, true
		}
	}
	return spec, false // not in the configuration yet (joining)
}

// advertised turns a bound wildcard address into one other nodes can dial,
// using the host of the advertised peer address.
func (n *Node) advertised(bound string) string {
	host, port, err := net.SplitHostPort(bound)
	if err != nil {
		return bound
	}
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		return bound
	}
	phost, _, err := net.SplitHostPort(n.PeerAddr())
	if err != nil {
		return bound
	}
	return net.JoinHostPort(phost, port)
}

// registerLoop commits UpsertMember for this node, retrying until it
// succeeds (once the node is in the raft configuration and a leader with
// the membership state is reachable) or ctx ends.
func (n *Node) registerLoop(ctx context.Context) {
	err := n.retry(ctx, "register", func(actx context.Context) error {
		spec, ok := n.selfSpec()
		if !ok {
			return errors.New("not in the raft configuration yet")
		}
		_, err := n.Commit(actx, membership.UpsertMemberCmd(spec))
		return err
	})
	if err == nil {
		n.log.Debug("registered in the membership state")
	}
}

// retry calls f with a bounded context until it returns nil or ctx ends
// (returning ctx's error). A refusal that retrying cannot cure
// (InvalidArgument, NotFound, FailedPrecondition other than a moved leader,
// PermissionDenied) is returned at once.
func (n *Node) retry(ctx context.Context, what string, f func(context.Context) error) error {
	backoff := writeRetryMin
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, writeAttemptLimit)
		err := f(actx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		switch status.Code(err) {
		case codes.InvalidArgument, codes.NotFound, codes.PermissionDenied, codes.Unimplemented:
			n.log.Warn("membership write refused", "what", what, "error", err)
			return err
		}
		if attempt%20 == 0 {
			n.log.Warn("membership write still failing", "what", what, "attempt", attempt, "error", err)
		} else {
			n.log.Debug("membership write failed", "what", what, "attempt", attempt, "error", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, writeRetryMax)
	}
}

// selfMember returns this node's member record.
func (n *Node) selfMember() (membership.Member, bool) { return n.recordOf(n.cfg.ID) }

// leave is the membership part of a planned stop: drain this node (its
// resources move to live members), wait until it owns nothing (bounded by
// Config.DrainTimeout and ctx; at once when no other member can take work),
// then record it as left. A node that never registered, or already left,
// has nothing to do. Failures are logged: the stop goes on.
func (n *Node) leave(ctx context.Context) {
	if n.mfsm == nil {
		return
	}
	if m, ok := n.selfMember(); !ok || m.State == membership.StateLeft {
		return
	}
	if n.el.Leadership().LeaderID == "" {
		// No leader (the rest of the cluster is gone or has no quorum):
		// nothing can commit, do not wait for DrainTimeout in vain.
		n.log.Warn("no leader known: stopping without draining")
		return
	}
	if err := n.drain(ctx); err != nil {
		n.log.Warn("drain before stop failed", "error", err)
	}
	if err := n.markLeft(ctx); err != nil {
		n.log.Warn("could not record the departure (the leader will declare this node dead instead)", "error", err)
	}
}

// drain commits SetDrain for this node and waits until it owns nothing
// (bounded by Config.DrainTimeout and ctx; at once when no other member can
// take work). It returns the drain command's error; a drain that did not
// finish in time is logged, not an error: the departure goes on and the
// leader moves what is left once the node is recorded left.
func (n *Node) drain(ctx context.Context) error {
	dctx, cancel := context.WithTimeout(ctx, n.cfg.DrainTimeout)
	defer cancel()
	start := time.Now()
	if err := n.retry(dctx, "drain", func(actx context.Context) error {
		_, err := n.Commit(actx, membership.SetDrainCmd(n.cfg.ID, true))
		return err
	}); err != nil {
		return err
	}
	err := n.mfsm.WaitFor(dctx, func(s *membership.State) bool {
		if s.NumOwned(n.cfg.ID) == 0 {
			return true
		}
		for _, m := range s.Members() {
			if m.ID != n.cfg.ID && m.CanTake() {
				return false
			}
		}
		return true // nobody could take them: do not wait for nothing
	})
	if err != nil {
		n.log.Warn("drain did not finish before the timeout", "owned", n.numOwned(n.cfg.ID), "error", err)
	} else {
		n.log.Info("drained", "took", time.Since(start))
	}
	return nil
}

// markLeft records this node as left. It gets its own bound (leaveTimeout):
// a drain that used the whole DrainTimeout still records the departure.
func (n *Node) markLeft(ctx context.Context) error {
	lctx, lcancel := context.WithTimeout(ctx, leaveTimeout)
	defer lcancel()
	return n.retry(lctx, "leave", func(actx context.Context) error {
		_, err := n.Commit(actx, membership.MarkLeftCmd(n.cfg.ID))
		return err
	})
}

func (n *Node) numOwned(id string) int {
	var c int
	n.mfsm.Read(func(s *membership.State) { c = s.NumOwned(id) })
	return c
}

// beforeRemove records a member that is being removed from the raft
// configuration as left, so that the detector does not declare it dead.
func (n *Node) beforeRemove(ctx context.Context, id string) error {
	if n.mfsm == nil {
		return nil
	}
	var known bool
	n.mfsm.Read(func(s *membership.State) { _, known = s.Member(id) })
	if !known {
		return nil
	}
	_, err := membership.Commit(ctx, n.el, membership.MarkLeftCmd(id))
	var rej *membership.RejectedError
	if errors.As(err, &rej) && errors.Is(err, membership.ErrInvalidTransition) {
		return nil
	}
	return err
}
