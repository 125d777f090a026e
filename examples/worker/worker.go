package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/heartbeat-sidecar/heartbeat/client"
)

// Config configures a Worker. Start from DefaultConfig and set Endpoints and
// LedgerPath.
type Config struct {
	// Endpoints are sidecar client addresses; Endpoints[0] is the local
	// sidecar (the node this worker runs beside): its leases are the ones
	// the worker follows. The others let the worker's reads go on while the
	// local sidecar is briefly unreachable. Required.
	Endpoints []string
	// LedgerPath is the fenced ledger file the leader-only job appends to.
	// Required.
	LedgerPath string
	// ShardLedgers is the directory of the per-resource fenced ledgers: the
	// work on a resource appends a record to the file named after it, with
	// the resource's epoch as its fencing token. Default: LedgerPath +
	// ".shards".
	ShardLedgers string
	// TTL is the application heartbeat's time to live: the worker pushes one
	// every TTL/3, and the sidecar reports the application unhealthy (and
	// moves its resources away) when it hears nothing for TTL. Default 3s;
	// 300ms..10m. It has nothing to do with how long the worker works on a
	// resource: that is the ownership lease's business (RunWhileOwner).
	TTL time.Duration
	// WorkInterval is the period of the work on each owned resource (one
	// ledger record) and of the "working on" summary line. Default 2s.
	WorkInterval time.Duration
	// LeaderInterval is the period of the leader-only job's ledger writes.
	// Default 1s.
	LeaderInterval time.Duration
	// TLS, when set, dials the sidecars over TLS with this configuration
	// (a cluster with mutual TLS: the worker's client certificate, verified
	// against the cluster's CA; see TLSConfig). nil: plaintext.
	TLS *tls.Config
	// RetryBackoff is passed to the client (zero: the client's default).
	RetryBackoff client.Backoff
	// Logger receives the worker's log; nil: discarded.
	Logger hclog.Logger

	// observe, when set (by tests), is called as the work on a resource
	// starts (running true) and once it has stopped (running false).
	observe func(resource string, epoch uint64, running bool)
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
// node owns (and only while that node's ownership lease holds), and runs a
// leader-only job while that node leads. Build it with NewWorker and call
// Run once.
type Worker struct {
	cfg    Config
	log    hclog.Logger
	cl     *client.Client
	ledger *Ledger

	mu     sync.Mutex
	id     string   // local node id, once known
	owned  ownedSet // resources whose work runs, id -> epoch
	token  uint64   // fencing token of the running leader job; 0 when none
	rounds uint64   // summary lines logged
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
	if cfg.ShardLedgers == "" {
		cfg.ShardLedgers = cfg.LedgerPath + ".shards"
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
	if cfg.TLS != nil {
		ccfg.DialOptions = []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(cfg.TLS))}
	}
	cl, err := client.New(ccfg)
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	return &Worker{cfg: cfg, log: cfg.Logger, cl: cl, ledger: ledger, owned: ownedSet{}}, nil
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
	for _, loop := range []func(context.Context){
		w.heartbeatLoop,
		w.summaryLoop,
		func(ctx context.Context) {
			w.retry(ctx, "run while owner", func() error { return w.cl.RunWhileOwner(ctx, w.work) })
		},
		func(ctx context.Context) {
			w.retry(ctx, "run while leader", func() error { return w.cl.RunWhileLeader(ctx, w.leaderJob) })
		},
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			loop(ctx)
		}()
	}
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

// heartbeatLoop pushes an application heartbeat every TTL/3 until ctx ends,
// and logs when the sidecar reports its node draining or not.
func (w *Worker) heartbeatLoop(ctx context.Context) {
	period := w.cfg.TTL / 3
	ticker := time.NewTicker(period)
	defer ticker.Stop()
	draining := false
	for {
		cctx, cancel := context.WithTimeout(ctx, period)
		h, err := w.cl.AppHeartbeat(cctx, w.cfg.TTL)
		cancel()
		if ctx.Err() != nil {
			return
		}
		switch {
		case err != nil:
			w.log.Debug("app heartbeat failed", "error", err)
		case h.Draining != draining:
			draining = h.Draining
			w.log.Info(fmt.Sprintf("sidecar reports draining=%v (state %s)", draining, h.State))
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// retry runs f (RunWhileOwner or RunWhileLeader, which return only when
// ctx ends or the client is closed) again a second after it failed, until
// ctx ends.
func (w *Worker) retry(ctx context.Context, what string, f func() error) {
	for {
		err := f()
		if ctx.Err() != nil {
			return
		}
		w.log.Error(what+" failed; retrying in a second", "error", err)
		t := time.NewTimer(time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// work is the RunWhileOwner fn: it works on one resource at one epoch (a
// record in the resource's fenced ledger every WorkInterval, the epoch as
// its token) until ctx is cancelled (the resource moved, the ownership
// lease ran out, the sidecar went away) or the ledger refuses the epoch (a
// newer owner has written). Cancelled, it returns ctx.Err(): RunWhileOwner
// takes a nil return for "done with this resource at this epoch" and would
// not start it again after a lease that lapsed and came back.
func (w *Worker) work(ctx context.Context, resource string, epoch uint64) error {
	self := w.acquire(resource, epoch)
	why := "ownership ended: moved, lease not renewed, or sidecar gone"
	defer func() { w.release(resource, epoch, why) }()
	ticker := time.NewTicker(w.cfg.WorkInterval)
	defer ticker.Stop()
	for seq := uint64(1); ctx.Err() == nil; {
		err := w.appendShard(resource, Record{Token: epoch, Node: self, Seq: seq, At: time.Now()})
		switch {
		case errors.Is(err, ErrStaleToken):
			why = "the ledger holds a newer epoch"
			w.log.Error(fmt.Sprintf("work on %s stopped: the ledger refused epoch %d", resource, epoch), "error", err)
			return nil
		case err != nil:
			w.log.Error("shard ledger write failed", "resource", resource, "error", err)
		default:
			seq++
		}
		select {
		case <-ctx.Done():
		case <-ticker.C:
		}
	}
	return ctx.Err()
}

// appendShard appends r to resource's fenced ledger.
func (w *Worker) appendShard(resource string, r Record) error {
	l, err := OpenLedger(w.shardPath(resource))
	if err != nil {
		return err
	}
	return l.Append(r)
}

// shardPath is the ledger file of a resource: its id path-escaped, behind a
// prefix so that no id names "." or "..".
func (w *Worker) shardPath(resource string) string {
	return filepath.Join(w.cfg.ShardLedgers, "r-"+url.PathEscape(resource))
}

// acquire records that the work on resource at epoch runs, and returns the
// local node id.
func (w *Worker) acquire(resource string, epoch uint64) string {
	w.mu.Lock()
	w.owned[resource] = epoch
	self := w.id
	w.mu.Unlock()
	w.log.Info(fmt.Sprintf("acquired %s epoch %d", resource, epoch))
	if w.cfg.observe != nil {
		w.cfg.observe(resource, epoch, true)
	}
	return self
}

// release records that the work on resource at epoch stopped.
func (w *Worker) release(resource string, epoch uint64, why string) {
	if w.cfg.observe != nil {
		w.cfg.observe(resource, epoch, false)
	}
	w.mu.Lock()
	if w.owned[resource] == epoch {
		delete(w.owned, resource)
	}
	w.mu.Unlock()
	w.log.Info(fmt.Sprintf("released %s epoch %d (%s)", resource, epoch, why))
}

// summaryLoop logs the resources being worked on every WorkInterval until
// ctx ends.
func (w *Worker) summaryLoop(ctx context.Context) {
	t := time.NewTicker(w.cfg.WorkInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		w.mu.Lock()
		w.rounds++
		n, summary := len(w.owned), w.owned.summary()
		w.mu.Unlock()
		if n == 0 {
			w.log.Info("working on 0 resources")
		} else {
			w.log.Info(fmt.Sprintf("working on %d resources: %s", n, summary))
		}
	}
}

// leaderJob appends a record to the fenced ledger every LeaderInterval,
// with the leadership's fencing token, until ctx is cancelled (leadership
// lost; it returns ctx.Err()) or the ledger refuses the token (a newer
// leader has written; it returns nil: done with this leadership).
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
			return ctx.Err()
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

// Owned returns the resources being worked on, resource id -> epoch.
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
