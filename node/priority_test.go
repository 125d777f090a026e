package node_test

import (
	"testing"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
	"github.com/heartbeat-sidecar/heartbeat/node"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

const testHoldoff = 500 * time.Millisecond

// startPriorityCluster starts voters n1..n3 with a short PriorityHoldoff;
// n3 is configured with leader priority 10.
func startPriorityCluster(t *testing.T) *testcluster.Cluster {
	t.Helper()
	return startCluster(t, 3, 0, testcluster.Options{Tweak: func(cfg *node.Config) {
		cfg.PriorityHoldoff = testHoldoff
		if cfg.ID == "n3" {
			p := uint32(10)
			cfg.LeaderPriority = &p
		}
	}})
}

// holdsLeadership checks, for a few holdoffs, that id keeps leading in the
// same term (a must-not-happen check: it watches for a while by design).
func holdsLeadership(t *testing.T, c *testcluster.Cluster, id string) {
	t.Helper()
	l := c.Leader()
	if l.ID() != id {
		t.Fatalf("leader %s, want %s", l.ID(), id)
	}
	term := l.Status().Term
	until := time.Now().Add(4 * testHoldoff)
	for time.Now().Before(until) {
		if s := l.Status(); !s.IsLeader && s.Leader.ID != id || s.Term != term {
			t.Fatalf("%s lost leadership: %+v (term was %d)", id, s, term)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func counterValue(t *testing.T, n *node.Node) float64 {
	t.Helper()
	mfs, err := n.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "heartbeat_leader_priority_transfers_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("heartbeat_leader_priority_transfers_total is not registered")
	return 0
}

// TestLeaderPriority: the voter configured with a higher priority is handed
// leadership and keeps it; a priority set through the API moves it to
// another voter; an equal priority moves nothing.
func TestLeaderPriority(t *testing.T) {
	c := startPriorityCluster(t)
	c.WaitMembers()
	testwait.Eventually(t, waitTimeout, "n3 (priority 10 by config) leads", func() (bool, string) {
		l := c.Leader()
		return l.ID() == "n3", "leader " + l.ID()
	})
	if m, _ := findMember(c.Node("n1").Membership().View(), "n3"); m.LeaderPriority != 10 {
		t.Errorf("n3's registered priority %d, want 10", m.LeaderPriority)
	}
	holdsLeadership(t, c, "n3")

	// Through a follower's Coordinator: n1 gets 20 and takes over.
	client := heartbeatpb.NewCoordinatorClient(dialClient(t, c.Node("n2").ClientAddr()))
	if _, err := client.SetLeaderPriority(ctxT(t), &heartbeatpb.SetLeaderPriorityRequest{NodeId: "n1", Priority: 20}); err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, waitTimeout, "n1 (priority 20) leads", func() (bool, string) {
		l := c.Leader()
		return l.ID() == "n1", "leader " + l.ID()
	})
	if v := counterValue(t, c.Node("n3")); v < 1 {
		t.Errorf("n3's priority transfer counter %v, want at least 1", v)
	}
	holdsLeadership(t, c, "n1")

	// n2 gets the same priority as the leader: nothing moves.
	if _, err := client.SetLeaderPriority(ctxT(t), &heartbeatpb.SetLeaderPriorityRequest{NodeId: "n2", Priority: 20}); err != nil {
		t.Fatal(err)
	}
	before := counterValue(t, c.Node("n1"))
	holdsLeadership(t, c, "n1")
	if v := counterValue(t, c.Node("n1")); v != before {
		t.Errorf("n1 transferred on an equal priority (%v -> %v)", before, v)
	}
}

// TestLeaderPriorityTakesBack: the preferred voter crashes, another leads;
// when it comes back healthy it takes leadership back by transfer (not by
// disrupting an election: the term grows by exactly one per hand-over).
func TestLeaderPriorityTakesBack(t *testing.T) {
	c := startPriorityCluster(t)
	c.WaitMembers()
	testwait.Eventually(t, waitTimeout, "n3 (priority 10) leads", func() (bool, string) {
		l := c.Leader()
		return l.ID() == "n3", "leader " + l.ID()
	})
	c.Kill("n3")
	interim := c.Leader()
	if interim.ID() == "n3" {
		t.Fatal("the crashed n3 still leads")
	}
	termBefore := interim.Status().Term
	back := c.Restart("n3")
	testwait.Eventually(t, waitTimeout, "n3 leads again after its restart", func() (bool, string) {
		l := c.Leader()
		return l == back, "leader " + l.ID()
	})
	if term := back.Status().Term; term != termBefore+1 {
		t.Errorf("term %d after the hand-back, want %d (one transfer, no disruptive election)", term, termBefore+1)
	}
	if v := counterValue(t, interim); v < 1 {
		t.Errorf("%s's priority transfer counter %v, want at least 1", interim.ID(), v)
	}
	holdsLeadership(t, c, "n3")
}
