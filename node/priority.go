package node

import (
	"context"
	"sort"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/membership"
)

const (
	// priorityTick is how often a leader re-checks the leader priorities.
	priorityTick = 200 * time.Millisecond
	// priorityTransferTimeout bounds one priority hand-off (raft bounds it
	// by its election timeout already; this is a backstop).
	priorityTransferTimeout = 10 * time.Second
)

// priorityCandidate is a voter that outranks the leader.
type priorityCandidate struct {
	id       string
	priority uint32
}

// priorityLoop hands leadership to a voter of higher leader priority. While
// this node leads (and is not leaving), every priorityTick it looks for
// voters that are alive, application-healthy, not draining, answering the
// leader's heartbeats in this term (caught up with it, as far as liveness
// goes: raft's transfer then waits for the log) and whose priority is above
// this node's; once one of them has been so continuously for
// Config.PriorityHoldoff, it transfers leadership to the highest of them
// (ties: the lowest id). Equal priorities never move leadership, so two
// nodes cannot bounce it between them; a failed attempt is retried no
// sooner than a holdoff later. While this node follows it sleeps until
// changes (a watch of its leadership) delivers. Owned by the node's
// WaitGroup; ends with ctx.
func (n *Node) priorityLoop(ctx context.Context, changes <-chan election.Leadership) {
	t := time.NewTicker(priorityTick)
	defer t.Stop()
	since := map[string]time.Time{} // candidate -> start of its continuous eligibility
	var lastTry time.Time
	for {
		if changes != nil && !n.el.Leadership().IsLeader {
			// A follower has nothing to do: sleep until the leadership
			// changes (a closed watch falls back to ticking).
			clear(since)
			select {
			case <-ctx.Done():
				return
			case _, ok := <-changes:
				if !ok {
					changes = nil
				}
			}
			t.Reset(priorityTick)
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l := n.el.Leadership()
		if !l.IsLeader || n.leaving.Load() {
			clear(since)
			continue
		}
		now := time.Now()
		best, own, ok := n.priorityTarget(now, l, since)
		if !ok || now.Sub(lastTry) < n.cfg.PriorityHoldoff {
			continue
		}
		lastTry = now
		n.log.Info("handing leadership to a voter of higher leader priority",
			"to", best.id, "its_priority", best.priority, "own_priority", own, "holdoff", n.cfg.PriorityHoldoff)
		tctx, cancel := context.WithTimeout(ctx, priorityTransferTimeout)
		err := n.el.Transfer(tctx, best.id)
		cancel()
		if err != nil {
			n.log.Warn("priority hand-off failed", "to", best.id, "error", err)
		} else {
			n.priorityTransfers.Inc()
		}
		clear(since)
	}
}

// priorityTarget updates since (the candidates' eligibility starts; those
// no longer eligible are dropped) and returns the best candidate that has
// been eligible for the whole holdoff, with this node's own priority.
func (n *Node) priorityTarget(now time.Time, l election.Leadership, since map[string]time.Time) (priorityCandidate, uint32, bool) {
	ms, err := n.el.Members()
	if err != nil {
		clear(since)
		return priorityCandidate{}, 0, false
	}
	acks := n.tr.Acks()
	var own uint32
	var eligible []priorityCandidate
	n.mfsm.Read(func(s *membership.State) {
		if m, ok := s.Member(n.cfg.ID); ok {
			own = m.LeaderPriority
		}
		for _, rm := range ms {
			if rm.ID == n.cfg.ID || !rm.Voter {
				continue
			}
			m, ok := s.Member(rm.ID)
			if !ok || m.State != membership.StateAlive || !m.AppHealthy || m.Draining {
				continue
			}
			a := acks[raft.ServerAddress(rm.Address)]
			if a.Term != l.Term || a.RepliedAt.IsZero() || now.Sub(a.RepliedAt) > n.ackFresh {
				continue
			}
			eligible = append(eligible, priorityCandidate{id: rm.ID, priority: m.LeaderPriority})
		}
	})
	keep := make(map[string]bool, len(eligible))
	var ready []priorityCandidate
	for _, c := range eligible {
		if c.priority <= own {
			continue
		}
		keep[c.id] = true
		start, seen := since[c.id]
		if !seen {
			since[c.id] = now
			start = now
		}
		if now.Sub(start) >= n.cfg.PriorityHoldoff {
			ready = append(ready, c)
		}
	}
	for id := range since {
		if !keep[id] {
			delete(since, id)
		}
	}
	if len(ready) == 0 {
		return priorityCandidate{}, own, false
	}
	sort.Slice(ready, func(i, j int) bool {
		if ready[i].priority != ready[j].priority {
			return ready[i].priority > ready[j].priority
		}
		return ready[i].id < ready[j].id
	})
	return ready[0], own, true
}

// newPriorityTransfers is the counter of priority hand-offs.
func newPriorityTransfers() prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{
		Name: "heartbeat_leader_priority_transfers_total",
		Help: "Leadership transfers this node made, as leader, to a voter of higher leader priority.",
	})
}
