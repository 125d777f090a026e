package node

import (
	"fmt"
	"sort"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/internal/testport"
	"github.com/heartbeat-sidecar/heartbeat/membership"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// memTweak sets detector floors that a loaded, -race test machine cannot
// trip by accident (a real death is still seen in about two seconds).
func memTweak(cfg *Config) {
	cfg.Reconciler.Detector.FirstHeartbeatEstimate = 200 * time.Millisecond
	cfg.Reconciler.Detector.MinTimeout = time.Second
	cfg.Reconciler.Detector.MinDeadTimeout = 1500 * time.Millisecond
	cfg.DrainTimeout = 5 * time.Second
}

// startMemCluster starts voters n1..n<voters> from an initial cluster plus
// non-voters joining through n1.
func startMemCluster(t *testing.T, voters, nonVoters int) *cluster {
	addrs := testport.Addrs(t, voters+nonVoters)
	c := &cluster{t: t, dir: t.TempDir(), nodes: map[string]*Node{}, tweak: memTweak}
	for i := 0; i < voters; i++ {
		c.peers = append(c.peers, election.Peer{ID: fmt.Sprintf("n%d", i+1), Address: addrs[i], Voter: true})
	}
	t.Cleanup(c.stopAll)
	for _, p := range c.peers {
		c.start(p.ID)
	}
	for i := 0; i < nonVoters; i++ {
		c.join(fmt.Sprintf("n%d", voters+i+1), addrs[voters+i], false)
	}
	return c
}

// join starts a node that joins through the first initial member.
func (c *cluster) join(id, addr string, voter bool) *Node {
	c.t.Helper()
	cfg := testConfig(c.t, id, addr, c.dir)
	cfg.Join = []string{c.peers[0].Address}
	cfg.Voter = voter
	if c.tweak != nil {
		c.tweak(&cfg)
	}
	n, err := New(cfg)
	if err != nil {
		c.t.Fatalf("start %s: %v", id, err)
	}
	c.nodes[id] = n
	return n
}

// live returns the running nodes sorted by id.
func (c *cluster) live() []*Node {
	var out []*Node
	for _, n := range c.nodes {
		if !n.stopped.Load() {
			out = append(out, n)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID() < out[j].ID() })
	return out
}

// waitMembers waits until every running node sees every running node
// registered as alive.
func (c *cluster) waitMembers() {
	c.t.Helper()
	live := c.live()
	waitFor(c.t, "every node registered alive everywhere", func() (bool, string) {
		for _, n := range live {
			v := n.Membership().View()
			for _, m := range live {
				mm, ok := findMember(v, m.ID())
				if !ok || mm.State != membership.StateAlive || mm.ClientAddr != m.ClientAddr() {
					return false, fmt.Sprintf("%s sees %s as %+v", n.ID(), m.ID(), mm)
				}
			}
		}
		return true, ""
	})
}

func findMember(v membership.View, id string) (membership.Member, bool) {
	for _, m := range v.Members {
		if m.ID == id {
			return m, true
		}
	}
	return membership.Member{}, false
}

// waitSettled waits until the leader's state has every resource owned and
// its plan wants no move, and every node has applied the leader's revision.
func (c *cluster) waitSettled(wantResources int) membership.View {
	c.t.Helper()
	var v membership.View
	waitFor(c.t, "assignment settled", func() (bool, string) {
		leader := c.leader()
		var moves, unowned, total int
		leader.Membership().Read(func(s *membership.State) {
			moves = len(membership.Plan(s, membership.DefaultPlanConfig()).Moves)
			unowned, total = s.NumUnowned(), s.NumResources()
		})
		if total != wantResources || unowned > 0 || moves > 0 {
			return false, fmt.Sprintf("%d resources (want %d), %d unowned, %d planned moves", total, wantResources, unowned, moves)
		}
		v = leader.Membership().View()
		for _, n := range c.live() {
			if r := n.Membership().Revision(); r < v.Revision {
				return false, fmt.Sprintf("%s at revision %d < %d", n.ID(), r, v.Revision)
			}
		}
		return true, ""
	})
	return v
}

func owners(v membership.View) map[string]membership.Resource {
	out := make(map[string]membership.Resource, len(v.Resources))
	for _, r := range v.Resources {
		out[r.ID] = r
	}
	return out
}

func registerN(t *testing.T, n *Node, prefix string, count int) {
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
	c.leader()
	c.waitMembers()

	// Writes to a follower are forwarded to the leader.
	follower := c.follower()
	registerN(t, follower, "r", 120)
	// Read-your-writes on the follower that forwarded.
	if _, ok := resourceOf(follower, "r-007"); !ok {
		t.Fatalf("the resource just registered through %s is not in its state", follower.ID())
	}
	v := c.waitSettled(120)
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
	before := c.waitSettled(120)
	for _, n := range c.live() {
		n.Close()
	}
	ids := []string{"n1", "n2", "n3", "n4"}
	for _, id := range ids {
		delete(c.nodes, id)
		c.start(id)
	}
	n5addr := c.nodes["n5"].PeerAddr()
	delete(c.nodes, "n5")
	c.join("n5", n5addr, false)
	c.leader()
	c.waitMembers()
	after := c.waitSettled(120)
	for _, n := range c.live() {
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
func testComeBack(t *testing.T, c *cluster, id string, was membership.MemberState) {
	if id == "" {
		t.Skip("no node was stopped")
	}
	if m, _ := findMember(c.leader().Membership().View(), id); m.State != was {
		t.Fatalf("%s is %s before its restart, want %s", id, m.State, was)
	}
	delete(c.nodes, id)
	n := c.start(id)
	c.waitMembers()
	waitFor(t, id+" owns resources again", func() (bool, string) {
		o := n.numOwned(id)
		return o > 0, fmt.Sprint(o, " owned")
	})
}

// testPlannedStop: Shutdown of a follower first moves its resources to live
// members (no resource is ever without an owner in the leader's view), then
// records it as left, not dead.
func testPlannedStop(t *testing.T, c *cluster) string {
	leader := c.leader()
	var n *Node
	for _, x := range c.live() {
		if x != leader && x.numOwned(x.ID()) > 0 {
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

func testAppUnhealthy(t *testing.T, c *cluster) {
	leader := c.leader()
	var n *Node
	for _, x := range c.live() {
		if x != leader && x.numOwned(x.ID()) > 0 {
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
	waitFor(t, n.ID()+" unhealthy and drained", func() (bool, string) {
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
	waitFor(t, n.ID()+" healthy and owning again", func() (bool, string) {
		m, _ := findMember(leader.Membership().View(), n.ID())
		return m.AppHealthy && n.numOwned(n.ID()) > 0, fmt.Sprintf("%+v owns %d", m, n.numOwned(n.ID()))
	})

	// The leader's application lapses: it drains and hands leadership off.
	lclient := heartbeatpb.NewCoordinatorClient(dialClient(t, leader.ClientAddr()))
	if _, err := lclient.AppHeartbeat(ctxT(t), &heartbeatpb.AppHeartbeatRequest{Ttl: durationpb.New(300 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "unhealthy leader "+leader.ID()+" hands off and drains", func() (bool, string) {
		next := c.leader()
		m, _ := findMember(next.Membership().View(), leader.ID())
		return next != leader && !m.AppHealthy && next.numOwned(leader.ID()) == 0,
			fmt.Sprintf("leader %s, old leader %+v owns %d", next.ID(), m, next.numOwned(leader.ID()))
	})
	if _, err := lclient.AppHeartbeat(ctxT(t), &heartbeatpb.AppHeartbeatRequest{Ttl: durationpb.New(600000 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, leader.ID()+" healthy again", func() (bool, string) {
		m, _ := findMember(c.leader().Membership().View(), leader.ID())
		return m.AppHealthy && leader.numOwned(leader.ID()) > 0, fmt.Sprintf("%+v", m)
	})
}
