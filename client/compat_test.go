package client

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// oldServer is a Coordinator from before GetLeader and WatchMembers existed:
// it serves Status and Members only (every Heartbeat node implements both
// now, so an older server is the one thing the real node cannot play).
type oldServer struct {
	heartbeatpb.UnimplementedCoordinatorServer
}

func (oldServer) Status(context.Context, *heartbeatpb.StatusRequest) (*heartbeatpb.StatusResponse, error) {
	return &heartbeatpb.StatusResponse{
		Id: "n2", State: "follower", Term: 7, FencingToken: 6,
		Leader: &heartbeatpb.Leader{Id: "n1", Address: "127.0.0.1:7410"},
	}, nil
}

func (oldServer) Members(context.Context, *heartbeatpb.MembersRequest) (*heartbeatpb.MembersResponse, error) {
	return &heartbeatpb.MembersResponse{Members: []*heartbeatpb.Member{
		{Id: "n1", Address: "127.0.0.1:7410", ClientAddress: "127.0.0.1:7411", Suffrage: "voter", IsLeader: true},
		{Id: "n2", Address: "127.0.0.1:7420", ClientAddress: "127.0.0.1:7421", Suffrage: "voter"},
	}}, nil
}

func startOldServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	heartbeatpb.RegisterCoordinatorServer(s, oldServer{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Serve(ln)
	}()
	t.Cleanup(func() {
		s.Stop()
		<-done
	})
	return ln.Addr().String()
}

// TestOlderServer: Leader falls back to Status (and finds the leader's
// client address in the member list) when GetLeader is Unimplemented; a
// watch the server does not implement ends with one event carrying the
// error instead of retrying forever.
func TestOlderServer(t *testing.T) {
	cl := newClientAt(t, startOldServer(t))
	ctx := testcluster.Context(t)
	l, err := cl.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l.ID != "n1" || l.PeerAddress != "127.0.0.1:7410" || l.ClientAddress != "127.0.0.1:7411" || l.FencingToken != 6 || l.Term != 7 || l.IsSelf || !l.Local {
		t.Errorf("Leader() from Status = %+v", l)
	}
	var last MembersEvent
	n := 0
	for ev := range cl.WatchMembers(ctx) {
		last, n = ev, n+1
	}
	if n != 1 || status.Code(last.Err) != codes.Unimplemented {
		t.Errorf("WatchMembers on an older server: %d events, last %+v; want one with Unimplemented", n, last)
	}
	n = 0
	var lastA AssignmentEvent
	for ev := range cl.WatchAssignments(ctx, "", 0) {
		lastA, n = ev, n+1
	}
	if n != 1 || status.Code(lastA.Err) != codes.Unimplemented {
		t.Errorf("WatchAssignments on a server without it: %d events, last %+v", n, lastA)
	}
	if _, err := cl.StepDown(ctx); status.Code(err) != codes.Unimplemented {
		t.Errorf("StepDown = %v, want Unimplemented passed through", err)
	}
}

// TestCloseEndsEverything: Close closes every watch channel and cancels a
// running RunWhileLeader fn, which then returns ErrClosed.
func TestCloseEndsEverything(t *testing.T) {
	c := startCluster(t, 1)
	n := c.Leader()
	cl := newClient(t, n)
	ctx := testcluster.Context(t)
	leaders := cl.WatchLeader(ctx)
	members := cl.WatchMembers(ctx)
	assigns := cl.WatchAssignments(ctx, "", 0)
	<-leaders
	<-members
	r := startRunner(ctx, n.ID(), cl)
	r.waitRuns(t, 1)
	if err := cl.Close(); err != nil {
		t.Fatal(err)
	}
	for name, ch := range map[string]func() bool{
		"WatchLeader":      func() bool { _, ok := <-leaders; return ok },
		"WatchMembers":     func() bool { _, ok := <-members; return ok },
		"WatchAssignments": func() bool { _, ok := <-assigns; return ok },
	} {
		// Close has returned, so the goroutines are gone; at most buffered
		// events remain before the close.
		open := true
		for i := 0; i < watchBuffer+1 && open; i++ {
			open = ch()
		}
		if open {
			t.Errorf("%s channel still open after Close", name)
		}
	}
	select {
	case err := <-r.done:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("RunWhileLeader after Close = %v, want ErrClosed", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("RunWhileLeader did not return after Close")
	}
	if run := r.snapshot()[0]; run.cancelled.IsZero() {
		t.Error("fn's context was not cancelled by Close")
	}
}

// hungServer streams "this node leads, token 5" again and again, but its
// Status never answers: a sidecar whose leadership stream looks alive while
// the node cannot confirm its lease.
type hungServer struct {
	heartbeatpb.UnimplementedCoordinatorServer
}

func (hungServer) Status(ctx context.Context, _ *heartbeatpb.StatusRequest) (*heartbeatpb.StatusResponse, error) {
	<-ctx.Done()
	return nil, status.FromContextError(ctx.Err()).Err()
}

func (hungServer) WatchLeader(_ *heartbeatpb.WatchLeaderRequest, stream grpc.ServerStreamingServer[heartbeatpb.LeaderEvent]) error {
	ev := &heartbeatpb.LeaderEvent{Leader: &heartbeatpb.Leader{Id: "n1"}, Term: 5, FencingToken: 5, IsSelf: true}
	for {
		if err := stream.Send(ev); err != nil {
			return err
		}
		select {
		case <-stream.Context().Done():
			return nil
		case <-time.After(time.Millisecond):
		}
	}
}

// TestLeaseCheck: when the local sidecar stops confirming its lease, the
// lease check cancels fn although the stream still says "leader"; the watch
// is reopened (with events still arriving while it closes) and fn runs again
// once the fresh stream says so, each run cancelled by the next failed
// check. A hang anywhere in that cycle fails the test.
func TestLeaseCheck(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	heartbeatpb.RegisterCoordinatorServer(s, hungServer{})
	served := make(chan struct{})
	go func() {
		defer close(served)
		s.Serve(ln)
	}()
	defer func() {
		s.Stop()
		<-served
	}()
	cfg := DefaultConfig()
	cfg.Endpoints = []string{ln.Addr().String()}
	cfg.LeaseCheckInterval = 100 * time.Millisecond
	cfg.RetryBackoff = Backoff{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond}
	cl, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithCancel(testcluster.Context(t))
	// fn's slow clean-up lets events pile up behind the closing stream.
	r := startLingeringRunner(ctx, "hung", cl, 30*time.Millisecond)
	runs := r.waitRuns(t, 4)
	cancel()
	if err := <-r.done; !errors.Is(err, context.Canceled) {
		t.Errorf("RunWhileLeader = %v, want context.Canceled", err)
	}
	for i, x := range runs[:3] {
		if x.token != 5 || x.cancelled.IsZero() {
			t.Errorf("run %d: %+v", i, x)
		}
		if d := x.cancelled.Sub(x.started); d < 150*time.Millisecond || d > 5*time.Second {
			t.Errorf("run %d cancelled after %v; the check (every 100ms, 100ms to answer) should take about 200ms", i, d)
		}
	}
}
