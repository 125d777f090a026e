package node_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
	"github.com/heartbeat-sidecar/heartbeat/membership"
	"github.com/heartbeat-sidecar/heartbeat/node"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

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

func startSampler(nodes []*node.Node) *sampler {
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
				if node.Stopped(n) {
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

// testCrash closes (crashes) a voter — the leader, or a follower — while
// every node's view is sampled, and checks that it is declared dead, that
// exactly its resources move to live members, that nobody else is declared
// dead, and that a watch sees every move and resumes from a revision. It
// returns the victim's id.
func testCrash(t *testing.T, c *testcluster.Cluster, crashLeader bool) string {
	leader := c.Leader()
	before := c.WaitSettled(120)
	var victim *node.Node
	for _, n := range c.Live() {
		if (n == leader) == crashLeader && n.Status().Voter {
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
	var watcher *node.Node
	for _, n := range c.Live() {
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
	if ev, err := stream.Recv(); err != nil || heartbeatpb.Short(ev.GetKind()) != "start" || ev.GetRevision() != list.GetRevision() {
		t.Fatalf("first watch message: %v %v", ev, err)
	}

	survivors := []*node.Node{}
	for _, n := range c.Live() {
		if n != victim {
			survivors = append(survivors, n)
		}
	}
	smp := startSampler(c.Live())
	killed := time.Now()
	c.Kill(victim.ID())
	var declared time.Duration
	testwait.Eventually(t, waitTimeout, "the victim's resources on live owners everywhere", func() (bool, string) {
		for _, n := range survivors {
			v := n.Membership().View()
			m, _ := findMember(v, victim.ID())
			if m.State != membership.StateDead {
				return false, fmt.Sprintf("%s sees %s as %s", n.ID(), victim.ID(), m.State)
			}
			if declared == 0 {
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
	t.Logf("kill of %s (leader: %v, owned %d of 120): seen dead after <= %v, all its resources on live owners on every survivor after %v (%d samples)",
		victim.ID(), crashLeader, victimOwned, declared, reassigned, samples)
	if len(violations) > 0 {
		t.Errorf("one-owner violations: %v", violations)
	}
	if reassigned > 10*time.Second {
		t.Errorf("reassignment took %v", reassigned)
	}

	after := c.Leader().Membership().View()
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
	got := map[string]*heartbeatpb.WatchAssignmentsResponse{}
	var seen []*heartbeatpb.WatchAssignmentsResponse
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
		if heartbeatpb.Short(ev.GetKind()) == "assigned" && moved[ev.GetResourceId()] {
			if ev.GetPrevOwnerNodeId() != victim.ID() {
				t.Errorf("move event %v: prev owner is not the victim", ev)
			}
			got[ev.GetResourceId()] = ev
		}
	}
	wcancel()
	for id, ev := range got {
		r := owners(after)[id]
		if ev.GetOwnerNodeId() != r.Owner || ev.GetEpoch() != r.Epoch {
			t.Errorf("watch says %s -> %s@%d, state says %s@%d", id, ev.GetOwnerNodeId(), ev.GetEpoch(), r.Owner, r.Epoch)
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
	if ev, err := rs.Recv(); err != nil || heartbeatpb.Short(ev.GetKind()) != "start" {
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
	return victim.ID()
}
