package election

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
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
	c := newCluster(t, 3, clusterOpts{tweak: func(cfg *Config) { cfg.CanLead = canLead }})
	li := c.waitLeader(15 * time.Second)
	lead := c.nodes[li].node
	a, b := c.nodes[(li+1)%3].id, c.nodes[(li+2)%3].id
	gone := fmt.Errorf("%w: dead", ErrMemberGone)

	for _, tc := range []struct {
		name    string
		verdict map[string]error
		target  string
		want    error
	}{
		{"unknown to both records", nil, "nobody", ErrUnknownMember},
		{"unfit (draining)", map[string]error{a: errors.New("draining")}, a, ErrCannotLead},
		{"gone (dead)", map[string]error{a: gone}, a, ErrCannotLead},
		{"step down with every other voter gone", map[string]error{a: gone, b: gone}, "", ErrNoOtherVoter},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set(tc.verdict)
			if _, err := lead.TransferLeadership(ctxFor(t, 5*time.Second), tc.target); !errors.Is(err, tc.want) {
				t.Fatalf("TransferLeadership(%q) = %v, want %v", tc.target, err, tc.want)
			}
			if !lead.Leadership().IsLeader {
				t.Fatal("a refused transfer moved leadership")
			}
		})
	}
	set(nil)

	// A follower checks a target the same way (before it forwards).
	if err := c.nodes[(li+1)%3].node.CheckTransferTarget("nobody"); !errors.Is(err, ErrUnknownMember) {
		t.Errorf("follower's check of an unknown target: %v", err)
	}
	// The leader itself is a valid target: nothing to do.
	if l, err := lead.TransferLeadership(ctxFor(t, 5*time.Second), lead.Leadership().LeaderID); err != nil || l.LeaderID != c.nodes[li].id {
		t.Errorf("transfer to the leader itself: %+v %v", l, err)
	}
	// One at a time: while one runs, another is refused.
	lead.transferOne.Store(true)
	_, err := lead.TransferLeadership(ctxFor(t, 5*time.Second), a)
	lead.transferOne.Store(false)
	if !errors.Is(err, ErrTransferInProgress) {
		t.Errorf("second transfer while one runs: %v, want ErrTransferInProgress", err)
	}
	// A fit target is handed leadership, and the answer names it.
	l, err := lead.TransferLeadership(ctxFor(t, 15*time.Second), a)
	if err != nil || l.LeaderID != a {
		t.Fatalf("transfer to %s: %+v %v", a, l, err)
	}
}
