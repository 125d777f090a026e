package node_test

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
	"github.com/heartbeat-sidecar/heartbeat/membership"
	"github.com/heartbeat-sidecar/heartbeat/node"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

func findMember(v membership.View, id string) (membership.Member, bool) {
	for _, m := range v.Members {
		if m.ID == id {
			return m, true
		}
	}
	return membership.Member{}, false
}

func owners(v membership.View) map[string]membership.Resource {
	out := make(map[string]membership.Resource, len(v.Resources))
	for _, r := range v.Resources {
		out[r.ID] = r
	}
	return out
}

func registerN(t *testing.T, n *node.Node, prefix string, count int) {
	t.Helper()
	req := &heartbeatpb.RegisterResourcesRequest{}
	for i := 0; i < count; i++ {
		req.Resources = append(req.Resources, &heartbeatpb.ResourceSpec{Id: fmt.Sprintf("%s-%03d", prefix, i), Weight: uint32(1 + i%3)})
	}
	if _, err := heartbeatpb.NewCoordinatorClient(dialClient(t, n.ClientAddr())).RegisterResources(ctxT(t), req); err != nil {
		t.Fatalf("register %d resources via %s: %v", count, n.ID(), err)
	}
}

// TestMembershipCluster runs a 5-node cluster (4 voters, 1 non-voter)
// through registration with forwarding, a full restart, the crash of a
// follower with its resources moving (and only them), an assignment watch
// resumed from a revision, and an application whose push heartbeats lapse.
func TestMembershipCluster(t *testing.T) {
	c := startMemCluster(t, 4, 1)
	c.Leader()
	c.WaitMembers()

	// Writes to a follower are forwarded to the leader.
	follower := c.Follower()
	registerN(t, follower, "r", 120)
	// Read-your-writes on the follower that forwarded.
	if _, ok := resourceOf(follower, "r-007"); !ok {
		t.Fatalf("the resource just registered through %s is not in its state", follower.ID())
	}
	v := c.WaitSettled(120)
	perOwner := map[string]int{}
	for _, r := range v.Resources {
		perOwner[r.Owner]++
	}
	if perOwner["n5"] == 0 {
		t.Errorf("the non-voter n5 owns nothing: %v", perOwner)
	}
	t.Logf("owners after registration: %v", perOwner)
	if m, _ := findMember(v, "n5"); m.Voter {
		t.Errorf("n5 registered as a voter: %+v", m)
	}

	t.Run("bad input", func(t *testing.T) { testBadInput(t, c) })
	t.Run("members and assignments API", func(t *testing.T) { testMembersAPI(t, c) })

	// Full restart: every node stops abruptly and starts again from its
	// data; members, resources and assignments are as before.
	before := c.WaitSettled(120)
	for _, n := range c.Live() {
		c.Kill(n.ID())
	}
	// n1..n4 from the initial cluster, then the non-voter n5 joins again
	// on its peer address.
	for _, id := range []string{"n1", "n2", "n3", "n4", "n5"} {
		c.Restart(id)
	}
	c.Leader()
	c.WaitMembers()
	after := c.WaitSettled(120)
	for _, n := range c.Live() {
		nv := n.Membership().View()
		if !sameAssignments(before, nv) {
			t.Fatalf("%s after a full restart: assignments differ", n.ID())
		}
		for _, m := range before.Members {
			got, ok := findMember(nv, m.ID)
			if !ok || got.State != m.State || got.PeerAddr != m.PeerAddr || got.Voter != m.Voter {
				t.Errorf("%s after restart sees member %+v, before %+v", n.ID(), got, m)
			}
		}
	}
	_ = after

	var victim string
	t.Run("crash of a follower", func(t *testing.T) { victim = testCrash(t, c, false) })
	t.Run("dead node comes back", func(t *testing.T) { testComeBack(t, c, victim, membership.StateDead) })
	t.Run("unhealthy application drains", func(t *testing.T) { testAppUnhealthy(t, c) })
	var stopped string
	t.Run("planned stop drains and leaves", func(t *testing.T) { stopped = testPlannedStop(t, c) })
	t.Run("rolling restart: the stopped node comes back", func(t *testing.T) { testComeBack(t, c, stopped, membership.StateLeft) })
	t.Run("crash of the leader", func(t *testing.T) { testCrash(t, c, true) })
}

// testComeBack restarts a stopped voter from its data: it becomes alive
// again in every view and takes resources again.
func testComeBack(t *testing.T, c *testcluster.Cluster, id string, was membership.MemberState) {
	if id == "" {
		t.Skip("no node was stopped")
	}
	if m, _ := findMember(c.Leader().Membership().View(), id); m.State != was {
		t.Fatalf("%s is %s before its restart, want %s", id, m.State, was)
	}
	n := c.Restart(id)
	c.WaitMembers()
	testwait.Eventually(t, waitTimeout, id+" owns resources again", func() (bool, string) {
		o := node.NumOwned(n, id)
		return o > 0, fmt.Sprint(o, " owned")
	})
}

// testPlannedStop: Shutdown of a follower first moves its resources to live
// members (no resource is ever without an owner in the leader's view), then
// records it as left, not dead.
func testPlannedStop(t *testing.T, c *testcluster.Cluster) string {
	leader := c.Leader()
	var n *node.Node
	for _, x := range c.Live() {
		if x != leader && node.NumOwned(x, x.ID()) > 0 {
			n = x
			break
		}
	}
	if n == nil {
		t.Fatal("no follower owning resources")
	}
	if !n.Status().Voter {
		t.Fatalf("picked the non-voter %s", n.ID())
	}
	// Its resources are released, then placed one ownership lease later;
	// nothing else is ever without an owner.
	releases := watchReleases(leader)
	mine := ownedBy(leader, n.ID())
	start := time.Now()
	if err := n.Shutdown(ctxT(t)); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	c.Forget(n.ID())
	took := time.Since(start)
	releases.check(t, mine, 3*time.Second)
	v := leader.Membership().View()
	m, _ := findMember(v, n.ID())
	if m.State != membership.StateLeft {
		t.Errorf("%s after a planned stop: %s, want left", n.ID(), m.State)
	}
	for _, r := range v.Resources {
		if r.Owner == n.ID() {
			t.Errorf("%s still owned by the stopped %s", r.ID, n.ID())
		}
	}
	t.Logf("planned stop of %s took %v", n.ID(), took)
	// It stays left (never declared dead) while it is down.
	time.Sleep(2 * time.Second) // longer than the detector's MinDeadTimeout: nothing may happen
	if m, _ := findMember(leader.Membership().View(), n.ID()); m.State != membership.StateLeft {
		t.Errorf("%s is %s two seconds after leaving", n.ID(), m.State)
	}
	return n.ID()
}

func sameAssignments(a, b membership.View) bool {
	if len(a.Resources) != len(b.Resources) {
		return false
	}
	for i := range a.Resources {
		x, y := a.Resources[i], b.Resources[i]
		if x.ID != y.ID || x.Owner != y.Owner || x.Epoch != y.Epoch || x.Weight != y.Weight {
			return false
		}
	}
	return true
}

func testAppUnhealthy(t *testing.T, c *testcluster.Cluster) {
	leader := c.Leader()
	var n *node.Node
	for _, x := range c.Live() {
		if x != leader && node.NumOwned(x, x.ID()) > 0 {
			n = x
			break
		}
	}
	if n == nil {
		t.Fatal("no follower owning resources")
	}
	client := heartbeatpb.NewCoordinatorClient(dialClient(t, n.ClientAddr()))
	if _, err := client.AppHeartbeat(ctxT(t), &heartbeatpb.AppHeartbeatRequest{Ttl: durationpb.New(300 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	// No further heartbeat: the TTL lapses, the node reports its
	// application unhealthy and its resources move away.
	testwait.Eventually(t, waitTimeout, n.ID()+" unhealthy and drained", func() (bool, string) {
		v := leader.Membership().View()
		m, _ := findMember(v, n.ID())
		owned := 0
		for _, r := range v.Resources {
			if r.Owner == n.ID() {
				owned++
			}
		}
		return !m.AppHealthy && owned == 0 && m.State == membership.StateAlive, fmt.Sprintf("%+v owns %d", m, owned)
	})
	// Healthy again: it takes work again.
	resp, err := client.AppHeartbeat(ctxT(t), &heartbeatpb.AppHeartbeatRequest{Ttl: durationpb.New(60000 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	_ = resp
	testwait.Eventually(t, waitTimeout, n.ID()+" healthy and owning again", func() (bool, string) {
		m, _ := findMember(leader.Membership().View(), n.ID())
		return m.AppHealthy && node.NumOwned(n, n.ID()) > 0, fmt.Sprintf("%+v owns %d", m, node.NumOwned(n, n.ID()))
	})

	// The leader's application lapses: it drains and hands leadership off.
	lclient := heartbeatpb.NewCoordinatorClient(dialClient(t, leader.ClientAddr()))
	if _, err := lclient.AppHeartbeat(ctxT(t), &heartbeatpb.AppHeartbeatRequest{Ttl: durationpb.New(300 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, waitTimeout, "unhealthy leader "+leader.ID()+" hands off and drains", func() (bool, string) {
		next := c.Leader()
		m, _ := findMember(next.Membership().View(), leader.ID())
		return next != leader && !m.AppHealthy && node.NumOwned(next, leader.ID()) == 0,
			fmt.Sprintf("leader %s, old leader %+v owns %d", next.ID(), m, node.NumOwned(next, leader.ID()))
	})
	if _, err := lclient.AppHeartbeat(ctxT(t), &heartbeatpb.AppHeartbeatRequest{Ttl: durationpb.New(600000 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, waitTimeout, leader.ID()+" healthy again", func() (bool, string) {
		m, _ := findMember(c.Leader().Membership().View(), leader.ID())
		return m.AppHealthy && node.NumOwned(leader, leader.ID()) > 0, fmt.Sprintf("%+v", m)
	})
}
