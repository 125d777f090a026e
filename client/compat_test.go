package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// oldServer is a Coordinator from before GetLeader and WatchMembers existed:
// it serves Status and Members only (every Heartbeat node implements both
// now, so an older server is the one thing the real node cannot play).
type oldServer struct {
	heartbeatpb.UnimplementedCoordinatorServer
}

func (oldServer) GetStatus(context.Context, *heartbeatpb.GetStatusRequest) (*heartbeatpb.GetStatusResponse, error) {
	return &heartbeatpb.GetStatusResponse{
		NodeId: "n2", State: heartbeatpb.RaftState_RAFT_STATE_FOLLOWER, Term: 7, FencingToken: 6,
		Leader: &heartbeatpb.NodeRef{NodeId: "n1", PeerAddress: "127.0.0.1:7410"},
	}, nil
}

func (oldServer) ListMembers(context.Context, *heartbeatpb.ListMembersRequest) (*heartbeatpb.ListMembersResponse, error) {
	voter := heartbeatpb.Suffrage_SUFFRAGE_VOTER
	return &heartbeatpb.ListMembersResponse{Members: []*heartbeatpb.Member{
		{NodeId: "n1", PeerAddress: "127.0.0.1:7410", ClientAddress: "127.0.0.1:7411", Suffrage: voter, RaftLeader: true},
		{NodeId: "n2", PeerAddress: "127.0.0.1:7420", ClientAddress: "127.0.0.1:7421", Suffrage: voter},
	}}, nil
}

func startOldServer(t *testing.T) string {
	t.Helper()
	return serveFake(t, oldServer{})
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

// hungServer plays a sidecar that hangs: it answers the first `answer`
// keep-alives with "this node leads, token 5, 200ms left" (and owns r1 at
// epoch 9), then reads and drops every request while the stream stays open,
// as a paused process's kernel keeps its sockets. The real node cannot be
// frozen half-way like this inside a test process.
type hungServer struct {
	heartbeatpb.UnimplementedCoordinatorServer
	answer int
	// resume, when > 0: answer again from that request on (a sidecar that
	// hung for a while and came back).
	resume int
	mu     sync.Mutex
	last   time.Time // when the last answer was built
}

func (h *hungServer) lastAnswer() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last
}

func (h *hungServer) KeepAlive(stream grpc.BidiStreamingServer[heartbeatpb.KeepAliveRequest, heartbeatpb.KeepAliveResponse]) error {
	for n := 0; ; n++ {
		req, err := stream.Recv()
		if err != nil {
			return nil //nolint:nilerr // the client ended the stream
		}
		if n >= h.answer && (h.resume == 0 || n < h.resume) {
			continue
		}
		h.mu.Lock()
		h.last = time.Now()
		h.mu.Unlock()
		resp := &heartbeatpb.KeepAliveResponse{Seq: req.GetSeq(), Lease: &heartbeatpb.Lease{NodeId: "n1", IsLeader: true, FencingToken: 5,
			LeaderLeaseRemaining: durationpb.New(200 * time.Millisecond), OwnershipLeaseRemaining: durationpb.New(200 * time.Millisecond), Revision: 9}}
		if (n == 0 || n == h.resume) && req.GetOwned() {
			resp.OwnedChanged, resp.Lease.Owned = true, []*heartbeatpb.OwnedResource{{Id: "r1", Epoch: 9}}
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// TestHungSidecar: a sidecar that stops answering (its stream still open)
// gets no say: the client's own lease timer cancels fn, for leadership and
// for ownership, before the lease the sidecar last stated has run out
// (measured from when it stated it). With the timer disabled
// (UnsafeNoLeaseTimer, the planted violation) fn runs on past that lease,
// and the same check reports it.
func TestHungSidecar(t *testing.T) {
	if v := hungSidecarViolations(t, false); len(v) > 0 {
		t.Errorf("with the lease timer: %v", v)
	}
	if v := hungSidecarViolations(t, true); len(v) == 0 {
		t.Error("planted violation (no lease timer) not caught")
	} else {
		t.Logf("planted violation caught: %v", v)
	}
}

// hungSidecarViolations runs RunWhileLeader and RunWhileOwner against a
// hungServer and returns every fn that outlived the sidecar's last lease.
func hungSidecarViolations(t *testing.T, unsafe bool) []string {
	t.Helper()
	hung := &hungServer{answer: 3}
	cfg := DefaultConfig()
	cfg.Endpoints = []string{serveFake(t, hung)}
	cfg.UnsafeNoLeaseTimer = unsafe
	cl, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithCancel(testcluster.Context(t))
	defer cancel()

	var mu sync.Mutex
	started, cancelled := map[string]time.Time{}, map[string]time.Time{}
	record := func(name string, ctx context.Context) error {
		mu.Lock()
		started[name] = time.Now()
		mu.Unlock()
		<-ctx.Done()
		mu.Lock()
		cancelled[name] = time.Now()
		mu.Unlock()
		return ctx.Err()
	}
	leaderDone, ownerDone := make(chan error, 1), make(chan error, 1)
	go func() {
		leaderDone <- cl.RunWhileLeader(ctx, func(ctx context.Context, _ uint64) error { return record("leader", ctx) })
	}()
	go func() {
		ownerDone <- cl.RunWhileOwner(ctx, func(ctx context.Context, id string, _ uint64) error { return record("owner "+id, ctx) })
	}()
	const lease = 200 * time.Millisecond // what the sidecar last said was left
	names := []string{"leader", "owner r1"}
	testwait.Eventually(t, testcluster.DefaultWait, "both fns started", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return len(started) == 2, fmt.Sprint(started)
	})
	// Poll until both were cancelled, or for five leases at most (the
	// planted violation runs that long).
	for end := time.Now().Add(5 * lease); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		n := len(cancelled)
		mu.Unlock()
		if n == len(names) {
			break
		}
	}
	mu.Lock()
	var out []string
	last := hung.lastAnswer()
	for _, name := range names {
		c, ok := cancelled[name]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("%s: still running %v after the sidecar's last answer (lease %v)",
				name, time.Since(last).Round(time.Millisecond), lease))
		case c.Sub(last) > lease:
			out = append(out, fmt.Sprintf("%s: cancelled %v after the sidecar's last answer, past its %v lease",
				name, c.Sub(last), lease))
		}
	}
	mu.Unlock()
	cancel()
	for _, ch := range []chan error{leaderDone, ownerDone} {
		if err := <-ch; !errors.Is(err, context.Canceled) {
			t.Errorf("run = %v, want context.Canceled", err)
		}
	}
	return out
}

// TestOwnerWorkResumesAfterLapse: an fn that returns nil when its context is
// cancelled because the ownership lease ran out (not because it finished) is
// started again once the sidecar renews the lease.
func TestOwnerWorkResumesAfterLapse(t *testing.T) {
	// Answers 1-3, drops the next 6 (longer than the 200 ms lease at the
	// client's default pace), answers again from the 10th.
	addr := serveFake(t, &hungServer{answer: 3, resume: 9})
	cfg := DefaultConfig()
	cfg.Endpoints = []string{addr}
	cfg.KeepAliveInterval = 50 * time.Millisecond
	cl, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithCancel(testcluster.Context(t))
	defer cancel()
	var mu sync.Mutex
	starts := 0
	done := make(chan error, 1)
	go func() {
		done <- cl.RunWhileOwner(ctx, func(ctx context.Context, id string, epoch uint64) error {
			mu.Lock()
			starts++
			mu.Unlock()
			<-ctx.Done()
			return nil // a clean stop, as a worker would
		})
	}()
	testwait.Eventually(t, testcluster.DefaultWait, "the work started again after the lease came back", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return starts >= 2, fmt.Sprint(starts, " starts")
	})
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("RunWhileOwner = %v, want context.Canceled", err)
	}
}

// serveFake serves srv as a Coordinator on a loopback port until the test
// ends and returns its address.
func serveFake(t *testing.T, srv heartbeatpb.CoordinatorServer) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	heartbeatpb.RegisterCoordinatorServer(s, srv)
	served := make(chan struct{})
	go func() {
		defer close(served)
		s.Serve(ln)
	}()
	t.Cleanup(func() {
		s.Stop()
		<-served
	})
	return ln.Addr().String()
}
