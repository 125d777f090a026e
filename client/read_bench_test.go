package client

import (
	"context"
	"fmt"
	"testing"

	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
	"github.com/heartbeat-sidecar/heartbeat/node"
)

// BenchmarkReads measures the cost of a read by mode and by the node asked:
// consistent (a read index from the leader, batched, then the local state)
// against stale (the local state at once), on the leader and on a follower,
// one reader at a time (latency: ns/op) and 32 in parallel (throughput:
// reads/s). Three in-process nodes over loopback gRPC, 200 resources; each
// read lists one member's assignments (a small answer, so the mode's cost
// is what shows).
//
//	go test -run XXX -bench Reads -benchtime 2000x ./client/
func BenchmarkReads(b *testing.B) {
	c := testcluster.Start(b, 3, testcluster.Options{})
	leader := c.Leader()
	follower := c.Followers()[0]
	ctx := context.Background()
	admin := newBenchClient(b, leader)
	var specs []ResourceSpec
	for i := 0; i < 200; i++ {
		specs = append(specs, ResourceSpec{ID: fmt.Sprintf("b-%03d", i)})
	}
	if _, err := admin.Register(ctx, specs...); err != nil {
		b.Fatal(err)
	}
	for _, at := range []struct {
		name string
		n    *node.Node
	}{{"leader", leader}, {"follower", follower}} {
		cl := newBenchClient(b, at.n)
		for _, mode := range []struct {
			name string
			opts []ReadOption
		}{{"consistent", nil}, {"stale", []ReadOption{Stale()}}} {
			b.Run(at.name+"/"+mode.name+"/serial", func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					if _, err := cl.Assignments(ctx, leader.ID(), mode.opts...); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run(at.name+"/"+mode.name+"/parallel32", func(b *testing.B) {
				b.SetParallelism(32)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := cl.Assignments(ctx, leader.ID(), mode.opts...); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reads/s")
			})
		}
	}
}

// newBenchClient is a client over one node, closed with the benchmark.
func newBenchClient(b *testing.B, n *node.Node) *Client {
	b.Helper()
	cfg := DefaultConfig()
	cfg.Endpoints = []string{n.ClientAddr()}
	cl, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cl.Close() })
	return cl
}
