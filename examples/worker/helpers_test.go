package main

// Test helpers: in-process Heartbeat nodes over loopback gRPC come from
// internal/testcluster. Every node gets a reserved client port
// (FixedClientAddrs), so that a killed node restarts on the same address and
// its worker finds it again.

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"

	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// startCluster starts n voters, each on its reserved client port, behind a
// fault network (Isolate, Heal), and waits for a leader and for every
// node's membership record.
func startCluster(t *testing.T, n int) *testcluster.Cluster {
	t.Helper()
	return testcluster.Start(t, n, testcluster.Options{Wait: waitTimeout, FixedClientAddrs: true, FaultNet: true})
}

// assignments returns what node id's own state says id owns (id -> epoch).
func assignments(c *testcluster.Cluster, id string) map[string]uint64 {
	out := map[string]uint64{}
	for _, r := range c.Node(id).Membership().View().Resources {
		if r.Owner == id {
			out[r.ID] = r.Epoch
		}
	}
	return out
}

// runningWorker is a Worker running in its own goroutine.
type runningWorker struct {
	*Worker
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// stop ends the worker and returns Run's result (the same on every call).
func (r *runningWorker) stop() error {
	r.once.Do(func() {
		r.cancel()
		r.err = <-r.done
	})
	return r.err
}

// startWorker runs a worker beside node id, stopped at the end of the test.
// Its endpoints are id's client address first, then the others'. The start
// and end of its work on each resource go to h.
func startWorker(t *testing.T, c *testcluster.Cluster, id, ledger string, h *history) *runningWorker {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Endpoints = c.Endpoints(id)
	cfg.LedgerPath = ledger
	cfg.TTL = 3 * time.Second
	cfg.WorkInterval = 500 * time.Millisecond
	cfg.LeaderInterval = 100 * time.Millisecond
	cfg.observe = h.observer(id)
	cfg.RetryBackoff.Min, cfg.RetryBackoff.Max = 20*time.Millisecond, 300*time.Millisecond
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "worker-" + id, Level: hclog.Info, Output: c.Log()})
	w, err := NewWorker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningWorker{Worker: w, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- w.Run(ctx) }()
	t.Cleanup(func() {
		if err := r.stop(); err != nil {
			t.Errorf("worker %s: Run returned %v", id, err)
		}
	})
	return r
}

// span is one stretch of work of one worker on one resource at one epoch.
type span struct {
	worker, resource string
	epoch            uint64
	start, end       time.Time // end is zero while it runs
}

func (s span) String() string {
	end := "running"
	if !s.end.IsZero() {
		end = s.end.Format("15:04:05.000000")
	}
	return fmt.Sprintf("%s on %s@%d %s..%s", s.worker, s.resource, s.epoch, s.start.Format("15:04:05.000000"), end)
}

// history records the workers' spans (Config.observe), safe for concurrent
// use.
type history struct {
	mu    sync.Mutex
	spans []span
}

// observer is the Config.observe of worker's worker.
func (h *history) observer(worker string) func(resource string, epoch uint64, running bool) {
	return func(resource string, epoch uint64, running bool) {
		now := time.Now()
		h.mu.Lock()
		defer h.mu.Unlock()
		if running {
			h.spans = append(h.spans, span{worker: worker, resource: resource, epoch: epoch, start: now})
			return
		}
		for i := len(h.spans) - 1; i >= 0; i-- {
			s := &h.spans[i]
			if s.worker == worker && s.resource == resource && s.epoch == epoch && s.end.IsZero() {
				s.end = now
				return
			}
		}
	}
}

// snapshot copies the spans.
func (h *history) snapshot() []span {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]span(nil), h.spans...)
}

// checkSpans reports the first two spans of one resource that overlap in
// time (one began before the other had ended, or while it still runs): two
// workers working on one resource at once.
func checkSpans(spans []span) error {
	byResource := map[string][]span{}
	for _, s := range spans {
		byResource[s.resource] = append(byResource[s.resource], s)
	}
	ids := make([]string, 0, len(byResource))
	for id := range byResource {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		ss := byResource[id]
		sort.SliceStable(ss, func(i, j int) bool { return ss[i].start.Before(ss[j].start) })
		last := ss[0] // the span that ends last among those seen
		for _, s := range ss[1:] {
			if last.end.IsZero() || !last.end.Before(s.start) {
				return fmt.Errorf("%s: %v overlaps %v", id, s, last)
			}
			if s.end.IsZero() || s.end.After(last.end) {
				last = s
			}
		}
	}
	return nil
}
