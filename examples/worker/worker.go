package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/heartbeat-sidecar/heartbeat/client"
)

// Config configures a Worker. Start from DefaultConfig and set Endpoints and
// LedgerPath.
type Config struct {
	// Endpoints are sidecar client addresses; Endpoints[0] is the local
	// sidecar (the node this worker runs beside), the others let the worker
	// read while it is briefly unreachable. Required.
	Endpoints []string
	// LedgerPath is the fenced ledger file the leader-only job appends to.
	// Required.
	LedgerPath string
	// TTL is the application heartbeat's time to live: the worker pushes one
	// every TTL/3, and the sidecar reports the application unhealthy (and
	// moves its resources away) when it hears nothing for TTL. It is also
	// how long the local sidecar may stay unreachable before the worker
	// drops its resources. Default 3s; 300ms..10m.
	TTL time.Duration
	// WorkInterval is the period of the work rounds on owned resources.
	// Default 2s.
	WorkInterval time.Duration
	// LeaderInterval is the period of the leader-only job's ledger writes.
	// Default 1s.
	LeaderInterval time.Duration
	// RetryBackoff is passed to the client (zero: the client's default).
	RetryBackoff client.Backoff
	// Logger receives the worker's log; nil: discarded.
	Logger hclog.Logger
}

// DefaultConfig returns TTL 3s, work every 2s, a ledger write every second.
func DefaultConfig() Config {
	return Config{TTL: 3 * time.Second, WorkInterval: 2 * time.Second, LeaderInterval: time.Second}
}

// ErrInvalidConfig wraps every Config.Validate failure.
var ErrInvalidConfig = errors.New("worker: invalid config")

// Validate checks the config.
func (c Config) Validate() error {
	switch {
	case len(c.Endpoints) == 0:
		return fmt.Errorf("%w: no endpoints (give the local sidecar's client address)", ErrInvalidConfig)
	case c.LedgerPath == "":
		return fmt.Errorf("%w: LedgerPath is empty", ErrInvalidConfig)
	case c.TTL < 300*time.Millisecond || c.TTL > 10*time.Minute:
		return fmt.Errorf("%w: TTL %v outside 300ms..10m", ErrInvalidConfig, c.TTL)
	case c.WorkInterval <= 0 || c.LeaderInterval <= 0:
		return fmt.Errorf("%w: WorkInterval and LeaderInterval must be positive", ErrInvalidConfig)
	}
	return nil
}

// Worker is an application instance beside one Heartbeat sidecar: it keeps
// the sidecar told that it is alive, works on the resources the sidecar's
// node owns (and only those), and runs a leader-only job while that node
// leads. Build it with NewWorker and call Run once.
type Worker struct {
	cfg    Config
	log    hclog.Logger
	cl     *client.Client
	ledger *Ledger
	// wake is signalled (never blocking) when the sidecar's reachability
	// changes; the resource loop reads the state under mu.
	wake chan struct{}

	mu      sync.Mutex
	id      string   // local node id, once known
	owned   ownedSet // what this worker works on
	lost    bool     // the local sidecar has not answered for longer than TTL
	lostSeq uint64   // number of times it was lost
	token   uint64   // fencing token of the running leader job; 0 when none
	rounds  uint64   // work rounds done
}

// NewWorker validates cfg, opens the ledger and builds the client (it
// connects on first use).
func NewWorker(cfg Config) (*Worker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	ledger, err := OpenLedger(cfg.LedgerPath)
	if err != nil {
		return nil, err
	}
	ccfg := client.DefaultConfig()
	ccfg.Endpoints = cfg.Endpoints
	if cfg.RetryBackoff != (client.Backoff{}) {
		ccfg.RetryBackoff = cfg.RetryBackoff
	}
	ccfg.Logger = cfg.Logger.Named("client")
	cl, err := client.New(ccfg)
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	return &Worker{
		cfg: cfg, log: cfg.Logger, cl: cl, ledger: ledger,
		wake: make(chan struct{}, 1), owned: ownedSet{},
	}, nil
}

// Run works until ctx ends, then stops every goroutine it started, closes
// the client and returns nil. It returns an error only when it could not
// start (ctx ended before the local sidecar said who it is).
func (w *Worker) Run(ctx context.Context) error {
	defer w.cl.Close()
	id, err := w.localID(ctx)
	if err != nil {
		return err
	}
	w.log.Info(fmt.Sprintf("serving node %s (sidecar %s)", id, w.cfg.Endpoints[0]))

	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		w.heartbeatLoop(ctx)
	}()
	go func() {
		defer wg.Done()
		w.resourceLoop(ctx, id)
	}()
	go func() {
		defer wg.Done()
		w.leaderLoop(ctx)
	}()
	wg.Wait()
	w.log.Info("stopped")
	return nil
}

// localID asks the local sidecar its node id, retrying until ctx ends.
func (w *Worker) localID(ctx context.Context) (string, error) {
	for {
		cctx, cancel := context.WithTimeout(ctx, w.cfg.TTL)
		id, err := w.cl.LocalID(cctx)
		cancel()
		if err == nil {
			w.mu.Lock()
			w.id = id
			w.mu.Unlock()
			return id, nil
		}
		if ctx.Err() != nil {
			return "", fmt.Errorf("worker: local sidecar %s never answered: %w", w.cfg.Endpoints[0], ctx.Err())
		}
		w.log.Warn("waiting for the local sidecar", "endpoint", w.cfg.Endpoints[0], "error", err)
	}
}

// heartbeatLoop pushes an application heartbeat every TTL/3. When none has
// succeeded for longer than TTL, it marks the sidecar lost (the resource
// loop then drops every resource: the worker can no longer know that its
// node owns them); the first success after that marks it found again.
func (w *Worker) heartbeatLoop(ctx context.Context) {
	period := w.cfg.TTL / 3
	ticker := time.NewTicker(period)
	defer ticker.Stop()
	lastOK := time.Now()
	draining := false
	for {
		cctx, cancel := context.WithTimeout(ctx, period)
		h, err := w.cl.AppHeartbeat(cctx, w.cfg.TTL)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			lastOK = time.Now()
			w.setLost(false)
			if h.Draining != draining {
				draining = h.Draining
				w.log.Info(fmt.Sprintf("sidecar reports draining=%v (state %s)", draining, h.State))
			}
		} else {
			w.log.Debug("app heartbeat failed", "error", err)
			if since := time.Since(lastOK); since > w.cfg.TTL {
				if w.setLost(true) {
					w.log.Warn(fmt.Sprintf("local sidecar unreachable for %v: dropping all resources", since.Round(time.Millisecond)))
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// setLost records the sidecar's reachability and wakes the resource loop on
// a change; it reports whether the state changed.
func (w *Worker) setLost(lost bool) bool {
	w.mu.Lock()
	changed := w.lost != lost
	w.lost = lost
	if changed && lost {
		w.lostSeq++
	}
	w.mu.Unlock()
	if changed {
		if !lost {
			w.log.Info("local sidecar answers again: listing my resources")
		}
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
	return changed
}

func (w *Worker) sidecarState() (lost bool, seq uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lost, w.lostSeq
}

// resourceLoop lists the node's resources, follows their changes, and works
// on them every WorkInterval, until ctx ends. While the sidecar is lost it
// owns nothing and waits for it.
func (w *Worker) resourceLoop(ctx context.Context, self string) {
	work := time.NewTicker(w.cfg.WorkInterval)
	defer work.Stop()
	for ctx.Err() == nil {
		lost, seq := w.sidecarState()
		if lost {
			w.dropAll("local sidecar unreachable")
			select {
			case <-ctx.Done():
			case <-w.wake:
			case <-work.C:
				w.workRound()
			}
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, w.cfg.TTL)
		l, err := w.cl.MyResources(cctx)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				w.log.Warn("listing my resources failed; retrying", "error", err)
				retry := time.NewTimer(time.Second)
				select {
				case <-ctx.Done():
				case <-w.wake:
				case <-retry.C:
				}
				retry.Stop()
			}
			continue
		}
		w.update(func(s ownedSet) []change { return s.replace(l.Resources, "not in the listing") })
		w.log.Info(fmt.Sprintf("listed %d resources at revision %d; watching from there", len(l.Resources), l.Revision))
		w.follow(ctx, self, l.Revision, seq, work.C)
	}
}

// follow applies the watch of self's assignments from revision rev until
// ctx ends, the watch ends, or the sidecar is lost (lost count other than
// seq), working on every tick.
func (w *Worker) follow(ctx context.Context, self string, rev, seq uint64, work <-chan time.Time) {
	wctx, cancel := context.WithCancel(ctx)
	events := w.cl.WatchAssignments(wctx, self, rev)
	defer func() {
		cancel()
		for range events { // the client closes the channel once its goroutine ends
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
			if lost, now := w.sidecarState(); lost || now != seq {
				w.dropAll("local sidecar unreachable")
				return
			}
		case <-work:
			w.workRound()
		case ev, ok := <-events:
			if !ok {
				return
			}
			if ev.Err != nil {
				w.log.Warn("assignment watch ended; listing again", "error", ev.Err)
				return
			}
			w.update(func(s ownedSet) []change { return s.apply(self, ev) })
		}
	}
}

// update applies f to the owned set under the lock and logs its changes.
func (w *Worker) update(f func(ownedSet) []change) {
	w.mu.Lock()
	changes := f(w.owned)
	w.mu.Unlock()
	for _, c := range changes {
		w.log.Info(c.String())
	}
}

// dropAll releases every resource.
func (w *Worker) dropAll(why string) {
	w.update(func(s ownedSet) []change { return s.replace(nil, why) })
}

// workRound "works" on every owned resource: here, one log line. A real
// worker would pass each resource's epoch to whatever it writes, as its
// fencing token for that resource.
func (w *Worker) workRound() {
	w.mu.Lock()
	w.rounds++
	n, summary, lost := len(w.owned), w.owned.summary(), w.lost
	w.mu.Unlock()
	switch {
	case lost:
		w.log.Info("working on 0 resources (local sidecar unreachable)")
	case n == 0:
		w.log.Info("working on 0 resources")
	default:
		w.log.Info(fmt.Sprintf("working on %d resources: %s", n, summary))
	}
}

// leaderLoop runs the leader-only job whenever the local node leads, until
// ctx ends.
func (w *Worker) leaderLoop(ctx context.Context) {
	for {
		err := w.cl.RunWhileLeader(ctx, w.leaderJob)
		if ctx.Err() != nil {
			return
		}
		w.log.Error("run while leader failed; retrying in a second", "error", err)
		t := time.NewTimer(time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// leaderJob appends a record to the fenced ledger every LeaderInterval,
// with the leadership's fencing token, until ctx is cancelled (leadership
// lost) or the ledger refuses the token (a newer leader has written).
func (w *Worker) leaderJob(ctx context.Context, token uint64) error {
	w.mu.Lock()
	w.token = token
	self := w.id
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.token = 0
		w.mu.Unlock()
	}()
	w.log.Info(fmt.Sprintf("leader job started with fencing token %d", token))
	ticker := time.NewTicker(w.cfg.LeaderInterval)
	defer ticker.Stop()
	var seq uint64
	for {
		select {
		case <-ctx.Done():
			w.log.Info(fmt.Sprintf("leader job stopped (token %d, %d records written)", token, seq))
			return nil
		case <-ticker.C:
		}
		err := w.ledger.Append(Record{Token: token, Node: self, Seq: seq + 1, At: time.Now()})
		switch {
		case errors.Is(err, ErrStaleToken):
			w.log.Error(fmt.Sprintf("leader job stopped: the ledger refused token %d", token), "error", err)
			return nil
		case err != nil:
			w.log.Error("ledger write failed", "error", err)
		default:
			seq++
			w.log.Debug("ledger record written", "token", token, "seq", seq)
		}
	}
}

// ID is the local node's id ("" until known).
func (w *Worker) ID() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.id
}

// Owned returns a copy of the owned set, resource id -> epoch.
func (w *Worker) Owned() map[string]uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.owned.clone()
}

// LeaderToken is the fencing token of the running leader job, 0 when none
// runs.
func (w *Worker) LeaderToken() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.token
}

// SidecarLost reports whether the local sidecar is considered unreachable.
func (w *Worker) SidecarLost() bool {
	lost, _ := w.sidecarState()
	return lost
}
