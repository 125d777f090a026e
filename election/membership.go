package election

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/hashicorp/raft"
)

// Member is one server of the cluster configuration.
type Member struct {
	ID      string
	Address string
	// Suffrage is "voter", "nonvoter" or "staging". The leader reports a
	// learner it will promote once it has caught up as "staging" (in raft's
	// configuration it is a non-voter, which the other nodes report).
	Suffrage string
	Voter    bool
	// Leader is true for the member this node knows as leader.
	Leader bool
}

// await waits for a raft future, or for ctx. When ctx ends first it returns
// ctx's error; the future then resolves in the background, in a goroutine
// the node waits for on stop (see spawnFuture).
func (n *Node) await(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	if !n.spawnFuture(func() { done <- f.Error() }) {
		return ErrShutdown
	}
	select {
	case err := <-done:
		return n.mapErr(err)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// timeout turns ctx's deadline into a raft enqueue timeout (0: none).
func timeout(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		if t := time.Until(d); t > 0 {
			return t
		}
		return time.Millisecond
	}
	return 0
}

// notLeader returns a *NotLeaderError naming the leader this node knows.
func (n *Node) notLeader() error {
	addr, id := n.raft.LeaderWithID()
	return &NotLeaderError{LeaderID: string(id), LeaderAddr: string(addr)}
}

// mapErr maps raft's errors to this package's.
func (n *Node) mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w: %v", ErrTransferInProgress, err)
	case errors.Is(err, raft.ErrNotLeader):
		// Refused before the entry was appended: nothing was done.
		return fmt.Errorf("%w (%v)", n.notLeader(), err)
	case errors.Is(err, raft.ErrLeadershipLost):
		// Appended, then deposed: the next leader may still commit it.
		return fmt.Errorf("%w (%v)", ErrLeadershipLost, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%w: %v", ErrShutdown, err)
	}
	return err
}

// leaderCheck returns an error unless this node is raft leader and running.
func (n *Node) leaderCheck() error {
	if n.handingOff.Load() {
		return ErrShutdown
	}
	if n.raft.State() != raft.Leader {
		return n.notLeader()
	}
	return nil
}

// Apply commits data to the log and returns the FSM's response. Leader only:
// elsewhere it returns a *NotLeaderError (errors.Is ErrNotLeader), and
// nothing was done. A leader deposed after it appended the entry returns
// ErrLeadershipLost, and a ctx that ends first returns ctx's error: in both
// cases the entry may still commit.
func (n *Node) Apply(ctx context.Context, data []byte) (any, error) {
	if err := n.leaderCheck(); err != nil {
		return nil, err
	}
	f := n.raft.Apply(data, timeout(ctx))
	if err := n.await(ctx, f); err != nil {
		return nil, err
	}
	n.nudgeCommit()
	return f.Response(), nil
}

// nudgeCommit makes the followers learn the commit index of the entry just
// applied now rather than at raft's next CommitTimeout tick: raft tells a
// follower the commit index only with the next AppendEntries, which comes
// with the next write or after CommitTimeout (Heartbeat keeps that long,
// because on an idle cluster those periodic appends cost more CPU than the
// heartbeats). A barrier is a write that carries it. At most one is in
// flight, so a burst of writes adds one entry, not one per write.
func (n *Node) nudgeCommit() {
	if !n.nudging.CompareAndSwap(false, true) {
		return
	}
	if !n.spawnFuture(func() {
		defer n.nudging.Store(false)
		_ = n.raft.Barrier(n.cfg.HeartbeatTimeout).Error()
	}) {
		n.nudging.Store(false)
	}
}

// Join adds a member through this node, which must be the leader (else a
// *NotLeaderError naming the leader). voter false adds a non-voter. voter
// true adds a learner: the member enters as a non-voter and the leader
// promotes it to voter once it answers and has caught up (promote.go); Join
// returns once the learner is added. Joining an id already present with the
// same address is a no-op, a request for its promotion (a non-voter asked to
// be a voter) or a demotion (a voter asked to be a non-voter; refused with
// ErrQuorumAtRisk when the voters left would not have a live quorum). The
// same id with another address returns ErrIDInUse, another id with the same
// address ErrAddressInUse.
func (n *Node) Join(ctx context.Context, id, addr string, voter bool) error {
	if id == "" || addr == "" {
		return fmt.Errorf("%w: join needs an id and an address", ErrInvalidConfig)
	}
	if err := n.leaderCheck(); err != nil {
		return err
	}
	sid, saddr := raft.ServerID(id), raft.ServerAddress(addr)
	for _, s := range n.raft.GetConfiguration().Configuration().Servers {
		switch {
		case s.ID == sid && s.Address != saddr:
			return fmt.Errorf("%w: %s is a member at %s, not %s", ErrIDInUse, id, s.Address, addr)
		case s.ID != sid && s.Address == saddr:
			return fmt.Errorf("%w: %s belongs to member %s", ErrAddressInUse, addr, s.ID)
		case s.ID == sid:
			isVoter := s.Suffrage == raft.Voter
			switch {
			case isVoter == voter:
				return nil
			case voter:
				n.wantPromotion(sid)
				return nil
			}
			n.learners.remove(sid)
			if err := n.guardChange(ctx, "demoting "+id, withSuffrage(sid, raft.Nonvoter)); err != nil {
				return err
			}
			n.logger.Info("demoting member to non-voter", "member", id)
			return n.await(ctx, n.raft.DemoteVoter(sid, 0, timeout(ctx)))
		}
	}
	as := "non-voter"
	if voter {
		as = "learner (a voter once caught up)"
	}
	n.logger.Info("adding member", "member", id, "addr", addr, "as", as)
	if err := n.await(ctx, n.raft.AddNonvoter(sid, saddr, 0, timeout(ctx))); err != nil {
		return err
	}
	if voter {
		n.wantPromotion(sid)
	}
	return nil
}

// wantPromotion records that learner id asked to be a voter and wakes the
// promotion loop.
func (n *Node) wantPromotion(id raft.ServerID) {
	if !n.learners.has(id) {
		n.logger.Info("learner waits for promotion to voter", "member", id)
	}
	n.learners.add(id)
	kick(n.promoteKick)
}

// Remove removes a member through this node, which must be the leader.
// Removing an id that is not a member is a no-op. Removing a voter is
// refused with ErrQuorumAtRisk when the voters left would not have a live
// quorum (see CheckRemove). Removing the leader itself makes it step down
// once the change commits.
func (n *Node) Remove(ctx context.Context, id string) error {
	found, err := n.checkRemove(ctx, id)
	if err != nil || !found {
		return err
	}
	n.learners.remove(raft.ServerID(id))
	n.logger.Info("removing member", "member", id)
	return n.await(ctx, n.raft.RemoveServer(raft.ServerID(id), 0, timeout(ctx)))
}

// CheckRemove runs Remove's checks without removing anything: a
// *NotLeaderError off the leader; ErrQuorumAtRisk when id is a voter and
// the voters left would not have a live quorum (a refusal is given only
// once it has held for the live window, bounded by ctx). An id that is not
// a member passes. ClusterAdmin calls it before it records a removed member
// as left, so that a refused removal changes nothing.
func (n *Node) CheckRemove(ctx context.Context, id string) error {
	_, err := n.checkRemove(ctx, id)
	return err
}

// checkRemove is CheckRemove; found reports whether id is a member.
func (n *Node) checkRemove(ctx context.Context, id string) (found bool, err error) {
	if err := n.leaderCheck(); err != nil {
		return false, err
	}
	sid := raft.ServerID(id)
	isVoter := false
	for _, s := range n.raft.GetConfiguration().Configuration().Servers {
		if s.ID == sid {
			found, isVoter = true, s.Suffrage == raft.Voter
		}
	}
	if isVoter {
		err = n.guardChange(ctx, "removing "+id, without(sid))
	}
	return found, err
}

// Members returns the latest cluster configuration known to this node
// (possibly not yet committed), sorted by id.
func (n *Node) Members() ([]Member, error) {
	if n.stopped.Load() {
		return nil, ErrShutdown
	}
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, n.mapErr(err)
	}
	_, leader := n.raft.LeaderWithID()
	var out []Member
	leading := n.raft.State() == raft.Leader
	for _, s := range f.Configuration().Servers {
		m := Member{
			ID:       string(s.ID),
			Address:  string(s.Address),
			Suffrage: suffrageName(s.Suffrage),
			Voter:    s.Suffrage == raft.Voter,
			Leader:   s.ID == leader && leader != "",
		}
		if leading && s.Suffrage == raft.Nonvoter && n.learners.has(s.ID) {
			m.Suffrage = "staging"
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func suffrageName(s raft.ServerSuffrage) string {
	switch s {
	case raft.Voter:
		return "voter"
	case raft.Nonvoter:
		return "nonvoter"
	}
	return "staging"
}
