package election

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Membership changes that cannot kill the cluster.
//
// Learners: a node that asks to join as a voter enters the configuration as
// a non-voter (a learner, as in etcd) and the leader promotes it only once
// it answers and has caught up (see learnerReady). A voter that never
// answers (a wrong address, a node that died while joining) therefore never
// counts toward the quorum: before, each such join raised the quorum, and a
// few of them stopped the cluster for good.
//
// The quorum guard: a change that would leave fewer live voters than its own
// quorum is refused with ErrQuorumAtRisk (see checkQuorum). Remove and the
// demotion of Join pass it, so the API's Join and Remove, and a Leave, share
// it; a promotion needs none (see promoteOnce).

const (
	// PromoteMaxLag is how far, in log entries, a learner's last log index
	// may be behind the leader's for it to count as caught up.
	PromoteMaxLag = 256

	// promoteTimeout bounds one promotion (raft's AddVoter).
	promoteTimeout = 5 * time.Second
)

// liveWindow is how old a voter's latest answer in the current term may be
// for it to count as live: four heartbeat timeouts (1s by default), many
// heartbeat rounds, so a voter that answers is never counted dead by chance.
func (c Config) liveWindow() time.Duration { return 4 * c.HeartbeatTimeout }

// promoteStable is how long a learner must look ready without a break
// before the leader promotes it: one heartbeat timeout.
func (c Config) promoteStable() time.Duration { return c.HeartbeatTimeout }

// learners are the non-voters this leader is asked to promote, with the
// time each has looked ready since (zero: not ready). Only the leader keeps
// them; a leader that steps down forgets them, and the joining node asks
// the next leader again (lifecycle.Local.Join does until it is a voter).
// The set holds only members of the configuration, so it is bounded by it.
type learners struct {
	mu   sync.Mutex
	want map[raft.ServerID]time.Time
}

func (l *learners) add(id raft.ServerID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.want == nil {
		l.want = make(map[raft.ServerID]time.Time)
	}
	if _, ok := l.want[id]; !ok {
		l.want[id] = time.Time{}
	}
}

func (l *learners) remove(id raft.ServerID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.want, id)
}

func (l *learners) has(id raft.ServerID) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.want[id]
	return ok
}

func (l *learners) clear() {
	l.mu.Lock()
	defer l.mu.Unlock()
	clear(l.want)
}

// answered reports whether a, a peer's ack, shows it answered in term within
// window of now.
func answered(a Ack, ok bool, term uint64, now time.Time, window time.Duration) bool {
	return ok && a.Term == term && !a.RepliedAt.IsZero() && now.Sub(a.RepliedAt) <= window
}

// learnerReady reports whether a learner at addr may be promoted: it
// answered the leader in term within the live window and its last log index
// is within PromoteMaxLag of the leader's last index.
func learnerReady(a Ack, ok bool, term, last uint64, now time.Time, window time.Duration) bool {
	return answered(a, ok, term, now, window) && a.LastLog+PromoteMaxLag >= last
}

// checkQuorum refuses the configuration servers (a proposed change, what)
// when its voters that answer now could not reach its own quorum: self (the
// leader) counts as live, every other voter by its ack (answered). No voter
// at all is refused too.
func (n *Node) checkQuorum(what string, servers []raft.Server) error {
	acks, term, now := n.cfg.Acks(), n.raft.CurrentTerm(), time.Now()
	voters, live := 0, 0
	for _, s := range servers {
		if s.Suffrage != raft.Voter {
			continue
		}
		voters++
		a, ok := acks[s.Address]
		if s.ID == raft.ServerID(n.cfg.ID) || answered(a, ok, term, now, n.cfg.liveWindow()) {
			live++
		}
	}
	if voters == 0 {
		return fmt.Errorf("%w: %s would leave no voter", ErrQuorumAtRisk, what)
	}
	if quorum := voters/2 + 1; live < quorum {
		return fmt.Errorf("%w: after %s the cluster would have %d voters (quorum %d) of which %d answer now",
			ErrQuorumAtRisk, what, voters, quorum, live)
	}
	return nil
}

// guardChange runs checkQuorum on the configuration change makes of the
// current one. A refusal is final only once it has held for the live window
// (bounded by ctx): a leader elected a moment ago has not heard every voter
// in its term yet, and a Leave asks the new leader at once.
func (n *Node) guardChange(ctx context.Context, what string, change func([]raft.Server) []raft.Server) error {
	deadline := time.Now().Add(n.cfg.liveWindow())
	tick := n.cfg.heartbeatInterval()
	for {
		servers := n.raft.GetConfiguration().Configuration().Servers
		err := n.checkQuorum(what, change(servers))
		if err == nil || !time.Now().Before(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-n.ctx.Done():
			return err
		case <-time.After(tick):
		}
	}
}

// without returns servers less id.
func without(id raft.ServerID) func([]raft.Server) []raft.Server {
	return func(servers []raft.Server) []raft.Server {
		out := make([]raft.Server, 0, len(servers))
		for _, s := range servers {
			if s.ID != id {
				out = append(out, s)
			}
		}
		return out
	}
}

// withSuffrage returns servers with id's suffrage set to suf.
func withSuffrage(id raft.ServerID, suf raft.ServerSuffrage) func([]raft.Server) []raft.Server {
	return func(servers []raft.Server) []raft.Server {
		out := append([]raft.Server(nil), servers...)
		for i := range out {
			if out[i].ID == id {
				out[i].Suffrage = suf
			}
		}
		return out
	}
}

// promoteLoop promotes the learners the leader was asked to promote (see
// learners). It works only while this node is raft's leader: on every other
// role it forgets them and sleeps until raft's state changes (observeLoop
// kicks it) or a Join asks for a promotion. It ends when the node stops.
func (n *Node) promoteLoop() {
	defer n.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var fire <-chan time.Time
		if n.raft.State() == raft.Leader && !n.handingOff.Load() {
			if n.promoteOnce() {
				timer.Reset(n.cfg.heartbeatInterval())
				fire = timer.C
			}
		} else {
			n.learners.clear()
		}
		select {
		case <-n.ctx.Done():
			return
		case <-n.promoteKick:
		case <-fire:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// promoteOnce looks at every learner waiting for promotion and promotes at
// most one that has looked ready for promoteStable (one configuration change
// at a time). It reports whether learners are still waiting.
func (n *Node) promoteOnce() bool {
	servers := n.raft.GetConfiguration().Configuration().Servers
	acks, term, last, now := n.cfg.Acks(), n.raft.CurrentTerm(), n.raft.LastIndex(), time.Now()
	byID := make(map[raft.ServerID]raft.Server, len(servers))
	for _, s := range servers {
		byID[s.ID] = s
	}
	var next *raft.Server
	n.learners.mu.Lock()
	for id, since := range n.learners.want {
		s, ok := byID[id]
		if !ok || s.Suffrage == raft.Voter {
			delete(n.learners.want, id)
			continue
		}
		a, ok := acks[s.Address]
		switch {
		case !learnerReady(a, ok, term, last, now, n.cfg.liveWindow()):
			n.learners.want[id] = time.Time{}
		case since.IsZero():
			n.learners.want[id] = now
		case now.Sub(since) >= n.cfg.promoteStable() && next == nil:
			next = &s
		}
	}
	waiting := len(n.learners.want) > 0
	n.learners.mu.Unlock()
	if next == nil {
		return waiting
	}
	// No quorum guard here: the learner answers (learnerReady), and adding
	// a live voter never leaves the live voters short of the new quorum —
	// with v voters of which l >= v/2+1 answer, v+1 voters need
	// (v+1)/2+1 <= l+1.
	ctx, cancel := context.WithTimeout(n.ctx, promoteTimeout)
	defer cancel()
	err := n.await(ctx, n.raft.AddVoter(next.ID, next.Address, 0, promoteTimeout))
	if err != nil {
		n.logger.Warn("learner promotion failed; trying again", "member", next.ID, "error", err)
		return true
	}
	n.learners.remove(next.ID)
	n.m.promotions.Inc()
	n.logger.Info("learner promoted to voter", "member", next.ID, "addr", next.Address,
		"lag", last-min(last, acks[next.Address].LastLog))
	return true
}
