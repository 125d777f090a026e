package election

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// transferSettle bounds the wait, after raft has handed leadership over,
// until this node knows the new leader (raft itself bounds the hand-over by
// its election timeout).
const transferSettle = 10 * time.Second

// TransferLeadership is the one way to hand leadership over: the API's
// StepDown and TransferLeadership, the leader-priority policy, the
// application-health drain and Leave all call it (Shutdown's own hand-off,
// which runs after this node has stopped claiming leadership, shares its
// raft step, transfer). target "" lets raft pick the most
// up-to-date voter; otherwise target must be a voter that may lead
// (CheckTransferTarget). It runs on the leader only, one at a time: while a
// transfer runs here (from the start to the new leader being known) another
// fails with ErrTransferInProgress. This node reports IsLeader false from
// the start.
//
// It returns the leadership as this node sees it afterwards: once another
// node is known to lead (the target, if one was named), or when ctx ends or
// 10s pass after raft's hand-over without that (the view is then whatever
// this node knows; the error is nil because raft did hand over). Errors:
// ErrTransferInProgress, a *NotLeaderError (ErrNotLeader; ErrNoLeader),
// ErrShutdown, ErrUnknownMember, ErrNotVoter, ErrCannotLead,
// ErrNoOtherVoter, ctx's error, or raft's own failure of the hand-over. A
// target that already leads returns at once with no error.
func (n *Node) TransferLeadership(ctx context.Context, target string) (Leadership, error) {
	l := n.Leadership()
	if target != "" {
		if err := n.CheckTransferTarget(target); err != nil {
			return l, err
		}
		if l.LeaderID == target {
			return l, nil // already leads: nothing to do
		}
	}
	if err := n.leaderCheck(); err != nil {
		return l, err
	}
	if target == "" {
		if err := n.checkOtherVoter(); err != nil {
			return l, err
		}
	}
	return n.startTransfer(ctx, target)
}

// CheckTransferTarget reports whether target could be handed leadership,
// as this node knows the cluster: ErrUnknownMember when neither the raft
// configuration nor the membership state knows it; ErrCannotLead for a
// member outside the configuration or one Config.CanLead refuses;
// ErrNotVoter for a non-voter. The current leader passes once it is a
// voter. Any node may ask (a follower checks before it forwards a request
// to the leader, which checks again).
func (n *Node) CheckTransferTarget(target string) error {
	ms, err := n.Members()
	if err != nil {
		return err
	}
	var rm *Member
	for i := range ms {
		if ms[i].ID == target {
			rm = &ms[i]
		}
	}
	verdict := n.canLead(target)
	switch {
	case rm == nil && (verdict == nil || errors.Is(verdict, ErrUnknownMember)):
		return fmt.Errorf("%w: %q is not a member", ErrUnknownMember, target)
	case rm == nil:
		return fmt.Errorf("%w: %q is not in the raft configuration (%v)", ErrCannotLead, target, verdict)
	case !rm.Voter:
		return fmt.Errorf("%w: %q is a %s; only a voter can lead", ErrNotVoter, target, rm.Suffrage)
	case target == n.Leadership().LeaderID:
		return nil
	case verdict == nil || errors.Is(verdict, ErrUnknownMember):
		return nil // no record: raft alone decides
	}
	return fmt.Errorf("%w: %q: %v", ErrCannotLead, target, verdict)
}

// canLead asks Config.CanLead; nil without it.
func (n *Node) canLead(id string) error {
	if n.cfg.CanLead == nil {
		return fmt.Errorf("%w: no membership state", ErrUnknownMember)
	}
	return n.cfg.CanLead(id)
}

// checkOtherVoter returns ErrNoOtherVoter when no voter but this node could
// take over (none in the configuration, or all of them dead or left).
func (n *Node) checkOtherVoter() error {
	ms, err := n.Members()
	if err != nil {
		return err
	}
	for _, m := range ms {
		if m.ID == n.cfg.ID || !m.Voter {
			continue
		}
		if errors.Is(n.canLead(m.ID), ErrMemberGone) {
			continue
		}
		return nil
	}
	return ErrNoOtherVoter
}

// startTransfer runs a checked transfer, one at a time, and waits until
// another node is known to lead (see TransferLeadership).
func (n *Node) startTransfer(ctx context.Context, target string) (Leadership, error) {
	if !n.transferOne.CompareAndSwap(false, true) {
		return n.Leadership(), ErrTransferInProgress
	}
	defer n.transferOne.Store(false)
	start := n.raft.LeadershipTransfer
	if target != "" {
		var srv *raft.Server
		for _, s := range n.raft.GetConfiguration().Configuration().Servers {
			if s.ID == raft.ServerID(target) {
				srv = &s
			}
		}
		if srv == nil {
			return n.Leadership(), fmt.Errorf("%w: %s", ErrUnknownMember, target)
		}
		start = func() raft.Future { return n.raft.LeadershipTransferToServer(srv.ID, srv.Address) }
	}
	if err := n.transfer(ctx, start); err != nil {
		return n.Leadership(), err
	}
	return n.awaitLeader(ctx, func(l Leadership) bool {
		return l.LeaderID != "" && l.LeaderID != n.cfg.ID && (target == "" || l.LeaderID == target)
	}), nil
}

// awaitLeader waits until cond holds for this node's leadership view, or ctx
// ends, or transferSettle passes, and returns the last view.
func (n *Node) awaitLeader(ctx context.Context, cond func(Leadership) bool) Leadership {
	ctx, cancel := context.WithTimeout(ctx, transferSettle)
	defer cancel()
	w := n.Watch()
	defer w.Close()
	events := w.C()
	// The watcher tells changes; the ticker covers a closed watcher.
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		l := n.Leadership()
		if cond(l) {
			return l
		}
		select {
		case <-ctx.Done():
			return l
		case _, ok := <-events:
			if !ok {
				events = nil
			}
		case <-t.C:
		}
	}
}

// transfer starts a leadership transfer and waits for raft's answer. This
// node stops claiming leadership (IsLeader false, watchers told) from the
// start until raft has answered: the target is elected by a TimeoutNow,
// which voters honour although they still know this leader, so this node's
// lease cannot be trusted meanwhile.
func (n *Node) transfer(ctx context.Context, start func() raft.Future) error {
	n.transferring.Add(1)
	n.publish()
	f := start()
	done := make(chan error, 1)
	if !n.spawnFuture(func() {
		err := f.Error()
		n.transferring.Add(-1)
		n.publish()
		done <- err
	}) {
		n.transferring.Add(-1)
		return ErrShutdown
	}
	select {
	case err := <-done:
		return n.mapErr(err)
	case <-ctx.Done():
		return ctx.Err()
	}
}
