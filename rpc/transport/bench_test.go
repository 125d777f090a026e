package transport

import (
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// Benchmarks compare this transport with raft's own TCP transport in the same run.
// Run them briefly: go test -run '^$' -bench . -benchtime 200x ./rpc/transport/

type closableTransport interface {
	raft.Transport
	raft.WithClose
}

// transportKind names a way to build a transport on a free loopback port.
type transportKind struct {
	name string
	make func(tb testing.TB, id string) closableTransport
}

// transportKinds builds one transport of each kind on a free loopback port.
var transportKinds = []transportKind{
	{"grpc", func(tb testing.TB, id string) closableTransport {
		tb.Helper()
		cfg := DefaultConfig()
		cfg.ID = raft.ServerID(id)
		cfg.BindAddr = "127.0.0.1:0"
		cfg.ClusterID = "bench"
		cfg.Logger = hclog.NewNullLogger()
		tr, err := New(cfg)
		if err != nil {
			tb.Fatal(err)
		}
		return tr
	}},
	{"tcp", func(tb testing.TB, id string) closableTransport {
		tb.Helper()
		tr, err := raft.NewTCPTransportWithLogger("127.0.0.1:0", nil, 3, 10*time.Second, hclog.NewNullLogger())
		if err != nil {
			tb.Fatal(err)
		}
		return tr
	}},
}

// answerAll answers every RPC of tr (and its heartbeats) until the returned stop.
func answerAll(tr raft.Transport) (stop func()) {
	tr.SetHeartbeatHandler(echoHandler)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case rpc := <-tr.Consumer():
				echoHandler(rpc)
			case <-done:
				return
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}

func reportOps(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// cpuTime returns the CPU time (user + system) this process has used so far.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkHeartbeat measures one heartbeat round trip, client and server in this
// process: ns/op is the latency, cpu-ns/op the CPU both sides spent on it (what an
// idle cluster pays per heartbeat). grpc is the heartbeat stream.
func BenchmarkHeartbeat(b *testing.B) {
	for _, kind := range transportKinds {
		b.Run(kind.name, func(b *testing.B) {
			client, server := kind.make(b, "a"), kind.make(b, "b")
			stop := answerAll(server)
			defer func() { _ = client.Close(); _ = server.Close(); stop() }()
			req := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ID: []byte("a"), Addr: []byte(client.LocalAddr())},
				Term: 1, Leader: []byte(client.LocalAddr())}
			var resp raft.AppendEntriesResponse
			// Warm up: connections and streams open before timing.
			for i := 0; i < 10; i++ {
				if err := client.AppendEntries("b", server.LocalAddr(), req, &resp); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime(b)
			for i := 0; i < b.N; i++ {
				if err := client.AppendEntries("b", server.LocalAddr(), req, &resp); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
			reportOps(b)
		})
	}
}

func BenchmarkAppendEntries(b *testing.B) {
	for _, kind := range transportKinds {
		b.Run(kind.name, func(b *testing.B) {
			client, server := kind.make(b, "a"), kind.make(b, "b")
			stop := answerAll(server)
			defer func() { _ = client.Close(); _ = server.Close(); stop() }()
			entries := make([]*raft.Log, 64) // raft's MaxAppendEntries
			for i := range entries {
				entries[i] = &raft.Log{Index: uint64(i + 1), Term: 1, Type: raft.LogCommand, Data: make([]byte, 256)}
			}
			req := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ID: []byte("a"), Addr: []byte(client.LocalAddr())},
				Term: 1, Leader: []byte(client.LocalAddr()), PrevLogEntry: 1, PrevLogTerm: 1, Entries: entries, LeaderCommitIndex: 1}
			var resp raft.AppendEntriesResponse
			b.ResetTimer()
			cpu0 := cpuTime(b)
			for i := 0; i < b.N; i++ {
				if err := client.AppendEntries("b", server.LocalAddr(), req, &resp); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
			reportOps(b)
		})
	}
}

func BenchmarkApply3Nodes(b *testing.B) {
	for _, kind := range transportKinds {
		b.Run(kind.name, func(b *testing.B) {
			rafts := make([]*raft.Raft, 3)
			trs := make([]closableTransport, 3)
			var servers []raft.Server
			for i := range rafts {
				id := raft.ServerID(fmt.Sprintf("n%d", i+1))
				trs[i] = kind.make(b, string(id))
				servers = append(servers, raft.Server{ID: id, Address: trs[i].LocalAddr()})
			}
			for i := range rafts {
				conf := raftConfig(servers[i].ID)
				conf.Logger = hclog.NewNullLogger()
				conf.SnapshotThreshold = 1 << 20
				// raft's defaults: the tests' 300 ms timing loses leadership mid-run on
				// an overloaded machine.
				conf.HeartbeatTimeout = time.Second
				conf.ElectionTimeout = time.Second
				conf.LeaderLeaseTimeout = 500 * time.Millisecond
				store := raft.NewInmemStore()
				r, err := raft.NewRaft(conf, &listFSM{}, store, store, raft.NewInmemSnapshotStore(), trs[i])
				if err != nil {
					b.Fatal(err)
				}
				rafts[i] = r
			}
			defer func() {
				for i, r := range rafts {
					_ = r.Shutdown().Error()
					_ = trs[i].Close()
				}
			}()
			if err := rafts[0].BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
				b.Fatal(err)
			}
			var leader *raft.Raft
			deadline := time.Now().Add(15 * time.Second)
			for leader == nil {
				for _, r := range rafts {
					if r.State() == raft.Leader {
						leader = r
					}
				}
				if time.Now().After(deadline) {
					b.Fatal("no leader")
				}
				time.Sleep(10 * time.Millisecond)
			}
			data := make([]byte, 128)
			const window = 256 // applies in flight
			futures := make([]raft.ApplyFuture, 0, window)
			wait := func() {
				for _, f := range futures {
					if err := f.Error(); err != nil {
						b.Fatal(err)
					}
				}
				futures = futures[:0]
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				futures = append(futures, leader.Apply(data, 10*time.Second))
				if len(futures) == window {
					wait()
				}
			}
			wait()
			reportOps(b)
		})
	}
}

// BenchmarkReachable measures one Reachable probe of a live transport: a TCP dial and
// the HTTP/2 preface answered by the server's SETTINGS frame.
func BenchmarkReachable(b *testing.B) {
	client, server := transportKinds[0].make(b, "a").(*Transport), transportKinds[0].make(b, "b")
	defer func() { _ = client.Close(); _ = server.Close() }()
	ctx := b.Context()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := client.Reachable(ctx, server.LocalAddr()); err != nil {
			b.Fatal(err)
		}
	}
}
