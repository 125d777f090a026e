package node_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
	"github.com/heartbeat-sidecar/heartbeat/node"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// TestCluster runs one 3-node cluster through the node's whole surface:
// HTTP, the Coordinator, a crash of the leader seen on a watch stream, a
// restart, a join through a follower, and a graceful stop of the leader.
func TestCluster(t *testing.T) {
	c := testcluster.New(t, 3, testcluster.Options{Wait: waitTimeout, Tweak: defaultDetector})
	n4Addr := testcluster.FreeAddrs(t, 1)[0]

	// Alone, n1 has no quorum: it knows no leader and is not ready.
	n1 := c.StartNode("n1")
	code, body := httpDo(t, http.MethodGet, "http://"+n1.HTTPAddr()+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "[-]leader") {
		t.Fatalf("readyz before a leader: %d %q, want 503 with [-]leader", code, body)
	}
	checkHealth(t, n1, healthpb.HealthCheckResponse_NOT_SERVING)
	c.StartNode("n2")
	c.StartNode("n3")
	leader := c.Leader()

	t.Run("http", func(t *testing.T) { testHTTP(t, c, leader) })
	t.Run("coordinator", func(t *testing.T) { testCoordinator(t, c, c.Leader()) })

	// Crash the leader while a follower's watch stream is open: a new event
	// names another leader with a higher fencing token.
	leader = c.Leader()
	follower := c.Follower()
	conn := dialClient(t, follower.ClientAddr())
	wctx, wcancel := context.WithCancel(ctxT(t))
	defer wcancel()
	stream, err := heartbeatpb.NewCoordinatorClient(conn).WatchLeader(wctx, &heartbeatpb.WatchLeaderRequest{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if first.GetLeadership().GetLeader().GetNodeId() != leader.ID() || first.GetLeadership().GetFencingToken() == 0 {
		t.Fatalf("first watch event %v, want the current leader %s with a token", first, leader.ID())
	}
	oldToken := first.GetLeadership().GetFencingToken()
	c.Kill(leader.ID())
	for {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatalf("watch after the crash: %v", err)
		}
		if id := ev.GetLeadership().GetLeader().GetNodeId(); id != "" && id != leader.ID() {
			if ev.GetLeadership().GetFencingToken() <= oldToken {
				t.Fatalf("new leader %s with fencing token %d, not above %d", id, ev.GetLeadership().GetFencingToken(), oldToken)
			}
			break
		}
	}
	wcancel()

	// The crashed node restarts from its data dir and rejoins.
	c.Restart(leader.ID())
	leader = c.Leader()

	t.Run("join via follower", func(t *testing.T) { testJoin(t, c, n4Addr) })
	t.Run("apply", func(t *testing.T) { testApply(t, c) })
	t.Run("graceful shutdown", func(t *testing.T) { testGracefulShutdown(t, c) })
}

func checkHealth(t *testing.T, n *node.Node, want healthpb.HealthCheckResponse_ServingStatus) {
	t.Helper()
	client := healthpb.NewHealthClient(dialClient(t, n.ClientAddr()))
	testwait.Eventually(t, waitTimeout, "health "+want.String(), func() (bool, string) {
		resp, err := client.Check(ctxT(t), &healthpb.HealthCheckRequest{})
		if err != nil {
			return false, err.Error()
		}
		return resp.GetStatus() == want, resp.GetStatus().String()
	})
}

func testHTTP(t *testing.T, c *testcluster.Cluster, leader *node.Node) {
	for _, n := range c.Live() {
		id := n.ID()
		base := "http://" + n.HTTPAddr()
		if code, body := httpDo(t, http.MethodGet, base+"/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
			t.Errorf("%s /healthz: %d %q", id, code, body)
		}
		testwait.Eventually(t, waitTimeout, id+" ready", func() (bool, string) {
			code, body := httpDo(t, http.MethodGet, base+"/readyz")
			return code == 200 && strings.Contains(body, "[+]leader ok") && strings.Contains(body, "[+]applied ok") && strings.Contains(body, "[+]storage ok"), body
		})
		checkHealth(t, n, healthpb.HealthCheckResponse_SERVING)

		code, body := httpDo(t, http.MethodGet, base+"/v1/status")
		if code != 200 {
			t.Fatalf("%s /v1/status: %d %s", id, code, body)
		}
		var sp heartbeatpb.GetStatusResponse
		if err := protojson.Unmarshal([]byte(body), &sp); err != nil {
			t.Fatalf("%s /v1/status: %v in %s", id, err, body)
		}
		s := node.StatusFromProto(&sp)
		if s.ID != id || s.ClusterID != "heartbeat" || !s.Voter || s.Leader.ID != leader.ID() ||
			s.Leader.Address != leader.PeerAddr() || s.FencingToken == 0 || s.Term < s.FencingToken {
			t.Errorf("%s /v1/status: %+v (leader %s at %s)", id, s, leader.ID(), leader.PeerAddr())
		}
		if n == leader {
			if s.State != "leader" || !s.IsLeader || s.LeaseUntil == nil {
				t.Errorf("leader's status: %+v", s)
			}
		} else if s.State != "follower" || s.IsLeader || s.LeaseUntil != nil {
			t.Errorf("follower %s status: %+v", id, s)
		}
	}

	base := "http://" + leader.HTTPAddr()
	code, body := httpDo(t, http.MethodGet, base+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, name := range []string{"heartbeat_raft_state", "heartbeat_raft_term", "heartbeat_raft_elections_started_total",
		"heartbeat_transport_heartbeat_rtt_seconds", "heartbeat_node_ready 1", "go_goroutines", "process_"} {
		if !strings.Contains(body, name) {
			t.Errorf("/metrics lacks %q", name)
		}
	}

	code, body = httpDo(t, http.MethodGet, base+"/v1/members")
	var ms heartbeatpb.ListMembersResponse
	if err := protojson.Unmarshal([]byte(body), &ms); err != nil || code != 200 || len(ms.GetMembers()) != 3 {
		t.Fatalf("/v1/members: %d %s (%v)", code, body, err)
	}

	code, body = httpDo(t, http.MethodGet, base+"/nope")
	if code != 404 || !strings.Contains(body, `"error"`) {
		t.Errorf("unknown path: %d %s", code, body)
	}
	code, body = httpDo(t, http.MethodPost, base+"/v1/status")
	if code != 405 || !strings.Contains(body, `"error"`) {
		t.Errorf("POST /v1/status: %d %s", code, body)
	}
}

func testCoordinator(t *testing.T, c *testcluster.Cluster, leader *node.Node) {
	follower := c.Follower()
	client := heartbeatpb.NewCoordinatorClient(dialClient(t, follower.ClientAddr()))
	st, err := client.GetStatus(ctxT(t), &heartbeatpb.GetStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetNodeId() != follower.ID() || heartbeatpb.Short(st.GetState()) != "follower" || st.GetLeader().GetNodeId() != leader.ID() ||
		st.GetIsLeader() || st.GetFencingToken() == 0 {
		t.Errorf("follower Status: %v", st)
	}
	ms, err := client.ListMembers(ctxT(t), &heartbeatpb.ListMembersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	leaders := 0
	for _, m := range ms.GetMembers() {
		if heartbeatpb.Short(m.GetSuffrage()) != "voter" {
			t.Errorf("member %v is not a voter", m)
		}
		if m.GetRaftLeader() {
			leaders++
			if m.GetNodeId() != leader.ID() {
				t.Errorf("member %s marked leader, want %s", m.GetNodeId(), leader.ID())
			}
		}
	}
	if len(ms.GetMembers()) != 3 || leaders != 1 {
		t.Errorf("Members: %v", ms)
	}

	// The leader reports when it last heard from each follower.
	lclient := heartbeatpb.NewCoordinatorClient(dialClient(t, leader.ClientAddr()))
	testwait.Eventually(t, waitTimeout, "leader's last contact with followers", func() (bool, string) {
		ms, err := lclient.ListMembers(ctxT(t), &heartbeatpb.ListMembersRequest{})
		if err != nil {
			return false, err.Error()
		}
		for _, m := range ms.GetMembers() {
			if m.GetNodeId() != leader.ID() && m.GetLastContact() == nil {
				return false, "no contact with " + m.GetNodeId()
			}
		}
		return true, ""
	})

	// WatchLeader sends the current state first.
	wctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	stream, err := lclient.WatchLeader(wctx, &heartbeatpb.WatchLeaderRequest{})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if ev.GetLeadership().GetLeader().GetNodeId() != leader.ID() || !ev.GetLeadership().GetIsLeader() || ev.GetLeadership().GetLeaseUntil() == nil ||
		ev.GetLeadership().GetFencingToken() != st.GetFencingToken() || ev.GetLeadership().GetObserved() == nil {
		t.Errorf("first event on the leader: %v", ev)
	}
}

func testJoin(t *testing.T, c *testcluster.Cluster, peerAddr string) {
	follower := c.Follower()
	cfg := c.Config("n4", peerAddr)
	defaultDetector(&cfg)
	cfg.Join = []string{follower.PeerAddr()}
	n4 := c.StartConfig("n4", cfg)
	leader := c.Leader()
	testwait.Eventually(t, waitTimeout, "n4 in the leader's members", func() (bool, string) {
		ms, err := leader.Members()
		if err != nil {
			return false, err.Error()
		}
		for _, m := range ms {
			if m.ID == "n4" {
				return m.Suffrage == "voter", fmt.Sprintf("%+v", m)
			}
		}
		return false, fmt.Sprintf("%d members", len(ms))
	})
	testwait.Eventually(t, waitTimeout, "n4 ready", func() (bool, string) {
		ok, why := n4.Ready()
		return ok && n4.Status().Voter, strings.Join(why, "; ")
	})

	// A node of another cluster is refused for good: Run returns the error.
	bad := c.Config("x1", "127.0.0.1:0")
	defaultDetector(&bad)
	bad.ClusterID = "other"
	bad.Join = []string{follower.PeerAddr()}
	xn, err := node.New(bad)
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- xn.Run(context.Background()) }()
	select {
	case err := <-runErr:
		if !errors.Is(err, node.ErrJoinRefused) {
			t.Errorf("join of another cluster: %v, want node.ErrJoinRefused", err)
		}
	case <-time.After(waitTimeout):
		xn.Close()
		<-runErr
		t.Fatal("join of another cluster still retrying")
	}
}

func testGracefulShutdown(t *testing.T, c *testcluster.Cluster) {
	leader := c.Leader()
	old := leader.Status()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	start := time.Now()
	if err := leader.Shutdown(ctx); err != nil {
		t.Fatalf("graceful shutdown: %v", err)
	}
	t.Logf("graceful shutdown took %v", time.Since(start))
	if err := leader.Shutdown(ctx); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	c.Forget(leader.ID())
	next := c.Leader()
	if next == leader || next.Status().FencingToken <= old.FencingToken {
		t.Fatalf("after graceful shutdown: leader %s token %d (old %s token %d)",
			next.ID(), next.Status().FencingToken, leader.ID(), old.FencingToken)
	}
	// The stopped node's servers are closed.
	if resp, err := httpClient.Get("http://" + leader.HTTPAddr() + "/healthz"); err == nil {
		resp.Body.Close()
		t.Error("HTTP still answers after Shutdown")
	}
	if ok, _ := leader.Ready(); ok {
		t.Error("stopped node says ready")
	}
}

// testApply: entries applied on the leader reach every node's FSM (a
// malformed entry is rejected by the membership FSM but still advances its
// revision), and every node's readiness follows.
func testApply(t *testing.T, c *testcluster.Cluster) {
	leader := c.Leader()
	for i := 0; i < 5; i++ {
		if _, err := leader.Election().Apply(ctxT(t), []byte("x")); err != nil {
			t.Fatalf("apply %d: %v", i, err)
		}
	}
	want := leader.Membership().Revision()
	for _, n := range c.Live() {
		id := n.ID()
		testwait.Eventually(t, waitTimeout, id+" applied the entries", func() (bool, string) {
			got := n.Membership().Revision()
			return got >= want, fmt.Sprintf("%d < %d", got, want)
		})
		testwait.Eventually(t, waitTimeout, id+" ready", func() (bool, string) {
			ok, why := n.Ready()
			return ok, strings.Join(why, "; ")
		})
	}
}
