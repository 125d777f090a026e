package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/heartbeat-sidecar/heartbeat/client"
)

// WorkLog records every run of the applications' fns. It is safe for concurrent use.
type WorkLog struct {
	mu      sync.Mutex
	runs    []WorkInterval
	changed chan struct{} // one token after any change
}

// NewWorkLog returns an empty log.
func NewWorkLog() *WorkLog { return &WorkLog{changed: make(chan struct{}, 1)} }

// Begin records that app started work on key (with its fencing token or epoch) now, and
// returns the run's index for End.
func (l *WorkLog) Begin(app, key string, fence uint64) int {
	now := time.Now() // before the lock: the moment fn began, not when the log was free
	l.mu.Lock()
	defer l.mu.Unlock()
	l.runs = append(l.runs, WorkInterval{App: app, Key: key, Fence: fence, Start: now})
	l.poke()
	return len(l.runs) - 1
}

// End records that run i ended now.
func (l *WorkLog) End(i int) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.runs[i].End = now
	l.poke()
}

func (l *WorkLog) poke() {
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

// Snapshot returns a copy of every run so far.
func (l *WorkLog) Snapshot() []WorkInterval {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]WorkInterval(nil), l.runs...)
}

// Changed receives a token after the log changed (a run began or ended) since the last one
// was taken.
func (l *WorkLog) Changed() <-chan struct{} { return l.changed }

// work is the fn every application runs, as leader and per resource: record the start, wait
// for the context, record the end.
func (l *WorkLog) work(ctx context.Context, app, key string, fence uint64) error {
	i := l.Begin(app, key, fence)
	<-ctx.Done()
	l.End(i)
	return ctx.Err()
}

// LeaseApps is one application per node, in the benchmark process: a client.Client whose
// Endpoints[0] is that node's client gRPC address, running RunWhileLeader and RunWhileOwner
// with fns that record into a WorkLog.
type LeaseApps struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	clients []*client.Client

	mu   sync.Mutex
	errs []error
	once sync.Once
	err  error
}

// StartLeaseApps starts one application beside every node of c. unsafeNoTimer disables the
// clients' lease timers (client.Config.UnsafeNoLeaseTimer): only to show that the checks
// catch the overlaps that follow.
func StartLeaseApps(c *Cluster, log *WorkLog, unsafeNoTimer bool) (*LeaseApps, error) {
	ctx, cancel := context.WithCancel(context.Background())
	a := &LeaseApps{cancel: cancel}
	for _, p := range c.Procs {
		cfg := client.DefaultConfig()
		cfg.Endpoints = []string{p.Spec.ClientAddr}
		cfg.UnsafeNoLeaseTimer = unsafeNoTimer
		if c.TLS != nil {
			cfg.DialOptions = []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(c.TLS.Clone()))}
		}
		cl, err := client.New(cfg)
		if err != nil {
			_ = a.Close()
			return nil, fmt.Errorf("client beside %s: %w", p.Spec.ID, err)
		}
		a.clients = append(a.clients, cl)
		app := p.Spec.ID
		a.wg.Go(func() {
			a.fail(app, "RunWhileLeader", cl.RunWhileLeader(ctx, func(ctx context.Context, token uint64) error {
				return log.work(ctx, app, LeaderKey, token)
			}))
		})
		a.wg.Go(func() {
			a.fail(app, "RunWhileOwner", cl.RunWhileOwner(ctx, func(ctx context.Context, id string, epoch uint64) error {
				return log.work(ctx, app, id, epoch)
			}))
		})
	}
	return a, nil
}

// fail keeps an error of a Run* call that is not the expected end (the context cancelled).
func (a *LeaseApps) fail(app, call string, err error) {
	if err == nil || errors.Is(err, context.Canceled) {
		return
	}
	a.mu.Lock()
	a.errs = append(a.errs, fmt.Errorf("%s beside %s: %w", call, app, err))
	a.mu.Unlock()
}

// Err returns the errors of Run* calls that ended early so far (nil: none).
func (a *LeaseApps) Err() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return errors.Join(a.errs...)
}

// Close cancels every application, waits until every Run* call has returned (so every fn
// has returned and recorded its end), closes the clients, and returns the errors of Run*
// calls that ended other than by the cancellation. Safe to call more than once.
func (a *LeaseApps) Close() error {
	a.once.Do(func() {
		a.cancel()
		a.wg.Wait()
		errs := []error{a.Err()}
		for _, cl := range a.clients {
			errs = append(errs, cl.Close())
		}
		a.err = errors.Join(errs...)
	})
	return a.err
}
