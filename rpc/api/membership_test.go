package api_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/internal/retry"
	"github.com/heartbeat-sidecar/heartbeat/membership"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
	"github.com/heartbeat-sidecar/heartbeat/rpc/api"
)

// soloElection is a leader of a cluster of one, without raft: enough for
// the Coordinator's membership calls.
type soloElection struct{}

func (soloElection) Leadership() election.Leadership {
	return election.Leadership{State: "leader", LeaderID: "solo", LeaderAddr: "127.0.0.1:1", IsLeader: true}
}
func (soloElection) Watch() *election.Watcher                         { return nil }
func (soloElection) Members() ([]election.Member, error)              { return nil, nil }
func (soloElection) Join(context.Context, string, string, bool) error { return nil }
func (soloElection) Remove(context.Context, string) error             { return nil }
func (soloElection) CheckRemove(context.Context, string) error        { return nil }
func (soloElection) Raft() *raft.Raft                                 { return nil }

// ReadIndex: every write went through directApplier, applied at once.
func (soloElection) ReadIndex(context.Context) (uint64, error) { return 0, nil }

// directApplier applies commands straight to an FSM at increasing indexes.
type directApplier struct {
	mu    sync.Mutex
	fsm   *membership.FSM
	index uint64
}

func (a *directApplier) Apply(_ context.Context, data []byte) (any, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.index++
	return a.fsm.ApplyCommand(a.index, data), nil
}

func serveSolo(t *testing.T) (*membership.FSM, heartbeatpb.CoordinatorClient) {
	t.Helper()
	fsm, _, client, _ := serveSoloWith(t, nil)
	return fsm, client
}

// serveSoloWith is serveSolo with a config edit; it returns the server and
// its address too.
func serveSoloWith(t *testing.T, edit func(*api.CoordinatorConfig)) (*membership.FSM, *api.Coordinator, heartbeatpb.CoordinatorClient, string) {
	t.Helper()
	fsm, err := membership.NewFSM(membership.Config{FeedCapacity: membership.MaxBatch})
	if err != nil {
		t.Fatal(err)
	}
	cfg := api.DefaultCoordinatorConfig()
	cfg.ID, cfg.ClusterID, cfg.Election = "solo", testCluster, soloElection{}
	cfg.Membership, cfg.Applier = fsm, &directApplier{fsm: fsm, index: 10} // 0 would mean "from now"
	if edit != nil {
		edit(&cfg)
	}
	c, err := api.NewCoordinator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	c.Register(s)
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ln) }()
	t.Cleanup(func() { c.Close(); s.Stop(); <-done })
	return fsm, c, heartbeatpb.NewCoordinatorClient(dial(t, ln.Addr().String())), ln.Addr().String()
}

func register(t *testing.T, c heartbeatpb.CoordinatorClient, prefix string, n int) *heartbeatpb.RegisterResourcesResponse {
	t.Helper()
	req := &heartbeatpb.RegisterResourcesRequest{}
	for i := 0; i < n; i++ {
		req.Resources = append(req.Resources, &heartbeatpb.ResourceSpec{Id: fmt.Sprintf("%s-%05d", prefix, i)})
	}
	resp, err := c.RegisterResources(ctxT(t), req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestWatchAssignments: a watch resumes from a revision with every event
// after it; a revision the feed no longer holds gives OutOfRange; Close ends
// open watches with Unavailable.
func TestWatchAssignments(t *testing.T) {
	fsm, c := serveSolo(t)
	first := register(t, c, "a", 3)
	second := register(t, c, "b", 2)

	stream, err := c.WatchAssignments(ctxT(t), &heartbeatpb.WatchAssignmentsRequest{FromRevision: first.GetRevision() - 1})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(got) < 6 {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%d %s %s", ev.GetRevision(), heartbeatpb.Short(ev.GetKind()), ev.GetResourceId()))
	}
	want := []string{
		fmt.Sprintf("%d start ", first.GetRevision()-1),
		fmt.Sprintf("%d registered a-00000", first.GetRevision()), fmt.Sprintf("%d registered a-00001", first.GetRevision()),
		fmt.Sprintf("%d registered a-00002", first.GetRevision()),
		fmt.Sprintf("%d registered b-00000", second.GetRevision()), fmt.Sprintf("%d registered b-00001", second.GetRevision()),
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("watch events:\n got %v\nwant %v", got, want)
	}
	// Resume after the first command: only the second's events.
	rs, err := c.WatchAssignments(ctxT(t), &heartbeatpb.WatchAssignmentsRequest{FromRevision: first.GetRevision()})
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range append([]string{fmt.Sprintf("%d start ", first.GetRevision())}, want[4:]...) {
		ev, err := rs.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if g := fmt.Sprintf("%d %s %s", ev.GetRevision(), heartbeatpb.Short(ev.GetKind()), ev.GetResourceId()); g != w {
			t.Errorf("resumed event %d: %q, want %q", i, g, w)
		}
	}

	// A full batch pushes the early events out of the feed (capacity
	// MaxBatch): resuming from before it is OutOfRange, before any event.
	register(t, c, "c", membership.MaxBatch)
	old, err := c.WatchAssignments(ctxT(t), &heartbeatpb.WatchAssignmentsRequest{FromRevision: first.GetRevision()})
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := old.Recv(); status.Code(err) != codes.OutOfRange {
		t.Errorf("watch from a compacted revision: %v %v, want OutOfRange", ev, err)
	}

	// From the current revision (0): nothing until the next change.
	cur, err := c.WatchAssignments(ctxT(t), &heartbeatpb.WatchAssignmentsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := cur.Recv(); err != nil || heartbeatpb.Short(ev.GetKind()) != "start" || ev.GetRevision() != fsm.Revision() {
		t.Fatalf("start at the current revision: %v %v (revision %d)", ev, err, fsm.Revision())
	}
	del, err := c.DeleteResources(ctxT(t), &heartbeatpb.DeleteResourcesRequest{Ids: []string{"a-00001"}})
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := cur.Recv(); err != nil || heartbeatpb.Short(ev.GetKind()) != "deleted" || ev.GetResourceId() != "a-00001" || ev.GetRevision() != del.GetRevision() {
		t.Errorf("delete event: %v %v", ev, err)
	}
}

// TestMembershipDisabled: without a membership state the calls answer
// Unimplemented.
func TestMembershipDisabled(t *testing.T) {
	ms := newCluster(t, 1)
	_, c := serveCoordinator(t, ms[0])
	if _, err := c.ListResources(ctxT(t), &heartbeatpb.ListResourcesRequest{}); status.Code(err) != codes.Unimplemented {
		t.Errorf("ListResources without membership: %v", err)
	}
	if _, err := c.RegisterResources(ctxT(t), &heartbeatpb.RegisterResourcesRequest{Resources: []*heartbeatpb.ResourceSpec{{Id: "x"}}}); status.Code(err) != codes.Unimplemented {
		t.Errorf("RegisterResources without membership: %v", err)
	}
}

// TestAssignmentsBeforeRegistration: the serving node's own assignments
// before it has registered (a node that is starting or catching up) answer
// Unavailable, which clients retry; another unknown id is NotFound.
func TestAssignmentsBeforeRegistration(t *testing.T) {
	_, c := serveSolo(t)
	for _, tc := range []struct {
		id   string
		want codes.Code
	}{
		{"", codes.Unavailable},
		{"solo", codes.Unavailable},
		{"nobody", codes.NotFound},
	} {
		_, err := c.ListAssignments(ctxT(t), &heartbeatpb.ListAssignmentsRequest{NodeId: tc.id})
		if status.Code(err) != tc.want {
			t.Errorf("Assignments(%q) before registration: %v, want %v", tc.id, err, tc.want)
		}
	}
}

// TestWatchAssignmentsStuckReader: a watcher that never reads does not hold
// up writes (they commit at the pace of an unwatched node), nor a second
// watcher that reads; once the feed has moved past it, the stuck watcher
// is told OutOfRange instead of being fed a gap.
func TestWatchAssignmentsStuckReader(t *testing.T) {
	_, _, c, addr := serveSoloWith(t, nil)
	from := register(t, c, "s", 1).GetRevision()
	// The streams live for the whole test: 40,000 events under -race on a
	// loaded machine take longer than one call's waitTimeout.
	ctx, cancel := context.WithTimeout(api.OutgoingContext(context.Background(), "tester", testCluster), 4*waitTimeout)
	defer cancel()
	// The stuck watcher has its own connection with fixed 64 KiB flow-control
	// windows (setting them turns off gRPC's window growth, which on
	// loopback can grow past everything this test writes): what it does not
	// read stays on the server, as it would across a real network.
	small, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	stuck, err := heartbeatpb.NewCoordinatorClient(small).WatchAssignments(ctx, &heartbeatpb.WatchAssignmentsRequest{FromRevision: from})
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := stuck.Recv(); err != nil || heartbeatpb.Short(ev.GetKind()) != "start" {
		t.Fatalf("start: %v %v", ev, err)
	}
	reader, err := c.WatchAssignments(ctx, &heartbeatpb.WatchAssignmentsRequest{FromRevision: from})
	if err != nil {
		t.Fatal(err)
	}
	// Four full batches: 40,000 events, far more than the HTTP/2 flow
	// control window and the feed (capacity one batch) hold. Each batch is
	// written once the reading watcher has read the one before: a reader
	// that keeps up is never cut off (one that falls a whole batch behind
	// is, like the stuck one, and a loaded machine's reader could), while
	// the stuck watcher falls three batches behind.
	const batches = 4
	start := time.Now()
	var last uint64
	progress := make(chan int, batches)
	readErr := make(chan error, 1)
	go func() {
		n := 0
		for {
			ev, err := reader.Recv()
			if err != nil {
				readErr <- err
				return
			}
			if heartbeatpb.Short(ev.GetKind()) == "registered" {
				n++
				if n%membership.MaxBatch == 0 {
					progress <- n
				}
			}
			if n == batches*membership.MaxBatch {
				readErr <- nil
				return
			}
		}
	}()
	for i := 0; i < batches; i++ {
		last = register(t, c, fmt.Sprintf("b%d", i), membership.MaxBatch).GetRevision()
		select {
		case n := <-progress:
			if n != (i+1)*membership.MaxBatch {
				t.Fatalf("the reading watcher read %d events after batch %d", n, i)
			}
		case err := <-readErr:
			t.Fatalf("the reading watcher ended after batch %d: %v", i, err)
		case <-ctx.Done():
			t.Fatalf("the reading watcher did not read batch %d", i)
		}
	}
	took := time.Since(start)
	t.Logf("%d registrations of %d resources with a stuck watcher: %v", batches, membership.MaxBatch, took)
	if took > 20*time.Second {
		t.Errorf("writes with a stuck watcher took %v", took)
	}
	if err := <-readErr; err != nil {
		t.Errorf("the reading watcher: %v", err)
	}
	// The stuck watcher, when it finally reads, gets what the feed still
	// held for it and then OutOfRange: never a silent gap.
	var got int
	for {
		ev, err := stuck.Recv()
		if err != nil {
			if status.Code(err) != codes.OutOfRange {
				t.Errorf("stuck watcher ended with %v, want OutOfRange", err)
			}
			break
		}
		if ev.GetRevision() >= last {
			t.Fatalf("stuck watcher reached revision %d: it was never behind", ev.GetRevision())
		}
		got++
	}
	t.Logf("stuck watcher read %d events, then OutOfRange", got)
}

// TestCommitStatus: how a failed commit reaches the caller. A write that
// meets a leadership transfer is retryable (the next leader takes it).
func TestCommitStatus(t *testing.T) {
	for _, tc := range []struct {
		err   error
		want  codes.Code
		retry bool
	}{
		{fmt.Errorf("apply: %w", election.ErrTransferInProgress), codes.Unavailable, true},
		{fmt.Errorf("apply: %w", election.ErrNoLeader), codes.Unavailable, true},
		{fmt.Errorf("x: %w", membership.ErrInvalidCommand), codes.InvalidArgument, false},
		{fmt.Errorf("x: %w", membership.ErrUnknownMember), codes.NotFound, false},
		{fmt.Errorf("x: %w", membership.ErrInvalidTransition), codes.FailedPrecondition, false},
		// The server's NOT_LEADER answer is what internal/retry's rule
		// knows as "the leader moved" (their constants agree).
		{&election.NotLeaderError{LeaderID: "n2", LeaderAddr: "127.0.0.1:1"}, codes.FailedPrecondition, true},
		{api.NotLeaderStatus("n2", "127.0.0.1:1"), codes.FailedPrecondition, true},
	} {
		got := api.CommitStatus(tc.err)
		if status.Code(got) != tc.want || retry.Retryable(got) != tc.retry {
			t.Errorf("api.CommitStatus(%v) = %v (retryable %v), want %v (retryable %v)", tc.err, got, retry.Retryable(got), tc.want, tc.retry)
		}
	}
}

// TestMemberIDChecks: the calls that name a member refuse a malformed id
// with InvalidArgument and an unknown one with NotFound, changing nothing.
func TestMemberIDChecks(t *testing.T) {
	fsm, c := serveSolo(t)
	rev := fsm.Revision()
	long := strings.Repeat("x", 300)
	calls := map[string]func(id string) error{
		"SetDrain": func(id string) error {
			_, err := c.SetDrain(ctxT(t), &heartbeatpb.SetDrainRequest{NodeId: id, Draining: true})
			return err
		},
		"SetLeaderPriority": func(id string) error {
			_, err := c.SetLeaderPriority(ctxT(t), &heartbeatpb.SetLeaderPriorityRequest{NodeId: id, Priority: 5})
			return err
		},
	}
	for name, call := range calls {
		for _, tc := range []struct {
			id   string
			want codes.Code
		}{{long, codes.InvalidArgument}, {"nobody", codes.NotFound}} {
			if err := call(tc.id); status.Code(err) != tc.want {
				t.Errorf("%s(%.20q): %v, want %v", name, tc.id, err, tc.want)
			}
		}
	}
	if got := fsm.Revision(); got != rev {
		t.Errorf("refused calls moved the revision %d -> %d", rev, got)
	}
}
