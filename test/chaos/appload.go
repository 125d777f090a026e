//go:build chaos

package chaos

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"google.golang.org/grpc"

	"github.com/heartbeat-sidecar/heartbeat/client"
)

// Workload is the application beside every node: one client.Client per
// node, whose local sidecar (Endpoints[0]) is that node, running a leader
// job (RunWhileLeader) and per-resource work (RunWhileOwner) for the whole
// run. Each fn records a Work in the History when it starts and when its
// context is cancelled, and then returns. The clients live in the test
// process on the host, so a paused, cut-off or killed container leaves its
// application running: exactly the case the client's leases are for. It
// owns two goroutines per node; Stop ends and joins them.
type Workload struct {
	h       *History
	clients []*client.Client
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	stop    sync.Once

	mu   sync.Mutex
	live map[string][]string // holding ("leader", "resource r") -> nodes whose fn runs
	errs []error
}

// StartWorkload starts the application beside every node; addr gives a
// node's client gRPC address as the host reaches it. unsafe sets
// client.Config.UnsafeNoLeaseTimer (planted violations only); dial are the
// clients' gRPC dial options (TLS credentials; nil: plaintext).
func StartWorkload(h *History, nodes []string, addr func(node string) string, unsafe bool, dial []grpc.DialOption) (*Workload, error) {
	ctx, cancel := context.WithCancel(context.Background())
	w := &Workload{h: h, cancel: cancel, live: map[string][]string{}}
	for _, n := range nodes {
		cfg := client.DefaultConfig()
		cfg.Endpoints = []string{addr(n)}
		for _, o := range nodes {
			if o != n {
				cfg.Endpoints = append(cfg.Endpoints, addr(o))
			}
		}
		cfg.UnsafeNoLeaseTimer = unsafe
		cfg.DialOptions = dial
		c, err := client.New(cfg)
		if err != nil {
			_ = w.Stop() // the error that matters is the one returned
			return nil, fmt.Errorf("chaos: application client of %s: %w", n, err)
		}
		w.clients = append(w.clients, c)
		w.wg.Add(2)
		go func() {
			defer w.wg.Done()
			w.ended(n, c.RunWhileLeader(ctx, func(ctx context.Context, token uint64) error {
				return w.hold(ctx, Work{Node: n, Kind: WorkLeader, Token: token})
			}))
		}()
		go func() {
			defer w.wg.Done()
			w.ended(n, c.RunWhileOwner(ctx, func(ctx context.Context, id string, epoch uint64) error {
				return w.hold(ctx, Work{Node: n, Kind: WorkResource, Resource: id, Token: epoch})
			}))
		}()
	}
	return w, nil
}

// hold is every fn: record the start, wait for the cancellation, record it.
func (w *Workload) hold(ctx context.Context, work Work) error {
	work.Start = w.h.Since()
	i := w.h.StartWork(work)
	w.track(work, true)
	<-ctx.Done()
	w.h.EndWork(i, w.h.Since())
	w.track(work, false)
	return ctx.Err()
}

func (w *Workload) track(work Work, running bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	k := work.what()
	if running {
		w.live[k] = append(w.live[k], work.Node)
	} else if i := slices.Index(w.live[k], work.Node); i >= 0 {
		w.live[k] = slices.Delete(w.live[k], i, i+1)
	}
}

// ended records why a Run* call returned before Stop.
func (w *Workload) ended(node string, err error) {
	if err == nil || errors.Is(err, context.Canceled) {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.errs = append(w.errs, fmt.Errorf("application beside %s: %w", node, err))
}

// Register registers resources r-00, r-01, ... (n of them) through the
// first client (writes follow the leader).
func (w *Workload) Register(ctx context.Context, n int) error {
	specs := make([]client.ResourceSpec, n)
	for i := range specs {
		specs[i] = client.ResourceSpec{ID: fmt.Sprintf("r-%02d", i)}
	}
	if _, err := w.clients[0].Register(ctx, specs...); err != nil {
		return fmt.Errorf("chaos: register %d resources: %w", n, err)
	}
	return nil
}

// Live reports whether exactly one node runs the leader job and exactly one
// node works on each of resources resources, with a description.
func (w *Workload) Live(resources int) (bool, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	held, multi := 0, 0
	for k, nodes := range w.live {
		if len(nodes) > 0 && strings.HasPrefix(k, "resource r-") { // not the reads-and-writes workload's lin-*
			held++
		}
		if len(nodes) > 1 {
			multi++
		}
	}
	leaders := w.live["leader job"]
	desc := fmt.Sprintf("leader job on %v, %d of %d resources worked on, %d held by several nodes", leaders, held, resources, multi)
	return len(leaders) == 1 && held == resources && multi == 0, desc
}

// Stop cancels every fn (each records its cancellation), waits for the
// goroutines and closes the clients. It returns what ended a Run* call early.
// Safe to call twice.
func (w *Workload) Stop() error {
	w.stop.Do(func() {
		w.cancel()
		w.wg.Wait()
		for _, c := range w.clients {
			_ = c.Close()
		}
	})
	w.mu.Lock()
	defer w.mu.Unlock()
	return errors.Join(w.errs...)
}
