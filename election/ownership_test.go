package election

import (
	"testing"
	"time"
)

// TestOwnershipGrants: a grant extends the lease to its anchor plus the
// length only once the node has applied the grant's revision (a release the
// leader committed before granting must be in the state first); a lease
// never moves back; pending grants are bounded.
func TestOwnershipGrants(t *testing.T) {
	t0 := time.Now()
	const length = 180 * time.Millisecond
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	type step struct {
		grant   *Grant // nil: only read the lease
		applied uint64
		want    time.Time
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"applied grant counts at once", []step{
			{&Grant{Anchor: at(0), Revision: 5}, 5, at(180)},
		}},
		{"grant ahead of the state waits for it", []step{
			{&Grant{Anchor: at(0), Revision: 7}, 6, time.Time{}},
			{nil, 6, time.Time{}},
			{nil, 7, at(180)},
		}},
		{"the older applied grant holds while a newer one waits", []step{
			{&Grant{Anchor: at(0), Revision: 5}, 5, at(180)},
			{&Grant{Anchor: at(50), Revision: 9}, 8, at(180)},
			{nil, 9, at(230)},
		}},
		{"never backwards", []step{
			{&Grant{Anchor: at(50), Revision: 5}, 5, at(230)},
			{&Grant{Anchor: at(0), Revision: 5}, 5, at(230)},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var o ownership
			for i, s := range tc.steps {
				if s.grant != nil {
					o.grant(*s.grant, s.applied, length)
				}
				if got := o.lease(s.applied, length); !got.Equal(s.want) {
					t.Fatalf("step %d: lease until %v, want %v", i, got.Sub(t0), s.want.Sub(t0))
				}
			}
		})
	}
	t.Run("pending bounded", func(t *testing.T) {
		var o ownership
		for i := 0; i < 100; i++ {
			o.grant(Grant{Anchor: at(i), Revision: uint64(100 + i)}, 0, length)
		}
		if len(o.pending) != maxPendingGrants {
			t.Fatalf("%d pending grants, want %d", len(o.pending), maxPendingGrants)
		}
		if got, want := o.lease(1000, length), at(99).Add(length); !got.Equal(want) {
			t.Fatalf("lease until %v, want the newest grant's %v", got.Sub(t0), want.Sub(t0))
		}
	})
}
