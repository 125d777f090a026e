package transport

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
	"github.com/heartbeat-sidecar/heartbeat/proto/raftpb"
)

func header(tr *Transport) raft.RPCHeader {
	return raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(tr.cfg.ID), Addr: []byte(tr.LocalAddr())}
}

func TestEveryRPCEndToEnd(t *testing.T) {
	a, b := newTestTransport(t, "a"), newTestTransport(t, "b")
	serve(t, b, echoHandler)

	t.Run("AppendEntries", func(t *testing.T) {
		req := &raft.AppendEntriesRequest{RPCHeader: header(a), Term: 7, PrevLogEntry: 1, PrevLogTerm: 6, LeaderCommitIndex: 1,
			Entries: []*raft.Log{{Index: 2, Term: 7, Data: []byte("x")}, {Index: 3, Term: 7, Data: []byte("y")}}}
		var resp raft.AppendEntriesResponse
		if err := a.AppendEntries("b", b.LocalAddr(), req, &resp); err != nil {
			t.Fatal(err)
		}
		if resp.Term != 7 || resp.LastLog != 3 || !resp.Success {
			t.Fatalf("resp = %+v", resp)
		}
	})
	t.Run("Heartbeat", func(t *testing.T) {
		req := &raft.AppendEntriesRequest{RPCHeader: header(a), Term: 9, Leader: []byte(a.LocalAddr())}
		var resp raft.AppendEntriesResponse
		if err := a.AppendEntries("b", b.LocalAddr(), req, &resp); err != nil {
			t.Fatal(err)
		}
		if resp.Term != 9 || !resp.Success {
			t.Fatalf("resp = %+v", resp)
		}
	})
	t.Run("RequestVote", func(t *testing.T) {
		req := &raft.RequestVoteRequest{RPCHeader: header(a), Term: 4, Candidate: []byte("cand"), LeadershipTransfer: true}
		var resp raft.RequestVoteResponse
		if err := a.RequestVote("b", b.LocalAddr(), req, &resp); err != nil {
			t.Fatal(err)
		}
		if resp.Term != 4 || !resp.Granted || string(resp.Peers) != "cand" {
			t.Fatalf("resp = %+v", resp)
		}
	})
	t.Run("RequestPreVote", func(t *testing.T) {
		req := &raft.RequestPreVoteRequest{RPCHeader: header(a), Term: 5, LastLogIndex: 10, LastLogTerm: 4}
		var resp raft.RequestPreVoteResponse
		if err := a.RequestPreVote("b", b.LocalAddr(), req, &resp); err != nil {
			t.Fatal(err)
		}
		if resp.Term != 5 || !resp.Granted {
			t.Fatalf("resp = %+v", resp)
		}
	})
	t.Run("TimeoutNow", func(t *testing.T) {
		req := &raft.TimeoutNowRequest{RPCHeader: header(a)}
		var resp raft.TimeoutNowResponse
		if err := a.TimeoutNow("b", b.LocalAddr(), req, &resp); err != nil {
			t.Fatal(err)
		}
		if string(resp.ID) != "a" || string(resp.Addr) != string(a.LocalAddr()) {
			t.Fatalf("resp = %+v", resp)
		}
	})
	t.Run("EncodeDecodePeer", func(t *testing.T) {
		if got := a.DecodePeer(a.EncodePeer("b", b.LocalAddr())); got != b.LocalAddr() {
			t.Fatalf("DecodePeer(EncodePeer) = %q", got)
		}
	})
}

func TestRemoteErrorIsReturned(t *testing.T) {
	a, b := newTestTransport(t, "a"), newTestTransport(t, "b")
	serve(t, b, func(rpc raft.RPC) { rpc.Respond(nil, errors.New("boom")) })
	var vresp raft.RequestVoteResponse
	err := a.RequestVote("b", b.LocalAddr(), &raft.RequestVoteRequest{Term: 1}, &vresp)
	if !errors.Is(err, ErrRemote) || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("RequestVote error = %v, want ErrRemote with boom", err)
	}
	var aresp raft.AppendEntriesResponse
	err = a.AppendEntries("b", b.LocalAddr(), &raft.AppendEntriesRequest{Term: 1, PrevLogEntry: 1}, &aresp)
	if !errors.Is(err, ErrRemote) || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("AppendEntries error = %v, want ErrRemote with boom", err)
	}
}

func TestAppendEntriesAbove4MiB(t *testing.T) {
	a, b := newTestTransport(t, "a"), newTestTransport(t, "b")
	data := make([]byte, 6<<20)
	_, _ = rand.Read(data)
	want := sha256.Sum256(data)
	var got atomic.Value
	serve(t, b, func(rpc raft.RPC) {
		req := rpc.Command.(*raft.AppendEntriesRequest)
		got.Store(sha256.Sum256(req.Entries[0].Data))
		rpc.Respond(&raft.AppendEntriesResponse{Term: req.Term, Success: true}, nil)
	})
	req := &raft.AppendEntriesRequest{RPCHeader: header(a), Term: 2, PrevLogEntry: 1, Entries: []*raft.Log{{Index: 2, Term: 2, Data: data}}}
	var resp raft.AppendEntriesResponse
	if err := a.AppendEntries("b", b.LocalAddr(), req, &resp); err != nil {
		t.Fatal(err)
	}
	if got.Load() != want {
		t.Fatal("the 6 MiB entry arrived changed")
	}
}

func TestPipelineThousandAppendsInOrder(t *testing.T) {
	a, b := newTestTransport(t, "a"), newTestTransport(t, "b")
	var lastSeen atomic.Uint64
	var outOfOrder atomic.Bool
	serve(t, b, func(rpc raft.RPC) {
		req := rpc.Command.(*raft.AppendEntriesRequest)
		idx := req.Entries[0].Index
		if idx != lastSeen.Load()+1 {
			outOfOrder.Store(true)
		}
		lastSeen.Store(idx)
		rpc.Respond(&raft.AppendEntriesResponse{Term: req.Term, LastLog: idx, Success: true}, nil)
	})
	p, err := a.AppendEntriesPipeline("b", b.LocalAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	const n = 1000
	done := make(chan error, 1)
	go func() {
		for i := uint64(1); i <= n; i++ {
			select {
			case f := <-p.Consumer():
				if err := f.Error(); err != nil {
					done <- err
					return
				}
				if f.Request().Entries[0].Index != i || f.Response().LastLog != i {
					done <- errors.New("future out of order")
					return
				}
				if f.Start().IsZero() {
					done <- errors.New("future without start time")
					return
				}
			case <-time.After(20 * time.Second):
				done <- errors.New("timed out waiting for futures")
				return
			}
		}
		done <- nil
	}()
	for i := uint64(1); i <= n; i++ {
		req := &raft.AppendEntriesRequest{RPCHeader: header(a), Term: 3, PrevLogEntry: i - 1, PrevLogTerm: 3,
			Entries: []*raft.Log{{Index: i, Term: 3, Data: []byte("entry")}}}
		if _, err := p.AppendEntries(req, &raft.AppendEntriesResponse{}); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if outOfOrder.Load() || lastSeen.Load() != n {
		t.Fatalf("server saw appends out of order (last %d)", lastSeen.Load())
	}
	if ack, ok := a.Acks()[b.LocalAddr()]; !ok || ack.Term != 3 {
		t.Fatalf("pipelined appends recorded no ack: %+v", ack)
	}
}

func TestPipelineCloseFailsInflight(t *testing.T) {
	a, b := newTestTransport(t, "a"), newTestTransport(t, "b")
	release := make(chan struct{})
	serve(t, b, func(rpc raft.RPC) {
		<-release
		rpc.Respond(&raft.AppendEntriesResponse{}, nil)
	})
	defer close(release)
	p, err := a.AppendEntriesPipeline("b", b.LocalAddr())
	if err != nil {
		t.Fatal(err)
	}
	f, err := p.AppendEntries(&raft.AppendEntriesRequest{Term: 1, PrevLogEntry: 1}, &raft.AppendEntriesResponse{})
	if err != nil {
		t.Fatal(err)
	}
	_ = p.Close()
	if err := f.Error(); !errors.Is(err, ErrPipelineClosed) {
		t.Fatalf("in-flight future error = %v, want ErrPipelineClosed", err)
	}
	if _, err := p.AppendEntries(&raft.AppendEntriesRequest{Term: 1}, &raft.AppendEntriesResponse{}); !errors.Is(err, ErrPipelineClosed) {
		t.Fatalf("append after Close = %v, want ErrPipelineClosed", err)
	}
}

func TestHeartbeatFastPath(t *testing.T) {
	a, b := newTestTransport(t, "a"), newTestTransport(t, "b")
	serve(t, b, func(rpc raft.RPC) {
		rpc.Respond(nil, errors.New("heartbeat went through Consumer"))
	})
	var calls atomic.Int32
	b.SetHeartbeatHandler(func(rpc raft.RPC) {
		calls.Add(1)
		req := rpc.Command.(*raft.AppendEntriesRequest)
		rpc.Respond(&raft.AppendEntriesResponse{Term: req.Term, Success: true}, nil)
	})
	req := &raft.AppendEntriesRequest{RPCHeader: header(a), Term: 3, Leader: []byte(a.LocalAddr())}
	for i := 0; i < 5; i++ {
		var resp raft.AppendEntriesResponse
		if err := a.AppendEntries("b", b.LocalAddr(), req, &resp); err != nil {
			t.Fatal(err)
		}
		if !resp.Success {
			t.Fatalf("resp = %+v", resp)
		}
	}
	if calls.Load() != 5 {
		t.Fatalf("heartbeat handler called %d times, want 5", calls.Load())
	}
	ack := a.Acks()[b.LocalAddr()]
	if ack.Term != 3 || ack.SentAt.IsZero() || ack.RepliedAt.Before(ack.SentAt) || ack.RTT != ack.RepliedAt.Sub(ack.SentAt) {
		t.Fatalf("ack = %+v", ack)
	}
}

// TestHeartbeatNotBehindBulk sends heartbeats while a 30 MiB (12 MiB under the race
// detector) AppendEntries to the same
// peer is in flight and then held by a slow consumer: they must still answer quickly,
// and before the big append completes.
func TestHeartbeatNotBehindBulk(t *testing.T) {
	a := newTestTransport(t, "a", func(c *Config) {
		c.HeartbeatTimeout = 10 * time.Second // the bound is checked below
	})
	b := newTestTransport(t, "b")
	// Behind the held batch nothing else runs: heartbeats take milliseconds. While the
	// 30 MiB are copied and sent, a GC cycle can stall every goroutine of the process
	// for a while on this shared machine (a thread inside a long copy is descheduled and
	// the GC waits for it), so that heartbeat must only succeed within its deadline.
	bound := time.Second
	if raceEnabled {
		bound = 2 * time.Second
	}
	gotBig := make(chan struct{})
	release := make(chan struct{})
	serve(t, b, func(rpc raft.RPC) {
		req := rpc.Command.(*raft.AppendEntriesRequest)
		if len(req.Entries) > 0 && len(req.Entries[0].Data) > 1<<20 {
			close(gotBig)
			<-release
		}
		rpc.Respond(&raft.AppendEntriesResponse{Term: req.Term, Success: true}, nil)
	})
	b.SetHeartbeatHandler(func(rpc raft.RPC) {
		rpc.Respond(&raft.AppendEntriesResponse{Term: rpc.Command.(*raft.AppendEntriesRequest).Term, Success: true}, nil)
	})
	hb := &raft.AppendEntriesRequest{RPCHeader: header(a), Term: 2, Leader: []byte(a.LocalAddr())}
	beat := func(what string, bound time.Duration) {
		t.Helper()
		start := time.Now()
		if err := a.AppendEntries("b", b.LocalAddr(), hb, &raft.AppendEntriesResponse{}); err != nil {
			t.Fatalf("heartbeat %s: %v", what, err)
		}
		d := time.Since(start)
		t.Logf("heartbeat %s: %v", what, d)
		if d > bound {
			t.Fatalf("heartbeat %s took %v (bound %v)", what, d, bound)
		}
	}
	// Steady state: both connections are up before the big batch.
	small := &raft.AppendEntriesRequest{RPCHeader: header(a), Term: 2, PrevLogEntry: 1, Entries: []*raft.Log{{Index: 2, Term: 2}}}
	if err := a.AppendEntries("b", b.LocalAddr(), small, &raft.AppendEntriesResponse{}); err != nil {
		t.Fatal(err)
	}
	beat("warm-up", bound)

	size := 30 << 20
	if raceEnabled {
		size = 12 << 20 // the race detector makes every copy of it very slow
	}
	big := make([]byte, size)
	bigDone := make(chan error, 1)
	go func() {
		req := &raft.AppendEntriesRequest{RPCHeader: header(a), Term: 2, PrevLogEntry: 1, Entries: []*raft.Log{{Index: 2, Term: 2, Data: big}}}
		bigDone <- a.AppendEntries("b", b.LocalAddr(), req, &raft.AppendEntriesResponse{})
	}()
	beat("while the batch is sent", 10*time.Second)
	select {
	case <-gotBig:
	case <-time.After(20 * time.Second):
		t.Fatal("big AppendEntries never arrived")
	}
	for i := 0; i < 10; i++ {
		beat(fmt.Sprintf("%d behind the held batch", i), bound)
	}
	select {
	case err := <-bigDone:
		t.Fatalf("big append finished before release: %v", err)
	default:
	}
	close(release)
	if err := <-bigDone; err != nil {
		t.Fatalf("big append: %v", err)
	}
}

func TestWrongClusterRejected(t *testing.T) {
	a := newTestTransport(t, "a", func(c *Config) { c.ClusterID = "other-cluster" })
	b := newTestTransport(t, "b")
	serve(t, b, echoHandler)
	var resp raft.RequestVoteResponse
	err := a.RequestVote("b", b.LocalAddr(), &raft.RequestVoteRequest{Term: 1}, &resp)
	var st interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &st) || st.GRPCStatus().Code() != codes.FailedPrecondition {
		t.Fatalf("error = %v, want a FailedPrecondition status", err)
	}
	if !errors.Is(err, ErrWrongCluster) {
		t.Fatalf("error = %v, want ErrWrongCluster", err)
	}
	if !strings.Contains(err.Error(), "other-cluster") || !strings.Contains(err.Error(), "test-cluster") {
		t.Fatalf("error %q does not name both cluster ids", err)
	}
	// Streams are checked too: the pipeline's first append fails.
	p, err := a.AppendEntriesPipeline("b", b.LocalAddr())
	if err == nil {
		var f raft.AppendFuture
		f, err = p.AppendEntries(&raft.AppendEntriesRequest{Term: 1, PrevLogEntry: 1}, &raft.AppendEntriesResponse{})
		if err == nil {
			err = f.Error()
		}
		_ = p.Close()
	}
	if !errors.Is(err, ErrWrongCluster) {
		t.Fatalf("pipeline error = %v, want ErrWrongCluster", err)
	}
	// So is a held stream, before it opens: not ErrPeerClosed.
	err = a.Hold(t.Context(), b.LocalAddr())
	if !errors.Is(err, ErrWrongCluster) || errors.Is(err, ErrPeerClosed) {
		t.Fatalf("hold error = %v, want ErrWrongCluster", err)
	}
}

func TestReconnectAfterPeerRestart(t *testing.T) {
	a, b := newTestTransport(t, "a"), newTestTransport(t, "b")
	serve(t, b, echoHandler)
	addr := b.LocalAddr()
	vote := func() error {
		var resp raft.RequestVoteResponse
		return a.RequestVote("b", addr, &raft.RequestVoteRequest{Term: 1}, &resp)
	}
	if err := vote(); err != nil {
		t.Fatal(err)
	}
	_ = b.Close()
	// Fail for a while, so gRPC's reconnect backoff grows to its cap.
	downUntil := time.Now().Add(3 * time.Second)
	for time.Now().Before(downUntil) {
		if err := vote(); err == nil {
			t.Fatal("vote to a closed peer succeeded")
		}
		time.Sleep(50 * time.Millisecond)
	}
	b2 := newTestTransport(t, "b", func(c *Config) { c.BindAddr = string(addr) })
	serve(t, b2, echoHandler)
	start := time.Now()
	// MaxReconnectBackoff is 1s: traffic must resume within about that, not gRPC's
	// default of up to 120 s.
	testwait.Eventually(t, 4*time.Second, "calls to the restarted peer", func() (bool, string) { return vote() == nil, "" })
	t.Logf("traffic resumed %v after restart", time.Since(start))
}

func TestCallsAfterCloseReturnShutdown(t *testing.T) {
	a, b := newTestTransport(t, "a"), newTestTransport(t, "b")
	serve(t, b, echoHandler)
	_ = a.Close()
	_ = a.Close() // idempotent
	checks := map[string]error{
		"AppendEntries":  a.AppendEntries("b", b.LocalAddr(), &raft.AppendEntriesRequest{Term: 1}, &raft.AppendEntriesResponse{}),
		"RequestVote":    a.RequestVote("b", b.LocalAddr(), &raft.RequestVoteRequest{}, &raft.RequestVoteResponse{}),
		"RequestPreVote": a.RequestPreVote("b", b.LocalAddr(), &raft.RequestPreVoteRequest{}, &raft.RequestPreVoteResponse{}),
		"TimeoutNow":     a.TimeoutNow("b", b.LocalAddr(), &raft.TimeoutNowRequest{}, &raft.TimeoutNowResponse{}),
		"InstallSnapshot": a.InstallSnapshot("b", b.LocalAddr(), &raft.InstallSnapshotRequest{Size: 1},
			&raft.InstallSnapshotResponse{}, strings.NewReader("x")),
		"Hold":           a.Hold(t.Context(), b.LocalAddr()),
		"Reachable":      a.Reachable(t.Context(), b.LocalAddr()),
		"TimeoutNowSelf": a.TimeoutNowSelf(t.Context()),
	}
	_, err := a.AppendEntriesPipeline("b", b.LocalAddr())
	checks["AppendEntriesPipeline"] = err
	_, err = a.ConfirmLost(t.Context(), b.LocalAddr(), b.LocalAddr())
	checks["ConfirmLost"] = err
	for name, err := range checks {
		if !errors.Is(err, ErrTransportShutdown) {
			t.Errorf("%s after Close = %v, want ErrTransportShutdown", name, err)
		}
	}
}

func TestAcksOnlyForMatchingTerm(t *testing.T) {
	a, b := newTestTransport(t, "a"), newTestTransport(t, "b")
	serve(t, b, func(rpc raft.RPC) {
		req := rpc.Command.(*raft.AppendEntriesRequest)
		rpc.Respond(&raft.AppendEntriesResponse{Term: req.Term + 1}, nil) // a newer term
	})
	req := &raft.AppendEntriesRequest{RPCHeader: header(a), Term: 2, PrevLogEntry: 1}
	if err := a.AppendEntries("b", b.LocalAddr(), req, &raft.AppendEntriesResponse{}); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.Acks()[b.LocalAddr()]; ok {
		t.Fatal("ack recorded for a response of another term")
	}
}

func TestMetricsRegistered(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := newTestTransport(t, "a", func(c *Config) { c.Registerer = reg })
	b := newTestTransport(t, "b")
	b.SetHeartbeatHandler(func(rpc raft.RPC) { rpc.Respond(&raft.AppendEntriesResponse{Term: 1}, nil) })
	hb := &raft.AppendEntriesRequest{RPCHeader: header(a), Term: 1, Leader: []byte("a")}
	if err := a.AppendEntries("b", b.LocalAddr(), hb, &raft.AppendEntriesResponse{}); err != nil {
		t.Fatal(err)
	}
	_ = a.RequestVote("x", "127.0.0.1:1", &raft.RequestVoteRequest{}, &raft.RequestVoteResponse{})
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var rttCount uint64
	var errCount float64
	for _, f := range families {
		for _, m := range f.GetMetric() {
			switch f.GetName() {
			case "heartbeat_transport_heartbeat_rtt_seconds":
				rttCount += m.GetHistogram().GetSampleCount()
			case "heartbeat_transport_rpc_errors_total":
				errCount += m.GetCounter().GetValue()
			}
		}
	}
	if rttCount != 1 {
		t.Fatalf("heartbeat RTT samples = %d, want 1", rttCount)
	}
	if errCount != 1 {
		t.Fatalf("rpc errors = %v, want 1", errCount)
	}
	// A second transport on the same registry is refused rather than silently sharing.
	cfg := a.Config()
	cfg.BindAddr = "127.0.0.1:0"
	if tr, err := New(cfg); err == nil {
		_ = tr.Close()
		t.Fatal("New registered the same metrics twice")
	}
}

func TestRegisterExtraServiceSharesClusterCheck(t *testing.T) {
	b := newTestTransport(t, "b", func(c *Config) {
		c.Register = func(s *grpc.Server) { healthpb.RegisterHealthServer(s, health.NewServer()) }
	})
	conn, err := grpc.NewClient(string(b.LocalAddr()), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	hc := healthpb.NewHealthClient(conn)
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("extra service without cluster metadata: %v", err)
	}
	if _, err := hc.Check(metadata.AppendToOutgoingContext(ctx, MetadataCluster, "test-cluster"), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("extra service with the right cluster: %v", err)
	}
	_, err = hc.Check(metadata.AppendToOutgoingContext(ctx, MetadataCluster, "other"), &healthpb.HealthCheckRequest{})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("extra service with another cluster = %v, want FailedPrecondition", err)
	}
	rc := raftpb.NewRaftTransportClient(conn)
	if _, err := rc.RequestVote(ctx, &raftpb.RequestVoteRequest{}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("raft call without cluster metadata = %v, want FailedPrecondition", err)
	}
}
