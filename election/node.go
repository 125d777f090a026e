package election

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/heartbeat-sidecar/heartbeat/internal/batch"
)

// resyncInterval is how often the observer loop re-reads raft's state
// without an observation.
const resyncInterval = time.Second

// logCacheSize is how many recent log entries are kept in memory in front of
// bolt.
const logCacheSize = 512

// Node is one raft member: storage, raft, the leader lease, the leadership
// view with its watchers, and fast crash failover. Create it with New; stop
// it with Shutdown (graceful) or Close (abrupt). Its methods are safe for
// concurrent use.
type Node struct {
	cfg    Config
	tr     Transport
	logger hclog.Logger
	raft   *raft.Raft
	stores *stores
	health *storageHealth // the storage alarm (storagehealth.go)

	storageKick   chan struct{} // wakes the storage loop when the alarm changes (capacity 1)
	electionsHeld atomic.Bool   // a sole voter with the alarm raised: raft's timeouts at heldTimeout
	retimeMu      sync.Mutex    // one raft timing reload at a time, computed under it
	m             *metrics
	hub           *hub

	raftPtr      atomic.Pointer[raft.Raft] // for the logger, set once raft exists
	lease        atomic.Pointer[lease]     // the leader's current lease; nil when none
	own          ownership                 // this node's ownership lease (ownership.go)
	readyTerm    atomic.Uint64             // the term whose first barrier completed (readindex.go)
	readyMu      sync.Mutex                // guards readyC
	readyC       chan struct{}             // closed (and replaced) when readyTerm changes
	reads        *batch.Batcher[uint64]    // ReadIndex rounds
	readRounds   atomic.Uint64             // ReadIndex rounds run (metric)
	handingOff   atomic.Bool               // stopping: never claim leadership again
	transferring atomic.Int32              // leadership transfers in flight: do not claim it
	transferOne  atomic.Bool               // a TransferLeadership runs (one at a time)
	stopped      atomic.Bool               // raft has been shut down
	nudging      atomic.Bool               // a commit nudge (barrier) is in flight

	observerCh  chan raft.Observation
	observer    *raft.Observer
	leaseKick   chan struct{} // wakes the lease loop (capacity 1)
	holdKick    chan struct{} // wakes the failover loop (capacity 1)
	promoteKick chan struct{} // wakes the promotion loop (capacity 1)
	learners    learners      // learners to promote while leading (promote.go)

	holdMu     sync.Mutex
	holdFor    holdTarget         // the leader the current Hold is on
	holdCancel context.CancelFunc // cancels that Hold; nil when none
	holdSince  atomic.Int64       // unix nanos when the running Hold began; 0 when none

	ctx      context.Context // canceled when the node stops; parent of loop contexts
	cancel   context.CancelFunc
	wg       sync.WaitGroup // the node's loops and helper goroutines
	futures  sync.WaitGroup // goroutines waiting on raft futures (see spawnFuture)
	goMu     sync.Mutex     // guards joining (no Add once stop waits)
	joining  bool
	stopOnce sync.Once
	stopErr  error
}

// New opens (or creates) the data dir, bootstraps raft if this is a fresh
// node listed in cfg.Bootstrap, starts raft over tr with fsm, and starts the
// node's loops. tr must already be serving; the node does not close it (see
// Transport). On error, everything New opened is closed again.
func New(cfg Config, tr Transport, fsm raft.FSM) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if tr == nil || fsm == nil {
		return nil, fmt.Errorf("%w: transport and fsm are required", ErrInvalidConfig)
	}
	base := cfg.Logger
	if base == nil {
		base = hclog.Default()
	}
	n := &Node{
		cfg:         cfg,
		tr:          tr,
		hub:         newHub(),
		observerCh:  make(chan raft.Observation, 64),
		leaseKick:   make(chan struct{}, 1),
		holdKick:    make(chan struct{}, 1),
		promoteKick: make(chan struct{}, 1),

		storageKick: make(chan struct{}, 1),
	}
	n.logger = newTermLogger(base, cfg.ID, n.term)

	st, err := openStores(cfg, n.logger)
	if err != nil {
		return nil, err
	}
	n.health = &storageHealth{logger: n.logger, dir: cfg.DataDir, fault: cfg.storageFault,
		change: func() { kick(n.storageKick) }}
	rc := cfg.raftConfig()
	rc.Logger = n.logger.Named("raft")
	rtr := raftTransport{Transport: tr, WithPreVote: tr, mayStand: n.mayStand}
	booted, err := bootstrap(cfg, rc, st, rtr)
	if err != nil {
		_ = st.close()
		return nil, err
	}
	logs, err := raft.NewLogCache(logCacheSize, checkedLogs{LogStore: st.bolt, h: n.health})
	if err != nil {
		_ = st.close()
		return nil, fmt.Errorf("election: log cache: %w", err)
	}
	stable := checkedStable{StableStore: st.bolt, h: n.health}
	snaps := checkedSnapshots{SnapshotStore: st.snaps, h: n.health, dir: st.snapDir}
	r, err := raft.NewRaft(rc, fsm, logs, stable, snaps, rtr)
	if err != nil {
		_ = st.close()
		return nil, fmt.Errorf("election: start raft: %w", err)
	}
	n.raft, n.stores = r, st
	n.raftPtr.Store(r)

	m, err := newMetrics(cfg.Registerer, n)
	if err != nil {
		_ = r.Shutdown().Error()
		_ = st.close()
		return nil, fmt.Errorf("election: register metrics: %w", err)
	}
	n.m = m

	n.observer = raft.NewObserver(n.observerCh, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.LeaderObservation, raft.RaftState:
			return true
		}
		return false
	})
	r.RegisterObserver(n.observer)

	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.reads = n.newReadBatcher()
	n.wg.Add(4)
	go n.observeLoop()
	go n.leaseLoop()
	go n.storageLoop()
	go n.promoteLoop()
	if cfg.FastFailover {
		n.wg.Add(1)
		go n.failoverLoop()
	}
	n.publish()
	n.logger.Info("node started", "addr", tr.LocalAddr(), "data_dir", cfg.DataDir,
		"bootstrapped", booted, "fast_failover", cfg.FastFailover,
		"heartbeat_timeout", cfg.HeartbeatTimeout, "lease", cfg.LeaseDuration)
	return n, nil
}

// spawn runs f in a goroutine the node joins on stop; false (f not run)
// once stop has started waiting. f must end when n.ctx ends.
func (n *Node) spawn(f func()) bool { return n.spawnOn(&n.wg, f) }

// spawnFuture runs f, which waits for a raft future, in a goroutine that
// stop waits for only up to futureWait after raft has shut down: raft
// answers almost every future on shutdown, but a leadership transfer queued
// and never picked up by its main loop is never answered.
func (n *Node) spawnFuture(f func()) bool { return n.spawnOn(&n.futures, f) }

func (n *Node) spawnOn(wg *sync.WaitGroup, f func()) bool {
	n.goMu.Lock()
	defer n.goMu.Unlock()
	if n.joining {
		return false
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		f()
	}()
	return true
}

// futureWait bounds how long stop waits for goroutines blocked on raft
// futures after raft has shut down.
const futureWait = 5 * time.Second

// drainWait bounds how long stop lets the raft futures in flight resolve
// before it shuts raft down (they resolve in milliseconds while the cluster
// has a quorum; without one they wait for the shutdown to fail them).
const drainWait = time.Second

// term returns the current raft term, 0 before raft exists (logger hook).
func (n *Node) term() uint64 {
	if r := n.raftPtr.Load(); r != nil {
		return r.CurrentTerm()
	}
	return 0
}

// Raft returns the underlying raft instance, for reads such as Stats. Do not
// call Shutdown on it; use the node's Shutdown or Close.
func (n *Node) Raft() *raft.Raft { return n.raft }

// ID returns this node's id.
func (n *Node) ID() string { return n.cfg.ID }

// Addr returns this node's transport address.
func (n *Node) Addr() string { return string(n.tr.LocalAddr()) }

// Leadership returns this node's current view of the leadership. Cheap: a few
// atomic reads, no raft round trip.
func (n *Node) Leadership() Leadership {
	r := n.raft
	state := r.State()
	var (
		addr   raft.ServerAddress
		id     raft.ServerID
		t1, t2 uint64
	)
	// raft clears the leader before it raises the term and sets a leader
	// only after, so a leader read between two equal term reads was elected
	// in that term.
	for i := 0; i < 8; i++ {
		t1 = r.CurrentTerm()
		addr, id = r.LeaderWithID()
		t2 = r.CurrentTerm()
		if t1 == t2 {
			break
		}
	}
	l := Leadership{State: stateName(state), Term: t2}
	if n.stopped.Load() {
		l.State = stateName(raft.Shutdown)
		return l
	}
	if t1 == t2 && id != "" {
		l.LeaderID, l.LeaderAddr, l.FencingToken = string(id), string(addr), t1
	}
	if state == raft.Leader && l.LeaderID == n.cfg.ID && !n.handingOff.Load() && n.transferring.Load() == 0 {
		now := time.Now()
		if ls := n.lease.Load(); ls != nil && ls.term == t2 && now.Before(ls.until) && !now.Before(ls.claimFrom) {
			l.IsLeader, l.LeaseUntil = true, ls.until
		}
	}
	return l
}

// Watch returns a new watcher that receives the current view first and then
// every change (see Watcher). Close it when done; the node closes all
// watchers when it stops.
func (n *Node) Watch() *Watcher { return n.hub.subscribe(n.Leadership) }

// publish recomputes the view and tells watchers if it changed.
func (n *Node) publish() { n.hub.refresh(n.Leadership) }

func kick(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// observeLoop turns raft's observations into metrics, log lines, wake-ups of
// the other loops and published views. The observer is non-blocking: raft
// drops observations when the channel is full, so the loops always re-read
// raft's state instead of trusting the observation.
func (n *Node) observeLoop() {
	defer n.wg.Done()
	var last raft.ServerID
	timedLeader := false // the role raft's timing was last reloaded for
	retime := func() {
		if leader := n.raft.State() == raft.Leader; leader != timedLeader {
			timedLeader = leader
			n.retime(leader)
		}
	}
	resync := time.NewTicker(resyncInterval)
	defer resync.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-resync.C:
			// Observations can be dropped, and raft's term moves without
			// one during repeated candidate rounds: re-read raft now and
			// then.
			n.cancelStaleHold()
			retime()
			n.publish()
		case o := <-n.observerCh:
			switch d := o.Data.(type) {
			case raft.RaftState:
				if d == raft.Candidate {
					n.m.electionsStarted.Inc()
				}
				n.logger.Info("raft state changed", "state", stateName(d))
				retime()
			case raft.LeaderObservation:
				if d.LeaderID != "" && d.LeaderID != last {
					n.m.leaderChanges.Inc()
				}
				if d.LeaderID != "" {
					last = d.LeaderID
				}
				n.logger.Info("leader changed", "leader", d.LeaderID, "leader_addr", d.LeaderAddr)
			}
			n.cancelStaleHold()
			kick(n.leaseKick)
			kick(n.holdKick)
			kick(n.promoteKick)
			n.publish()
		}
	}
}

// retime reloads raft's timing for the role it just took (Config.reloadable):
// a leader slows its heartbeats to HeartbeatInterval, anyone else goes back
// to the follower timeouts.
func (n *Node) retime(leader bool) {
	n.retimeMu.Lock()
	defer n.retimeMu.Unlock()
	rc := n.cfg.reloadable(leader)
	if n.electionsHeld.Load() {
		rc.HeartbeatTimeout, rc.ElectionTimeout = heldTimeout, heldTimeout
	}
	if err := n.raft.ReloadConfig(rc); err != nil && n.ctx.Err() == nil {
		n.logger.Warn("cannot reload raft timing", "leader", leader, "error", err)
	}
}

// leaseLoop keeps the leader's lease: on the leader it recomputes the lease
// every heartbeat interval, or at the lease's end if that comes sooner, and
// publishes the view, so IsLeader turns false as soon as the lease lapses.
// Elsewhere it sleeps until raft's state changes.
func (n *Node) leaseLoop() {
	defer n.wg.Done()
	tick := n.cfg.heartbeatInterval()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		wait := time.Duration(-1)
		if n.raft.State() == raft.Leader {
			// A lease that lapsed since the last pass (this loop woke late)
			// is told before it is renewed: a watcher that saw the node stop
			// leading (IsLeader read between the lapse and now) must also be
			// told that it leads again.
			n.publish()
			ls := n.renewLease()
			n.selfGrant()
			wait = tick
			if d := time.Until(ls.until); d > 0 && d < wait {
				wait = d
			}
			if d := time.Until(ls.claimFrom); d > 0 && d < wait {
				wait = d
			}
		} else {
			n.lease.Store(nil)
		}
		n.publish()
		var fire <-chan time.Time
		if wait >= 0 {
			timer.Reset(wait)
			fire = timer.C
		}
		select {
		case <-n.ctx.Done():
			return
		case <-n.leaseKick:
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

// renewLease computes and stores the lease from the transport's acks. The
// first renewal of a term also fixes when the node may start to claim
// leadership (claimFrom, see claimHoldoff).
func (n *Node) renewLease() *lease {
	term := n.raft.CurrentTerm()
	servers := n.raft.GetConfiguration().Configuration().Servers
	now := time.Now()
	until := leaseEnd(raft.ServerID(n.cfg.ID), servers, n.cfg.Acks(), term, now,
		n.cfg.LeaseDuration, n.cfg.LeaseDriftMargin)
	next := &lease{term: term, until: until, claimFrom: now}
	prev := n.lease.Load()
	if prev != nil && prev.term == term {
		next.claimFrom = prev.claimFrom
	} else {
		// A new term of leadership.
		n.prepareReads(term)
		if hold := n.claimHoldoff(now); hold > 0 {
			next.claimFrom = now.Add(hold)
			n.m.claimHoldoffs.Inc()
			n.logger.Info("elected after a TimeoutNow: claiming leadership only once the previous leader's lease has surely run out",
				"claim_in", hold)
		}
	}
	n.lease.Store(next)
	valid := now.Before(until)
	wasValid := prev != nil && prev.term == term && now.Before(prev.until)
	if valid != wasValid {
		n.logger.Info("leader lease changed", "valid", valid, "until", until)
	}
	return next
}

// ownershipLease is OwnershipLease with its default applied.
func (c Config) ownershipLease() time.Duration {
	if c.OwnershipLease > 0 {
		return c.OwnershipLease
	}
	return c.HeartbeatTimeout
}

// timeoutNowWindow: an election won within this time of a TimeoutNow may have
// been won by it (several election rounds fit in it).
func (c Config) timeoutNowWindow() time.Duration { return 10 * c.HeartbeatTimeout }

// claimHoldoff returns how long a leader that has just been elected must wait
// before it claims leadership. A normal vote is granted only by voters that
// have not heard a leader for HeartbeatTimeout >= LeaseDuration, so the old
// leader's lease has run out before such an election can be won: no wait. A
// TimeoutNow (a hand-off, or the fast crash failover) makes voters vote at
// once; the old leader's lease then ends before the election was won plus
// LeaseDuration (some voter of the new quorum acknowledged the old leader's
// last lease-bearing heartbeat before it voted), so the new leader waits that
// long. The wait is counted from when this node noticed its win, which is
// later than the win itself.
func (n *Node) claimHoldoff(now time.Time) time.Duration {
	at := n.tr.LastTimeoutNow()
	if n.cfg.noClaimHoldoff || at.IsZero() || now.Sub(at) > n.cfg.timeoutNowWindow() {
		return 0
	}
	return n.cfg.LeaseDuration
}

// Shutdown stops the node gracefully: it stops claiming leadership at once;
// if it is the leader, it hands leadership to another voter and waits for
// the hand-off (bounded by ctx); it tells peers goodbye (so their fast
// failover does not fire); then it shuts raft down, waits for its goroutines
// and closes the stores and watchers. The transport stays open for its
// owner to close. Calling Shutdown or Close again returns the first result.
func (n *Node) Shutdown(ctx context.Context) error {
	return n.stop(ctx, true)
}

// Close stops the node abruptly, as a crash would (no hand-off, no goodbye):
// raft shuts down, goroutines are joined, stores and watchers are closed.
// The transport stays open for its owner to close.
func (n *Node) Close() error {
	return n.stop(context.Background(), false)
}

func (n *Node) stop(ctx context.Context, graceful bool) error {
	n.stopOnce.Do(func() {
		n.handingOff.Store(true)
		n.publish()
		if graceful {
			n.handOff(ctx)
			n.tr.Goodbye()
		}
		n.cancel()
		// No new goroutines from here on (Apply and the rest answer
		// ErrShutdown). The futures already in flight get drainWait to
		// resolve while raft still runs: raft drops the committed entries
		// still queued for its FSM when it shuts down without answering
		// their futures, and a waiter on one of those would never return.
		n.goMu.Lock()
		n.joining = true
		n.goMu.Unlock()
		waitTimeout(&n.futures, drainWait)
		var errs []error
		if err := n.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("election: raft shutdown: %w", err))
		}
		n.raft.DeregisterObserver(n.observer)
		n.wg.Wait()
		if !waitTimeout(&n.futures, futureWait) {
			n.logger.Warn("a raft future was still unanswered after shutdown; leaving its waiter behind", "waited", futureWait)
		}
		n.stopped.Store(true)
		n.hub.close(n.Leadership())
		n.m.unregister()
		if err := n.stores.close(); err != nil {
			errs = append(errs, fmt.Errorf("election: close stores: %w", err))
		}
		n.stopErr = errors.Join(errs...)
		n.logger.Info("node stopped", "graceful", graceful)
	})
	return n.stopErr
}

// waitTimeout waits for wg up to d; false if it had to give up.
func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// handOff transfers leadership to another voter if this node leads.
func (n *Node) handOff(ctx context.Context) {
	if n.raft.State() != raft.Leader || len(n.voters()) < 2 {
		return
	}
	start := time.Now()
	err := n.transfer(ctx, n.raft.LeadershipTransfer)
	if err != nil {
		n.logger.Warn("leadership hand-off failed; stopping anyway", "error", err, "took", time.Since(start))
		return
	}
	addr, id := n.raft.LeaderWithID()
	n.logger.Info("leadership handed off", "took", time.Since(start), "new_leader", id, "new_leader_addr", addr)
}

// voters returns the voters of the latest configuration.
func (n *Node) voters() []raft.Server {
	var out []raft.Server
	for _, s := range n.raft.GetConfiguration().Configuration().Servers {
		if s.Suffrage == raft.Voter {
			out = append(out, s)
		}
	}
	return out
}
