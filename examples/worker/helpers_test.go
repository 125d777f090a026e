package main

// Test helpers: in-process Heartbeat nodes over loopback gRPC come from
// internal/testcluster. Every node gets a reserved client port
// (FixedClientAddrs), so that a killed node restarts on the same address and
// its worker finds it again.

import (
	"context"
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

// startCluster starts n voters, each on its reserved client port, and
// waits for a leader and for every node's membership record.
func startCluster(t *testing.T, n int) *testcluster.Cluster {
	t.Helper()
	return testcluster.Start(t, n, testcluster.Options{Wait: waitTimeout, FixedClientAddrs: true})
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
// Its endpoints are id's client address first, then the others'; or only
// id's with alone set.
func startWorker(t *testing.T, c *testcluster.Cluster, id, ledger string, alone bool) *runningWorker {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Endpoints = c.Endpoints(id)
	if alone {
		cfg.Endpoints = cfg.Endpoints[:1]
	}
	cfg.LedgerPath = ledger
	cfg.TTL = 3 * time.Second
	cfg.WorkInterval = 500 * time.Millisecond
	cfg.LeaderInterval = 100 * time.Millisecond
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
