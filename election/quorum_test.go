package election_test

import (
	"errors"
	"testing"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
)

// TestQuorumGuard: with one of three voters dead, removing or demoting a
// live voter would leave two voters of which one answers (quorum 2): both
// are refused with ErrQuorumAtRisk and change nothing; removing the dead
// voter leaves two live voters and passes; the cluster still commits.
func TestQuorumGuard(t *testing.T) {
	c := testcluster.StartElections(t, 3, testcluster.ElectionOptions{})
	li := c.WaitLeader(30 * time.Second)
	lead := c.Node(li).Node
	live, dead := c.Node((li+1)%3), c.Node((li+2)%3)
	c.Kill((li + 2) % 3)

	// The guard counts a voter live while it answered within the live
	// window: wait until the dead one has aged out.
	testwait.Eventually(t, 15*time.Second, "the leader to count the killed voter as dead", func() (bool, string) {
		err := lead.CheckRemove(testcluster.ContextWithin(t, 5*time.Second), live.ID)
		return errors.Is(err, election.ErrQuorumAtRisk), "CheckRemove: " + errString(err)
	})

	err := lead.Remove(testcluster.ContextWithin(t, 5*time.Second), live.ID)
	if !errors.Is(err, election.ErrQuorumAtRisk) {
		t.Fatalf("remove a live voter with another voter dead: %v, want ErrQuorumAtRisk", err)
	}
	err = lead.Join(testcluster.ContextWithin(t, 5*time.Second), live.ID, string(live.Addr), false)
	if !errors.Is(err, election.ErrQuorumAtRisk) {
		t.Fatalf("demote a live voter with another voter dead: %v, want ErrQuorumAtRisk", err)
	}
	ms, err := lead.Members()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if !m.Voter {
			t.Fatalf("a refused change changed the configuration: %+v", ms)
		}
	}
	if _, err := lead.Apply(testcluster.ContextWithin(t, 5*time.Second), []byte("after-refusals")); err != nil {
		t.Fatalf("write after the refused changes: %v", err)
	}

	// Removing the dead voter leaves a, b: both answer.
	if err := lead.Remove(testcluster.ContextWithin(t, 10*time.Second), dead.ID); err != nil {
		t.Fatalf("remove the dead voter: %v", err)
	}
	if _, err := lead.Apply(testcluster.ContextWithin(t, 5*time.Second), []byte("after-remove")); err != nil {
		t.Fatalf("write after removing the dead voter: %v", err)
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// TestQuorumGuardNewLeader: a leader elected a moment ago has not heard
// every voter in its term yet; the guard waits up to the live window before
// it refuses. Leadership moves from old to nw while everything nw sends to
// old is delayed by 600ms (heartbeat timeout 1s, so heartbeats still get
// through); nw is asked at once to remove the third voter, which leaves
// {old, nw}: old's first answer in nw's term comes ~600ms later, and the
// removal passes. Without the wait it was refused (old not heard yet).
func TestQuorumGuardNewLeader(t *testing.T) {
	c := testcluster.StartElections(t, 3, testcluster.ElectionOptions{Heartbeat: time.Second})
	li := c.WaitLeader(30 * time.Second)
	old, nw, third := c.Node(li), c.Node((li+1)%3), c.Node((li+2)%3)
	c.Net().Delay(nw.Addr, old.Addr, 600*time.Millisecond)
	if err := transferTo(old.Node, testcluster.ContextWithin(t, 10*time.Second), nw.ID); err != nil {
		t.Fatalf("transfer to %s: %v", nw.ID, err)
	}
	testwait.Eventually(t, 10*time.Second, nw.ID+" to lead", func() (bool, string) {
		l := nw.Node.Leadership()
		return l.State == "leader", l.State
	})
	if err := nw.Node.Remove(testcluster.ContextWithin(t, 10*time.Second), third.ID); err != nil {
		t.Fatalf("remove %s right after %s was elected: %v", third.ID, nw.ID, err)
	}
}
