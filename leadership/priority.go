package leadership

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/membership"
)

// ErrInvalidConfig wraps every Config.Validate failure.
var ErrInvalidConfig = errors.New("leadership: invalid config")

// Config configures the leader-priority loop.
type Config struct {
	// SelfID is this node's id. Required.
	SelfID string
	// Holdoff is how long a voter of higher priority must have been
	// eligible before it is handed leadership; also the least time between
	// two attempts. Shorter moves leadership sooner after a change, longer
	// rides out a voter's flapping. Default 3s, at least 100ms.
	Holdoff time.Duration
	// Tick is how often a leader re-checks the priorities. Default 200ms.
	Tick time.Duration
	// AckFresh: a voter whose latest heartbeat reply (in this term) is
	// older is not eligible (not caught up, as far as liveness goes; raft's
	// transfer then waits for the log). Required: the node passes the
	// election's HeartbeatTimeout.
	AckFresh time.Duration
	// TransferTimeout bounds one hand-off (raft bounds it by its election
	// timeout already; this is a backstop). Default 10s.
	TransferTimeout time.Duration
	// Logger; nil: no logs.
	Logger hclog.Logger
	// Registerer, when set, gets heartbeat_leader_priority_transfers_total.
	Registerer prometheus.Registerer
}

// DefaultConfig returns the defaults (SelfID and AckFresh still to set).
func DefaultConfig() Config {
	return Config{Holdoff: 3 * time.Second, Tick: 200 * time.Millisecond, TransferTimeout: 10 * time.Second}
}

// Validate fills zero durations with the defaults' and checks the rest.
func (c *Config) Validate() error {
	d := DefaultConfig()
	if c.Holdoff == 0 {
		c.Holdoff = d.Holdoff
	}
	if c.Tick == 0 {
		c.Tick = d.Tick
	}
	if c.TransferTimeout == 0 {
		c.TransferTimeout = d.TransferTimeout
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	switch {
	case c.SelfID == "":
		return fmt.Errorf("%w: SelfID is empty", ErrInvalidConfig)
	case c.Holdoff < 100*time.Millisecond:
		return fmt.Errorf("%w: Holdoff %v: at least 100ms", ErrInvalidConfig, c.Holdoff)
	case c.Tick < 0 || c.TransferTimeout < 0:
		return fmt.Errorf("%w: Tick and TransferTimeout may not be negative", ErrInvalidConfig)
	case c.AckFresh <= 0:
		return fmt.Errorf("%w: AckFresh %v: must be positive", ErrInvalidConfig, c.AckFresh)
	}
	return nil
}

// Election is what the loop needs of the raft node; *election.Node
// implements it.
type Election interface {
	Leadership() election.Leadership
	Members() ([]election.Member, error)
	// Watch tells leadership changes; the loop closes the watcher.
	Watch() *election.Watcher
	TransferLeadership(ctx context.Context, target string) (election.Leadership, error)
}

// Reply is the latest heartbeat reply from a peer: the term of the
// heartbeat it answered and when the answer arrived.
type Reply struct {
	Term      uint64
	RepliedAt time.Time
}

// Priority is the leader-priority loop (see the package doc). Build it with
// NewPriority and run it with Run.
type Priority struct {
	cfg       Config
	el        Election
	state     StateReader
	replies   func() map[string]Reply
	leaving   func() bool
	transfers atomic.Uint64
}

// NewPriority builds the loop. replies returns the transport's latest
// heartbeat replies by peer address (called every Tick on the leader; must
// not block); leaving, when not nil, reports that this node is leaving (the
// loop then hands nothing over: the departure does).
func NewPriority(cfg Config, el Election, state StateReader, replies func() map[string]Reply, leaving func() bool) (*Priority, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if el == nil || state == nil || replies == nil {
		return nil, fmt.Errorf("%w: election, state and replies are required", ErrInvalidConfig)
	}
	if leaving == nil {
		leaving = func() bool { return false }
	}
	p := &Priority{cfg: cfg, el: el, state: state, replies: replies, leaving: leaving}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "heartbeat_leader_priority_transfers_total",
			Help: "Leadership transfers this node made, as leader, to a voter of higher leader priority.",
		}, func() float64 { return float64(p.transfers.Load()) })); err != nil {
			return nil, fmt.Errorf("leadership: register metrics: %w", err)
		}
	}
	return p, nil
}

// Transfers is the number of hand-offs this loop made.
func (p *Priority) Transfers() uint64 { return p.transfers.Load() }

// candidate is a voter that outranks the leader.
type candidate struct {
	id       string
	priority uint32
}

// Run hands leadership to voters of higher priority until ctx ends. While
// this node follows it sleeps until its leadership watch delivers a change.
// The caller owns the goroutine that runs it and waits for it.
func (p *Priority) Run(ctx context.Context) {
	w := p.el.Watch()
	defer w.Close()
	changes := w.C()
	t := time.NewTicker(p.cfg.Tick)
	defer t.Stop()
	since := map[string]time.Time{} // candidate -> start of its continuous eligibility
	var lastTry time.Time
	for {
		if changes != nil && !p.el.Leadership().IsLeader {
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
			t.Reset(p.cfg.Tick)
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l := p.el.Leadership()
		if !l.IsLeader || p.leaving() {
			clear(since)
			continue
		}
		now := time.Now()
		best, own, ok := p.target(now, l, since)
		if !ok || now.Sub(lastTry) < p.cfg.Holdoff {
			continue
		}
		lastTry = now
		p.cfg.Logger.Info("handing leadership to a voter of higher leader priority",
			"to", best.id, "its_priority", best.priority, "own_priority", own, "holdoff", p.cfg.Holdoff)
		tctx, cancel := context.WithTimeout(ctx, p.cfg.TransferTimeout)
		_, err := p.el.TransferLeadership(tctx, best.id)
		cancel()
		if err != nil {
			p.cfg.Logger.Warn("priority hand-off failed", "to", best.id, "error", err)
		} else {
			p.transfers.Add(1)
		}
		clear(since)
	}
}

// target reads the configuration, the state and the replies, and picks.
func (p *Priority) target(now time.Time, l election.Leadership, since map[string]time.Time) (candidate, uint32, bool) {
	ms, err := p.el.Members()
	if err != nil {
		clear(since)
		return candidate{}, 0, false
	}
	replies := p.replies()
	var (
		best candidate
		own  uint32
		ok   bool
	)
	p.state.Read(func(s *membership.State) {
		best, own, ok = pick(now, p.cfg, l.Term, ms, s, replies, since)
	})
	return best, own, ok
}

// pick updates since (the candidates' eligibility starts; those no longer
// eligible are dropped) and returns the best candidate that has been
// eligible for the whole holdoff, with this node's own priority.
func pick(now time.Time, cfg Config, term uint64, ms []election.Member, s *membership.State, replies map[string]Reply, since map[string]time.Time) (candidate, uint32, bool) {
	var own uint32
	if m, ok := s.Member(cfg.SelfID); ok {
		own = m.LeaderPriority
	}
	keep := map[string]bool{}
	var ready []candidate
	for _, rm := range ms {
		if rm.ID == cfg.SelfID || !rm.Voter {
			continue
		}
		m, ok := s.Member(rm.ID)
		if !ok || m.State != membership.StateAlive || !m.AppHealthy || m.Draining || m.LeaderPriority <= own {
			continue
		}
		r := replies[rm.Address]
		if r.Term != term || r.RepliedAt.IsZero() || now.Sub(r.RepliedAt) > cfg.AckFresh {
			continue
		}
		keep[rm.ID] = true
		start, seen := since[rm.ID]
		if !seen {
			since[rm.ID] = now
			start = now
		}
		if now.Sub(start) >= cfg.Holdoff {
			ready = append(ready, candidate{id: rm.ID, priority: m.LeaderPriority})
		}
	}
	for id := range since {
		if !keep[id] {
			delete(since, id)
		}
	}
	if len(ready) == 0 {
		return candidate{}, own, false
	}
	sort.Slice(ready, func(i, j int) bool {
		if ready[i].priority != ready[j].priority {
			return ready[i].priority > ready[j].priority
		}
		return ready[i].id < ready[j].id
	})
	return ready[0], own, true
}
