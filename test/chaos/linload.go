//go:build chaos

package chaos

import (
	"context"

	"fmt"
	"math/rand"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/client"
)

// Reads-and-writes workload (issue 10): linClients clients, each starting
// at a different node, register, update and delete resources lin-0 ..
// lin-(linKeys-1) and read them back with consistent reads, for the whole
// run; every operation goes into the History as a LinOp, which R1 checks
// for linearizability.
const (
	linClients  = 4
	linKeys     = 8
	linPace     = 40 * time.Millisecond // between two operations of a client
	linDeadline = 2 * time.Second       // of one operation (the client retries within it)
)

// LinWorkload runs the clients; Stop ends and joins them.
type LinWorkload struct {
	h       *History
	clients []*client.Client
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	stop    sync.Once
	weight  atomic.Uint32 // the next weight written: every write's is distinct (mod 1000)
}

// StartLinWorkload starts the clients; client i's endpoints start at node i
// (mod the nodes), so reads are served by different nodes and writes are
// forwarded from them. stale makes the reads stale (the planted violation:
// a cut-off node answers from its old state). dial are the clients' gRPC
// dial options (TLS credentials; nil: plaintext).
func StartLinWorkload(h *History, nodes []string, addr func(node string) string, stale bool, seed int64, dial []grpc.DialOption) (*LinWorkload, error) {
	ctx, cancel := context.WithCancel(context.Background())
	w := &LinWorkload{h: h, cancel: cancel}
	for i := 0; i < linClients; i++ {
		cfg := client.DefaultConfig()
		cfg.DialOptions = dial
		first := nodes[i%len(nodes)]
		for j := range nodes {
			cfg.Endpoints = append(cfg.Endpoints, addr(nodes[(i+j)%len(nodes)]))
		}
		c, err := client.New(cfg)
		if err != nil {
			w.Stop()
			return nil, fmt.Errorf("chaos: reads-and-writes client %d: %w", i, err)
		}
		w.clients = append(w.clients, c)
		rng := rand.New(rand.NewSource(seed + int64(i)))
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.loop(ctx, i, first, c, rng, stale)
		}()
	}
	return w, nil
}

// loop runs one client's operations until ctx ends.
func (w *LinWorkload) loop(ctx context.Context, id int, node string, c *client.Client, rng *rand.Rand, stale bool) {
	t := time.NewTicker(linPace)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		key := fmt.Sprintf("lin-%d", rng.Intn(linKeys))
		switch p := rng.Intn(10); {
		case p < 4:
			w.read(ctx, id, node, c, stale)
		case p < 8:
			w.register(ctx, id, node, c, key)
		default:
			w.delete(ctx, id, node, c, key)
		}
	}
}

// begin returns the op's context and its invocation time.
func (w *LinWorkload) begin(ctx context.Context) (context.Context, context.CancelFunc, int64) {
	octx, cancel := context.WithTimeout(ctx, linDeadline)
	return octx, cancel, int64(w.h.Since())
}

// record adds a write. One cut short by Stop may still have been applied
// (a later read can see it): it is recorded as unknown, never dropped.
func (w *LinWorkload) record(ctx context.Context, op LinOp) {
	op.Return = int64(w.h.Since())
	if ctx.Err() != nil && op.Outcome != LinOK {
		op.Outcome = LinUnknown
	}
	w.h.AddLin(op)
}

// writeOutcome classifies a write's error: InvalidArgument surely did
// nothing; anything else may have been applied (a retried or forwarded
// write whose answer was lost).
func writeOutcome(err error) LinOutcome {
	switch {
	case err == nil:
		return LinOK
	case status.Code(err) == codes.InvalidArgument:
		return LinFail
	}
	return LinUnknown
}

func (w *LinWorkload) register(ctx context.Context, id int, node string, c *client.Client, key string) {
	weight := w.weight.Add(1)%1000 + 1
	octx, cancel, call := w.begin(ctx)
	defer cancel()
	_, err := c.Register(octx, client.ResourceSpec{ID: key, Weight: weight})
	w.record(ctx, LinOp{Client: id, Kind: LinRegister, Key: key, Weight: weight, Outcome: writeOutcome(err), Node: node, Call: call})
}

// delete: a success says the resource was there; NotFound says it is gone
// now (the model asserts nothing about before: it may answer a retry of an
// attempt that did delete it).
func (w *LinWorkload) delete(ctx context.Context, id int, node string, c *client.Client, key string) {
	octx, cancel, call := w.begin(ctx)
	defer cancel()
	_, err := c.Delete(octx, key)
	op := LinOp{Client: id, Kind: LinDelete, Key: key, Found: err == nil, Outcome: writeOutcome(err), Node: node, Call: call}
	if status.Code(err) == codes.NotFound {
		op.Outcome = LinOK
	}
	w.record(ctx, op)
}

// read lists the resources once (one consistent read at one revision) and
// records a read of every key of the key space.
func (w *LinWorkload) read(ctx context.Context, id int, node string, c *client.Client, stale bool) {
	octx, cancel, call := w.begin(ctx)
	defer cancel()
	var opts []client.ReadOption
	if stale {
		opts = append(opts, client.Stale())
	}
	l, err := c.Resources(octx, opts...)
	ret := int64(w.h.Since())
	if ctx.Err() != nil {
		return
	}
	got := map[string]uint32{}
	for _, r := range l.Resources {
		got[r.ID] = r.Weight
	}
	for k := 0; k < linKeys; k++ {
		key := fmt.Sprintf("lin-%d", k)
		op := LinOp{Client: id, Kind: LinRead, Key: key, Outcome: LinOK, Node: node, Call: call, Return: ret}
		if err != nil {
			op.Outcome = LinFail
		} else {
			op.Weight, op.Found = got[key]
		}
		w.h.AddLin(op)
	}
}

// Stop ends the clients' loops, waits for them and closes the clients.
// Safe to call twice.
func (w *LinWorkload) Stop() {
	w.stop.Do(func() {
		w.cancel()
		w.wg.Wait()
		for _, c := range w.clients {
			_ = c.Close()
		}
	})
}
