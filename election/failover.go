package election

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/hashicorp/raft"
)

// holdTarget is the leader a follower holds a stream to: its id, address and
// the term it was elected in.
type holdTarget struct {
	id   raft.ServerID
	addr raft.ServerAddress
	term uint64
}

// idleRecheck is how often the failover loop re-reads raft's state when no
// observation woke it (a configuration change that makes this node a voter
// is not observed).
const idleRecheck = time.Second

// currentTarget returns the leader to hold, if this node is a voter follower
// with a known leader other than itself.
func (n *Node) currentTarget() (holdTarget, bool) {
	if n.raft.State() != raft.Follower {
		return holdTarget{}, false
	}
	l := n.Leadership()
	if l.LeaderID == "" || l.LeaderID == n.cfg.ID || l.FencingToken == 0 {
		return holdTarget{}, false
	}
	self := raft.ServerID(n.cfg.ID)
	for _, s := range n.voters() {
		if s.ID == self {
			return holdTarget{id: raft.ServerID(l.LeaderID), addr: raft.ServerAddress(l.LeaderAddr), term: l.FencingToken}, true
		}
	}
	return holdTarget{}, false
}

// cancelStaleHold cancels the running Hold if its leader is no longer the
// one to hold (called on every observation).
func (n *Node) cancelStaleHold() {
	n.holdMu.Lock()
	defer n.holdMu.Unlock()
	if n.holdCancel == nil {
		return
	}
	if cur, ok := n.currentTarget(); !ok || cur != n.holdFor {
		n.holdCancel()
		n.holdCancel = nil
	}
}

// waitKick waits for d, an observation, or the node stopping.
func (n *Node) waitKick(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-n.ctx.Done():
	case <-n.holdKick:
	case <-t.C:
	}
}

// sleep waits for d or the node stopping; false if stopping.
func (n *Node) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-n.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// failoverLoop holds a stream to the leader while this node is a voter
// follower, and runs the crash check when the leader closes it. See the
// package documentation, "Fast crash failover".
func (n *Node) failoverLoop() {
	defer n.wg.Done()
	var (
		saidGoodbye, primed holdTarget
		openFails           int // consecutive failures to open a stream to primed
	)
	for n.ctx.Err() == nil {
		t, ok := n.currentTarget()
		if !ok || t == saidGoodbye {
			n.waitKick(idleRecheck)
			continue
		}
		if t != primed {
			primed, openFails = t, 0
			n.primeConfirm(t)
		}
		err := n.hold(t)
		if err == nil || errorsIs(err, n.cfg.ErrGoodbye) || errorsIs(err, n.cfg.ErrPeerClosed) {
			openFails = 0 // the stream had opened
		}
		switch {
		case n.ctx.Err() != nil:
			return
		case err == nil: // leader changed; hold the new one
		case errorsIs(err, n.cfg.ErrGoodbye):
			n.logger.Info("leader said goodbye; waiting for the next leader", "leader", t.id)
			saidGoodbye = t
		case errorsIs(err, n.cfg.ErrPeerClosed):
			if !n.onPeerClosed(t, time.Now()) {
				// Not a crash: the leader lives. Do not spin on a link that
				// keeps breaking.
				n.sleep(n.backoff())
			}
		default:
			openFails++
			d := n.openBackoff(openFails)
			n.logger.Debug("cannot hold a stream to the leader; retrying", "leader", t.id, "error", err, "in", d)
			n.waitKick(d)
		}
	}
}

// backoff is a random 50-200 ms pause.
func (n *Node) backoff() time.Duration {
	return 50*time.Millisecond + rand.N(150*time.Millisecond)
}

// maxOpenBackoff caps the pause between attempts to open a stream to a
// leader that keeps refusing it (for instance a peer without the Hold RPC).
const maxOpenBackoff = 2 * time.Second

// openBackoff is the pause after the k-th consecutive failure to open a
// stream: 50-200 ms at first, doubling up to maxOpenBackoff.
func (n *Node) openBackoff(k int) time.Duration {
	d := n.backoff()
	for i := 1; i < k && d < maxOpenBackoff; i++ {
		d *= 2
	}
	return min(d, maxOpenBackoff)
}

// hold runs one Hold on t, registered so that a leader change cancels it.
// It returns nil when canceled.
func (n *Node) hold(t holdTarget) error {
	ctx, cancel := context.WithCancel(n.ctx)
	defer cancel()
	n.holdMu.Lock()
	n.holdFor, n.holdCancel = t, cancel
	n.holdMu.Unlock()
	// An observation between currentTarget and the registration above
	// would have found nothing to cancel: check again.
	n.cancelStaleHold()
	n.holdSince.Store(time.Now().UnixNano())
	err := n.tr.Hold(ctx, t.addr)
	n.holdSince.Store(0)
	n.holdMu.Lock()
	n.holdCancel = nil
	n.holdMu.Unlock()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// unchanged reports whether raft still follows t (or no one) in t's term.
func (n *Node) unchanged(t holdTarget) bool {
	if n.raft.State() != raft.Follower || n.raft.CurrentTerm() != t.term {
		return false
	}
	_, id := n.raft.LeaderWithID()
	return id == "" || id == t.id
}

// leaderless reports whether this node is a follower that still knows no
// leader but the dead t, in t's term or a later one.
func (n *Node) leaderless(t holdTarget) bool {
	if n.raft.State() != raft.Follower || n.raft.CurrentTerm() < t.term {
		return false
	}
	_, id := n.raft.LeaderWithID()
	return id == "" || id == t.id
}

// onPeerClosed runs the crash check after the leader closed the held stream:
// redial, confirm with another member, wait rank × FailoverRankStep, and stand
// if nothing changed. It returns false when the leader turned out reachable
// or no member confirmed the loss (no crash), true otherwise.
func (n *Node) onPeerClosed(t holdTarget, closedAt time.Time) bool {
	log := n.logger.With("leader", t.id, "leader_addr", t.addr, "leader_term", t.term)
	log.Info("fast failover: held stream closed by the leader", "closed_at", closedAt.Format(time.RFC3339Nano))
	if !n.unchanged(t) {
		log.Info("fast failover: leader already changed; nothing to do")
		return true
	}
	rctx, cancel := context.WithTimeout(n.ctx, n.cfg.RedialTimeout)
	err := n.tr.Reachable(rctx, t.addr)
	cancel()
	if err == nil {
		log.Info("fast failover: leader answered a redial; not a crash", "after", time.Since(closedAt))
		return false
	}
	log.Info("fast failover: redial failed", "error", err, "after", time.Since(closedAt))

	via, rank, ok := n.confirmLost(t)
	if !ok {
		log.Info("fast failover: no other member confirmed the loss; not standing", "after", time.Since(closedAt))
		return false
	}
	wait := time.Duration(rank) * n.cfg.FailoverRankStep
	log.Info("fast failover: loss confirmed", "confirmed_by", via, "rank", rank, "wait", wait, "after", time.Since(closedAt))
	if wait > 0 && !n.sleep(wait) {
		return true
	}
	// Rank 0 stands unless something changed. A later rank waited while a
	// lower-ranked voter stood: if that one won, this node knows the new
	// leader by now; if its election failed (its log was behind) the term
	// has moved on and no one leads, so stand too. The stand raises the
	// term past that failed candidate's: two nodes are never candidates of
	// one term.
	free := n.unchanged(t)
	if wait > 0 {
		free = n.leaderless(t)
	}
	if !free {
		_, id := n.raft.LeaderWithID()
		log.Info("fast failover: another node stood first; standing down", "new_leader", id, "term", n.raft.CurrentTerm())
		return true
	}
	if !n.mayStand() {
		log.Warn("fast failover: not standing while the storage alarm is raised", "alarm", n.StorageAlarm())
		return true
	}
	if err := n.tr.TimeoutNowSelf(n.ctx); err != nil {
		log.Warn("fast failover: TimeoutNow to self failed", "error", err)
		return true
	}
	n.m.failoverTriggers.Inc()
	log.Info("fast failover: stood for election", "rank", rank, "after", time.Since(closedAt))
	return true
}

// primeTimeout bounds the priming queries of primeConfirm.
const primeTimeout = 5 * time.Second

// primeConfirm asks every other member once, in the background, whether it
// lost the new leader t (they answer no). Followers rarely talk to each
// other, so without this the first ConfirmLost after a crash would also pay
// for dialing the connection (gRPC dial and HTTP/2 handshake), which on a
// busy machine can exceed ConfirmTimeout.
func (n *Node) primeConfirm(t holdTarget) {
	ctx, cancel := context.WithTimeout(n.ctx, primeTimeout)
	others := n.others(t.id)
	if len(others) == 0 {
		cancel()
		return
	}
	left := make(chan struct{}, len(others))
	for _, s := range others {
		if !n.spawn(func() {
			defer func() { left <- struct{}{} }()
			_, _ = n.tr.ConfirmLost(ctx, s.Address, t.addr)
		}) {
			left <- struct{}{}
		}
	}
	// Release ctx once every query has returned.
	if !n.spawn(func() {
		defer cancel()
		for range others {
			<-left
		}
	}) {
		cancel()
	}
}

// others returns the members other than this node and the leader.
func (n *Node) others(leader raft.ServerID) []raft.Server {
	var out []raft.Server
	for _, s := range n.raft.GetConfiguration().Configuration().Servers {
		if s.ID != leader && s.ID != raft.ServerID(n.cfg.ID) {
			out = append(out, s)
		}
	}
	return out
}

// confirmLost asks every other member (not this node, not the leader) in
// parallel whether it lost the leader too. It returns the first member that
// confirmed the loss (ok=false if none did) and this node's rank: the number
// of voters with a lower id (the dead leader left out) that may still be
// alive. A lower voter counts as dead only when its query failed outright
// (connection refused: nothing listens); an answer, or a query still
// running at the deadline, counts as alive, since that voter will stand
// itself. So the lowest-ranked live voter stands at once and the others
// wait, and two nodes rarely stand in the same term: a second candidate
// that stood by TimeoutNow ignores the winner's heartbeats of that term and
// deposes it when its own election times out.
//
// It returns once a loss is confirmed and every lower voter has answered,
// or at ConfirmTimeout. The queries still running end in goroutines the
// node joins.
func (n *Node) confirmLost(t holdTarget) (via raft.ServerID, rank int, ok bool) {
	others := n.others(t.id)
	lower := make(map[raft.ServerID]bool)
	for _, s := range others {
		if s.Suffrage == raft.Voter && string(s.ID) < n.cfg.ID {
			lower[s.ID] = true // presumed alive until its query fails
		}
	}
	if len(others) == 0 {
		return "", len(lower), false
	}
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.ConfirmTimeout)
	defer cancel()
	type answer struct {
		via  raft.ServerID
		lost bool
		err  error
	}
	answers := make(chan answer, len(others))
	asked := 0
	for _, s := range others {
		if n.spawn(func() {
			lost, err := n.tr.ConfirmLost(ctx, s.Address, t.addr)
			answers <- answer{via: s.ID, lost: lost, err: err}
		}) {
			asked++
		}
	}
	pendingLower := len(lower)
	for i := 0; i < asked; i++ {
		var a answer
		select {
		case a = <-answers:
		case <-ctx.Done():
			return via, countTrue(lower), via != ""
		}
		if _, isLower := lower[a.via]; isLower {
			pendingLower--
			if a.err != nil && ctx.Err() == nil {
				lower[a.via] = false // failed before the deadline: nothing answers there
			}
		}
		switch {
		case a.lost && via == "":
			via = a.via
		case !a.lost:
			n.logger.Debug("fast failover: member did not confirm the loss", "via", a.via, "error", a.err)
		}
		if via != "" && pendingLower == 0 {
			break
		}
	}
	return via, countTrue(lower), via != ""
}

// countTrue counts the true values of m.
func countTrue(m map[raft.ServerID]bool) int {
	k := 0
	for _, v := range m {
		if v {
			k++
		}
	}
	return k
}
