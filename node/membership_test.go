package node

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/election"
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
	addrs := freeAddrs(t, voters+nonVoters)
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
	var items []string
	for i := 0; i < count; i++ {
		items = append(items, fmt.Sprintf(`{"id":"%s-%03d","weight":%d}`, prefix, i, 1+i%3))
	}
	code, body := httpBody(t, "POST", "http://"+n.HTTPAddr()+"/v1/resources", "["+strings.Join(items, ",")+"]")
	if code != 200 {
		t.Fatalf("register %d resources via %s: %d %s", count, n.ID(), code, body)
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
	if code, body := httpDo(t, "GET", "http://"+follower.HTTPAddr()+"/v1/resources/r-007"); code != 200 {
		t.Fatalf("GET the resource just registered through %s: %d %s", follower.ID(), code, body)
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

	t.Run("crash of a follower", func(t *testing.T) { testFollowerCrash(t, c) })
	t.Run("unhealthy application drains", func(t *testing.T) { testAppUnhealthy(t, c) })
	t.Run("planned stop drains and leaves", func(t *testing.T) { testPlannedStop(t, c) })
}

// testPlannedStop: Shutdown of a follower first moves its resources to live
// members (no resource is ever without an owner in the leader's view), then
// records it as left, not dead.
func testPlannedStop(t *testing.T, c *cluster) {
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
	stop := make(chan struct{})
	unowned := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			for _, r := range leader.Membership().View().Resources {
				if r.Owner == "" {
					select {
					case unowned <- r.ID:
					default:
					}
				}
			}
		}
	}()
	start := time.Now()
	if err := n.Shutdown(ctxT(t)); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	took := time.Since(start)
	close(stop)
	<-done
	select {
	case id := <-unowned:
		t.Errorf("resource %s had no owner during the planned stop", id)
	default:
	}
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

// sampler checks, every few milliseconds until stopped, every running node's
// view: one owner per resource, owners are members, epochs no later than the
// revision (CheckOneOwner), and across views one owner per (resource, epoch).
type sampler struct {
	mu         sync.Mutex
	violations []string
	samples    int
	stop       chan struct{}
	done       chan struct{}
}

func startSampler(nodes []*Node) *sampler {
	s := &sampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			select {
			case <-s.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			byEpoch := map[string]string{}
			for _, n := range nodes {
				if n.stopped.Load() {
					continue
				}
				v := n.Membership().View()
				if err := membership.CheckOneOwner(v); err != nil {
					s.add(fmt.Sprintf("%s: %v", n.ID(), err))
				}
				for _, r := range v.Resources {
					if r.Owner == "" {
						continue
					}
					k := fmt.Sprintf("%s@%d", r.ID, r.Epoch)
					if o, ok := byEpoch[k]; ok && o != r.Owner {
						s.add(fmt.Sprintf("%s: %s owned by %s and %s at the same epoch", n.ID(), r.ID, o, r.Owner))
					}
					byEpoch[k] = r.Owner
				}
			}
			s.mu.Lock()
			s.samples++
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *sampler) add(v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.violations) < 20 {
		s.violations = append(s.violations, v)
	}
}

func (s *sampler) finish() ([]string, int) {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.violations, s.samples
}

func testFollowerCrash(t *testing.T, c *cluster) {
	leader := c.leader()
	before := c.waitSettled(120)
	var victim *Node
	for _, n := range c.live() {
		if n != leader && n.ID() != "n5" && n.Membership().View().Revision > 0 {
			victim = n
			break
		}
	}
	victimOwned := 0
	for _, r := range before.Resources {
		if r.Owner == victim.ID() {
			victimOwned++
		}
	}
	if victimOwned == 0 {
		t.Fatalf("victim %s owns nothing before the crash", victim.ID())
	}

	// A watch on another follower, from the revision of the listing.
	var watcher *Node
	for _, n := range c.live() {
		if n != leader && n != victim {
			watcher = n
			break
		}
	}
	client := heartbeatpb.NewCoordinatorClient(dialClient(t, watcher.ClientAddr()))
	list, err := client.ListResources(ctxT(t), &heartbeatpb.ListResourcesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithCancel(ctxT(t))
	defer wcancel()
	stream, err := client.WatchAssignments(wctx, &heartbeatpb.WatchAssignmentsRequest{FromRevision: list.GetRevision()})
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := stream.Recv(); err != nil || ev.GetKind() != "start" || ev.GetRevision() != list.GetRevision() {
		t.Fatalf("first watch message: %v %v", ev, err)
	}

	survivors := []*Node{}
	for _, n := range c.live() {
		if n != victim {
			survivors = append(survivors, n)
		}
	}
	smp := startSampler(c.live())
	killed := time.Now()
	victim.Close()
	var declared time.Duration
	waitFor(t, "the victim's resources on live owners everywhere", func() (bool, string) {
		for _, n := range survivors {
			v := n.Membership().View()
			m, _ := findMember(v, victim.ID())
			if m.State != membership.StateDead {
				return false, fmt.Sprintf("%s sees %s as %s", n.ID(), victim.ID(), m.State)
			}
			if declared == 0 && n == c.leader() {
				declared = time.Since(killed)
			}
			for _, r := range v.Resources {
				if r.Owner == victim.ID() || r.Owner == "" {
					return false, fmt.Sprintf("%s: %s owned by %q", n.ID(), r.ID, r.Owner)
				}
			}
		}
		return true, ""
	})
	reassigned := time.Since(killed)
	violations, samples := smp.finish()
	t.Logf("kill of %s (owned %d of 120): declared dead after <= %v, all its resources on live owners on every survivor after %v (%d samples)",
		victim.ID(), victimOwned, declared, reassigned, samples)
	if len(violations) > 0 {
		t.Errorf("one-owner violations: %v", violations)
	}
	if reassigned > 10*time.Second {
		t.Errorf("reassignment took %v", reassigned)
	}

	after := c.leader().Membership().View()
	beforeBy := owners(before)
	moved := map[string]bool{}
	for _, r := range after.Resources {
		b := beforeBy[r.ID]
		if b.Owner == victim.ID() {
			if r.Owner == victim.ID() || r.Epoch <= b.Epoch {
				t.Errorf("%s: %s@%d after the crash (was %s@%d)", r.ID, r.Owner, r.Epoch, b.Owner, b.Epoch)
			}
			moved[r.ID] = true
			continue
		}
		if r.Owner != b.Owner || r.Epoch != b.Epoch {
			t.Errorf("%s moved though its owner %s lives: now %s@%d, was @%d", r.ID, b.Owner, r.Owner, r.Epoch, b.Epoch)
		}
	}
	for _, m := range after.Members {
		if m.ID != victim.ID() && m.State != membership.StateAlive {
			t.Errorf("member %s is %s after the crash of %s", m.ID, m.State, victim.ID())
		}
	}

	// The watch saw every move, in revision order.
	got := map[string]*heartbeatpb.AssignmentEvent{}
	var seen []*heartbeatpb.AssignmentEvent
	var last uint64
	for len(got) < len(moved) {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatalf("watch: %v (got %d of %d moves)", err, len(got), len(moved))
		}
		if ev.GetRevision() < last {
			t.Fatalf("watch went back from revision %d to %d", last, ev.GetRevision())
		}
		last = ev.GetRevision()
		seen = append(seen, ev)
		if ev.GetKind() == "assigned" && moved[ev.GetResourceId()] {
			if ev.GetPrevOwner() != victim.ID() {
				t.Errorf("move event %v: prev owner is not the victim", ev)
			}
			got[ev.GetResourceId()] = ev
		}
	}
	wcancel()
	for id, ev := range got {
		r := owners(after)[id]
		if ev.GetOwner() != r.Owner || ev.GetEpoch() != r.Epoch {
			t.Errorf("watch says %s -> %s@%d, state says %s@%d", id, ev.GetOwner(), ev.GetEpoch(), r.Owner, r.Epoch)
		}
	}
	// Resume from the middle: the events after that revision, the same ones.
	mid := seen[len(seen)/2].GetRevision()
	var want []string
	for _, ev := range seen {
		if ev.GetRevision() > mid {
			want = append(want, ev.String())
		}
	}
	rctx, rcancel := context.WithCancel(ctxT(t))
	defer rcancel()
	rs, err := client.WatchAssignments(rctx, &heartbeatpb.WatchAssignmentsRequest{FromRevision: mid})
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := rs.Recv(); err != nil || ev.GetKind() != "start" {
		t.Fatalf("resumed watch start: %v %v", ev, err)
	}
	for i, w := range want {
		ev, err := rs.Recv()
		if err != nil {
			t.Fatalf("resumed watch: %v", err)
		}
		if ev.String() != w {
			t.Fatalf("resumed watch event %d: %v, want %v", i, ev, w)
		}
	}
	rcancel()
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
	if _, err := client.AppHeartbeat(ctxT(t), &heartbeatpb.AppHeartbeatRequest{TtlMs: 300}); err != nil {
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
	resp, err := client.AppHeartbeat(ctxT(t), &heartbeatpb.AppHeartbeatRequest{TtlMs: 60000})
	if err != nil {
		t.Fatal(err)
	}
	_ = resp
	waitFor(t, n.ID()+" healthy and owning again", func() (bool, string) {
		m, _ := findMember(leader.Membership().View(), n.ID())
		return m.AppHealthy && n.numOwned(n.ID()) > 0, fmt.Sprintf("%+v owns %d", m, n.numOwned(n.ID()))
	})
}
