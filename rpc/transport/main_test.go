package transport

import (
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"go.uber.org/goleak"

	"github.com/heartbeat-sidecar/heartbeat/internal/testport"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// raft's own TCP transport, used only as the benchmarks' baseline, leaves its
		// server-side connection readers running after Close (its pooled client
		// connections are never closed). Nothing of ours runs in that function.
		goleak.IgnoreAnyFunction("github.com/hashicorp/raft.(*NetworkTransport).handleConn"),
	)
}

// testLogger logs only errors, to keep test output readable.
func testLogger() hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Level: hclog.Error, Name: "test"})
}

// newTestTransport starts a transport on a free loopback port, closed at cleanup.
func newTestTransport(t testing.TB, id string, mod ...func(*Config)) *Transport {
	t.Helper()
	cfg := DefaultConfig()
	cfg.ID = raft.ServerID(id)
	cfg.BindAddr = testport.Addr(t) // reserved: some tests bind it again
	cfg.ClusterID = "test-cluster"
	// Generous: the shared machine and the race detector make large copies slow, and
	// no test here relies on these deadlines expiring.
	cfg.RPCTimeout = 30 * time.Second
	cfg.HeartbeatTimeout = 5 * time.Second
	cfg.Logger = testLogger()
	for _, m := range mod {
		m(&cfg)
	}
	tr, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

// serve answers every RPC of tr's Consumer with handle until cleanup.
func serve(t testing.TB, tr *Transport, handle func(raft.RPC)) {
	t.Helper()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case rpc := <-tr.Consumer():
				handle(rpc)
			case <-stop:
				return
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		wg.Wait()
	})
}

// echoHandler answers each RPC with a response that echoes recognizable values of the
// request (term+1, etc.), so tests can see the request arrived intact.
func echoHandler(rpc raft.RPC) {
	switch req := rpc.Command.(type) {
	case *raft.AppendEntriesRequest:
		var last uint64
		if n := len(req.Entries); n > 0 {
			last = req.Entries[n-1].Index
		}
		rpc.Respond(&raft.AppendEntriesResponse{Term: req.Term, LastLog: last, Success: true}, nil)
	case *raft.RequestVoteRequest:
		rpc.Respond(&raft.RequestVoteResponse{Term: req.Term, Granted: req.LeadershipTransfer, Peers: req.Candidate}, nil)
	case *raft.RequestPreVoteRequest:
		rpc.Respond(&raft.RequestPreVoteResponse{Term: req.Term, Granted: true}, nil)
	case *raft.TimeoutNowRequest:
		rpc.Respond(&raft.TimeoutNowResponse{RPCHeader: req.RPCHeader}, nil)
	default:
		rpc.Respond(nil, errUnexpected)
	}
}

var errUnexpected = errorString("unexpected command")

type errorString string

func (e errorString) Error() string { return string(e) }
