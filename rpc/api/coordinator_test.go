package api_test

import (
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
	"github.com/heartbeat-sidecar/heartbeat/rpc/api"
)

// serveCoordinator serves a Coordinator for m on a fresh loopback port.
func serveCoordinator(t *testing.T, m *member) (*api.Coordinator, heartbeatpb.CoordinatorClient) {
	t.Helper()
	c, client, _ := serveCoordinatorWith(t, m, nil)
	return c, client
}

// serveCoordinatorWith is serveCoordinator with a config edit; it returns
// the client address too.
func serveCoordinatorWith(t *testing.T, m *member, edit func(*api.CoordinatorConfig)) (*api.Coordinator, heartbeatpb.CoordinatorClient, string) {
	t.Helper()
	cfg := api.DefaultCoordinatorConfig()
	cfg.ID, cfg.ClusterID, cfg.Election = m.id, testCluster, m.el
	cfg.LastContact = func(addr string) time.Time { return m.tr.Acks()[raft.ServerAddress(addr)].RepliedAt }
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
	return c, heartbeatpb.NewCoordinatorClient(dial(t, ln.Addr().String())), ln.Addr().String()
}

func TestCoordinator(t *testing.T) {
	ms := newCluster(t, 3)
	leader, follower := leaderOfCluster(ms), followerOf(ms)
	lcoord, lc := serveCoordinator(t, leader)
	_, fc := serveCoordinator(t, follower)

	st, err := lc.Status(ctxT(t), &heartbeatpb.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetId() != leader.id || st.GetState() != "leader" || !st.GetIsLeader() || st.GetLeaseUntilUnixNano() == 0 ||
		st.GetLeader().GetAddress() != leader.addr() || st.GetFencingToken() == 0 || st.GetClusterId() != testCluster ||
		!st.GetVoter() || st.GetCommitIndex() == 0 {
		t.Errorf("leader status: %v", st)
	}
	fst, err := fc.Status(ctxT(t), &heartbeatpb.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if fst.GetState() != "follower" || fst.GetIsLeader() || fst.GetLeaseUntilUnixNano() != 0 || fst.GetLeader().GetId() != leader.id {
		t.Errorf("follower status: %v", fst)
	}

	mr, err := fc.Members(ctxT(t), &heartbeatpb.MembersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(mr.GetMembers()) != 3 {
		t.Fatalf("members: %v", mr)
	}
	for _, m := range mr.GetMembers() {
		if m.GetIsLeader() != (m.GetId() == leader.id) || m.GetSuffrage() != "voter" {
			t.Errorf("member %v (leader is %s)", m, leader.id)
		}
	}

	// The first event is the current state; Close ends the stream.
	stream, err := lc.WatchLeader(ctxT(t), &heartbeatpb.WatchLeaderRequest{})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if ev.GetLeader().GetId() != leader.id || !ev.GetIsSelf() || ev.GetTerm() != st.GetTerm() || ev.GetFellBehind() {
		t.Errorf("first event: %v", ev)
	}
	lcoord.Close()
	for {
		_, err := stream.Recv()
		if err == nil {
			continue
		}
		if status.Code(err) != codes.Unavailable {
			t.Errorf("stream after Close: %v, want Unavailable", err)
		}
		break
	}
	if _, err := lc.Status(ctxT(t), &heartbeatpb.StatusRequest{}); err != nil {
		t.Errorf("Status after Close: %v (unary calls keep working)", err)
	}
	s2, err := lc.WatchLeader(ctxT(t), &heartbeatpb.WatchLeaderRequest{})
	if err == nil {
		_, err = s2.Recv()
	}
	if status.Code(err) != codes.Unavailable {
		t.Errorf("new watch after Close: %v, want Unavailable", err)
	}
}

func TestSameLeadershipIgnoresLeaseRenewal(t *testing.T) {
	a := election.Leadership{LeaderID: "n1", LeaderAddr: "a", Term: 3, FencingToken: 3, IsLeader: true, LeaseUntil: time.Now()}
	b := a
	b.LeaseUntil = a.LeaseUntil.Add(time.Second)
	if !api.SameLeadership(a, b) {
		t.Error("a lease renewal counted as a change")
	}
	for _, edit := range []func(*election.Leadership){
		func(l *election.Leadership) { l.LeaderID = "n2" },
		func(l *election.Leadership) { l.Term++ },
		func(l *election.Leadership) { l.FencingToken++ },
		func(l *election.Leadership) { l.IsLeader = false },
	} {
		c := a
		edit(&c)
		if api.SameLeadership(a, c) {
			t.Errorf("change %+v not seen", c)
		}
	}
	ev := api.LeaderEvent(a, time.Unix(0, 42), true)
	if ev.GetLeaseUntilUnixNano() != a.LeaseUntil.UnixNano() || !ev.GetFellBehind() || ev.GetObservedUnixNano() != 42 || !ev.GetIsSelf() {
		t.Errorf("leaderEvent: %v", ev)
	}
	a.IsLeader = false
	if ev := api.LeaderEvent(a, time.Now(), false); ev.GetLeaseUntilUnixNano() != 0 {
		t.Errorf("a non-leader's event carries a lease: %v", ev)
	}
}
