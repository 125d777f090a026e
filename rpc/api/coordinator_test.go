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

	st, err := lc.GetStatus(ctxT(t), &heartbeatpb.GetStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetNodeId() != leader.id || heartbeatpb.Short(st.GetState()) != "leader" || !st.GetIsLeader() || st.GetLeaseUntil() == nil ||
		st.GetLeader().GetPeerAddress() != leader.addr() || st.GetFencingToken() == 0 || st.GetClusterId() != testCluster ||
		st.GetSuffrage() != heartbeatpb.Suffrage_SUFFRAGE_VOTER || st.GetCommitIndex() == 0 {
		t.Errorf("leader status: %v", st)
	}
	fst, err := fc.GetStatus(ctxT(t), &heartbeatpb.GetStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if heartbeatpb.Short(fst.GetState()) != "follower" || fst.GetIsLeader() || fst.GetLeaseUntil() != nil || fst.GetLeader().GetNodeId() != leader.id {
		t.Errorf("follower status: %v", fst)
	}

	mr, err := fc.ListMembers(ctxT(t), &heartbeatpb.ListMembersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(mr.GetMembers()) != 3 {
		t.Fatalf("members: %v", mr)
	}
	for _, m := range mr.GetMembers() {
		if m.GetRaftLeader() != (m.GetNodeId() == leader.id) || heartbeatpb.Short(m.GetSuffrage()) != "voter" {
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
	if l := ev.GetLeadership(); l.GetLeader().GetNodeId() != leader.id || !l.GetIsLeader() || l.GetTerm() != st.GetTerm() || ev.GetFellBehind() {
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
	if _, err := lc.GetStatus(ctxT(t), &heartbeatpb.GetStatusRequest{}); err != nil {
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
	ev := api.Leadership(a, time.Unix(0, 42))
	if !ev.GetLeaseUntil().AsTime().Equal(a.LeaseUntil) || !ev.GetObserved().AsTime().Equal(time.Unix(0, 42)) || !ev.GetIsLeader() || ev.GetLeaseRemaining() == nil {
		t.Errorf("leadership: %v", ev)
	}
	a.IsLeader = false
	if ev := api.Leadership(a, time.Now()); ev.GetLeaseUntil() != nil || ev.GetLeaseRemaining() != nil {
		t.Errorf("a non-leader's event carries a lease: %v", ev)
	}
}
