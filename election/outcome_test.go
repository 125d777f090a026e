package election_test

import (
	"errors"
	"testing"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/internal/retry"
	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
)

// TestLeadershipLostOutcomeUnknown: a leader whose followers' replies are
// lost (a one-way partition) appends an entry, sends it to them, cannot
// commit it and steps down; the next leader, which has the entry, commits
// it. Apply must not answer "not the leader", which tells callers that
// nothing was done and sends them to the new leader: a write retried there
// is applied twice (the chaos suite's reads-and-writes check saw a
// registration come back after another client deleted it). It answers
// ErrLeadershipLost, not retryable, and the entry is applied once.
func TestLeadershipLostOutcomeUnknown(t *testing.T) {
	c := testcluster.StartElections(t, 3, testcluster.ElectionOptions{FastFailover: true})
	li := c.WaitLeader(15 * time.Second)
	lead := c.Node(li)
	if _, err := lead.Node.Apply(testcluster.ContextWithin(t, 5*time.Second), []byte("before")); err != nil {
		t.Fatalf("apply before the fault: %v", err)
	}
	waitApplied(t, c, []string{"before"})

	// The leader's requests reach the followers; their replies are lost.
	for i := 0; i < c.Len(); i++ {
		if i != li {
			c.Net().Cut(c.Node(i).Addr, lead.Addr)
		}
	}
	_, err := lead.Node.Apply(testcluster.ContextWithin(t, 10*time.Second), []byte("in-doubt"))
	switch {
	case err == nil:
		t.Fatalf("apply committed with every reply to the leader lost")
	case errors.Is(err, election.ErrNotLeader):
		t.Fatalf("deposed leader answered %v: a caller takes that as 'nothing done' and applies the write again", err)
	case !errors.Is(err, election.ErrLeadershipLost):
		t.Fatalf("apply: %v, want ErrLeadershipLost", err)
	case retry.Retryable(err):
		t.Fatalf("%v is retryable", err)
	}
	t.Logf("deposed leader %s answered: %v", lead.ID, err)

	// The entry reached the followers: the next leader commits it, once.
	c.Net().HealAll()
	waitApplied(t, c, []string{"before", "in-doubt"})
}
