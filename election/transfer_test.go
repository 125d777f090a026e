package election_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
)

// TestTransferLeadershipChecks: the checks of the one transfer entry point,
// with a CanLead verdict per member as the membership state would give it.
// Every refused call leaves the leader in place; the last one hands over.
func TestTransferLeadershipChecks(t *testing.T) {
	var mu sync.Mutex
	verdict := map[string]error{} // id -> CanLead's answer; absent: fit
	canLead := func(id string) error {
		mu.Lock()
		defer mu.Unlock()
		return verdict[id]
	}
	set := func(v map[string]error) {
		mu.Lock()
		defer mu.Unlock()
		verdict = v
	}
	c := testcluster.StartElections(t, 3, testcluster.ElectionOptions{Tweak: func(cfg *election.Config) { cfg.CanLead = canLead }})
	li := c.WaitLeader(15 * time.Second)
	lead := c.Node(li).Node
	a, b := c.Node((li+1)%3).ID, c.Node((li+2)%3).ID
	gone := fmt.Errorf("%w: dead", election.ErrMemberGone)

	for _, tc := range []struct {
		name    string
		verdict map[string]error
		target  string
		want    error
	}{
		{"unknown to both records", nil, "nobody", election.ErrUnknownMember},
		{"unfit (draining)", map[string]error{a: errors.New("draining")}, a, election.ErrCannotLead},
		{"gone (dead)", map[string]error{a: gone}, a, election.ErrCannotLead},
		{"step down with every other voter gone", map[string]error{a: gone, b: gone}, "", election.ErrNoOtherVoter},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set(tc.verdict)
			if _, err := lead.TransferLeadership(testcluster.ContextWithin(t, 5*time.Second), tc.target); !errors.Is(err, tc.want) {
				t.Fatalf("TransferLeadership(%q) = %v, want %v", tc.target, err, tc.want)
			}
			if !lead.Leadership().IsLeader {
				t.Fatal("a refused transfer moved leadership")
			}
		})
	}
	set(nil)

	// A follower checks a target the same way (before it forwards).
	if err := c.Node((li + 1) % 3).Node.CheckTransferTarget("nobody"); !errors.Is(err, election.ErrUnknownMember) {
		t.Errorf("follower's check of an unknown target: %v", err)
	}
	// The leader itself is a valid target: nothing to do.
	if l, err := lead.TransferLeadership(testcluster.ContextWithin(t, 5*time.Second), lead.Leadership().LeaderID); err != nil || l.LeaderID != c.Node(li).ID {
		t.Errorf("transfer to the leader itself: %+v %v", l, err)
	}
	// One at a time: while one runs, another is refused.
	election.SetTransferRunning(lead, true)
	_, err := lead.TransferLeadership(testcluster.ContextWithin(t, 5*time.Second), a)
	election.SetTransferRunning(lead, false)
	if !errors.Is(err, election.ErrTransferInProgress) {
		t.Errorf("second transfer while one runs: %v, want election.ErrTransferInProgress", err)
	}
	// A fit target is handed leadership, and the answer names it.
	l, err := lead.TransferLeadership(testcluster.ContextWithin(t, 15*time.Second), a)
	if err != nil || l.LeaderID != a {
		t.Fatalf("transfer to %s: %+v %v", a, l, err)
	}
}
