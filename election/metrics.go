package election

import (
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the node's Prometheus collectors. Gauges that mirror raft's
// state are GaugeFuncs read at scrape time, so they cost nothing between
// scrapes. Registered on Config.Registerer only (never the global registry)
// and unregistered when the node stops.
type metrics struct {
	reg        prometheus.Registerer
	collectors []prometheus.Collector

	electionsStarted prometheus.Counter
	leaderChanges    prometheus.Counter
	failoverTriggers prometheus.Counter
	claimHoldoffs    prometheus.Counter
	promotions       prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, n *Node) (*metrics, error) {
	m := &metrics{
		reg: reg,
		electionsStarted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "heartbeat_raft_elections_started_total",
			Help: "Times this node became a candidate.",
		}),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "heartbeat_raft_leader_changes_total",
			Help: "Times this node learned of a new leader (a non-empty leader different from the last).",
		}),
		failoverTriggers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "heartbeat_fast_failover_triggers_total",
			Help: "Times this node stood for election after detecting a leader crash (TimeoutNow to itself).",
		}),
		claimHoldoffs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "heartbeat_claim_holdoffs_total",
			Help: "Times this node, elected after a TimeoutNow, waited one lease before claiming leadership.",
		}),
		promotions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "heartbeat_learner_promotions_total",
			Help: "Learners this node promoted to voter as leader (a node that joins as a voter enters as a learner).",
		}),
	}
	r := func() *raft.Raft { return n.raft }
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	m.collectors = []prometheus.Collector{
		m.electionsStarted, m.leaderChanges, m.failoverTriggers, m.claimHoldoffs, m.promotions,
		gauge("heartbeat_learners_waiting", "Learners waiting for promotion to voter on this leader (0 elsewhere).",
			func() float64 {
				n.learners.mu.Lock()
				defer n.learners.mu.Unlock()
				return float64(len(n.learners.want))
			}),
		gauge("heartbeat_raft_state", "Raft state: 0 follower, 1 candidate, 2 leader, 3 shutdown.",
			func() float64 { return float64(r().State()) }),
		gauge("heartbeat_raft_term", "Current raft term.",
			func() float64 { return float64(r().CurrentTerm()) }),
		gauge("heartbeat_raft_commit_index", "Raft commit index.",
			func() float64 { return float64(r().CommitIndex()) }),
		gauge("heartbeat_raft_applied_index", "Last raft index handed to the FSM.",
			func() float64 { return float64(r().AppliedIndex()) }),
		gauge("heartbeat_fast_failover_holding", "1 while this follower holds (or is opening) a stream to its leader.",
			func() float64 {
				if n.holdSince.Load() != 0 {
					return 1
				}
				return 0
			}),
		gauge("heartbeat_lease_valid", "1 while this node is leader with a valid lease.",
			func() float64 {
				if n.Leadership().IsLeader {
					return 1
				}
				return 0
			}),
		gauge("heartbeat_lease_remaining_seconds", "Seconds left on this leader's lease; 0 when not leader.",
			func() float64 {
				l := n.Leadership()
				if !l.IsLeader {
					return 0
				}
				return time.Until(l.LeaseUntil).Seconds()
			}),
		gauge("heartbeat_storage_alarm", "1 while a write to this node's data dir has failed and none has succeeded since (disk full, I/O error); the node stands for no election meanwhile.",
			func() float64 {
				if n.health.raised.Load() {
					return 1
				}
				return 0
			}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "heartbeat_storage_write_failures_total",
			Help: "Writes to this node's data dir (log, term and vote, snapshots, probes) that failed."},
			func() float64 { return float64(n.health.failures.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "heartbeat_read_index_rounds_total",
			Help: "Leadership confirmations (quorum rounds) this node ran as leader for consistent reads; concurrent reads share one."},
			func() float64 { return float64(n.readRounds.Load()) }),
		gauge("heartbeat_ownership_lease_remaining_seconds", "Seconds left on this node's ownership lease (how long it may still work on its resources without another grant); 0 when none.",
			func() float64 {
				if d := time.Until(n.OwnershipLease()); d > 0 {
					return d.Seconds()
				}
				return 0
			}),
	}
	if reg == nil {
		return m, nil
	}
	for i, c := range m.collectors {
		if err := reg.Register(c); err != nil {
			for _, done := range m.collectors[:i] {
				reg.Unregister(done)
			}
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) unregister() {
	if m == nil || m.reg == nil {
		return
	}
	for _, c := range m.collectors {
		m.reg.Unregister(c)
	}
}
