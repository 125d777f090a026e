package node

import (
	"fmt"
	"maps"
	"testing"

	"github.com/hashicorp/raft"
)

// ownedOf returns what node n's own state says n owns (id -> epoch) and the
// state's revision.
func ownedOf(n *Node) (map[string]uint64, uint64) {
	v := n.Membership().View()
	out := map[string]uint64{}
	for _, r := range v.Resources {
		if r.Owner == n.ID() {
			out[r.ID] = r.Epoch
		}
	}
	return out, v.Revision
}

// drainSSE hands every message already received on s to f, without
// waiting; false once the stream ended.
func drainSSE(s *sseClient, f func(sseMsg)) bool {
	for {
		select {
		case m, ok := <-s.msgs:
			if !ok {
				return false
			}
			f(m)
		default:
			return true
		}
	}
}

// TestHTTPLeases: the HTTP faces of the leases on a 3-node cluster.
//   - GET /v1/lease answers what a KeepAlive answer says: the leader's
//     lease and token on the leader only, the ownership lease and the owned
//     set (with epochs, at the answer's revision) on every node.
//   - GET /v1/leader and the leader watch carry lease_remaining_ms on the
//     leader only, and the leader's watch sends renewals.
//   - A watch of a follower's own assignments sends "lease" events with the
//     ownership lease, from which (with the assignment events) a client
//     follows its owned set; a watch of another node's assignments carries
//     no lease.
//   - Cut off from its peers, the follower's lease goes to 0 on both faces.
func TestHTTPLeases(t *testing.T) {
	c, fnet := startFaultCluster(t, 3)
	leader := c.leader()
	c.waitMembers()
	f := c.follower()
	other := c.follower(f.ID())
	lbase, fbase := "http://"+leader.HTTPAddr(), "http://"+f.HTTPAddr()
	leaseMs := max(leader.Election().LeaseDuration(), leader.Election().OwnershipLeaseDuration()).Milliseconds()
	inLease := func(ms int64) bool { return ms > 0 && ms <= leaseMs }

	// Watches opened before any resource exists.
	mine := openSSE(t, fbase+"/v1/watch/assignments?node="+f.ID(), nil)
	theirs := openSSE(t, fbase+"/v1/watch/assignments?node="+other.ID(), nil)
	var start AssignmentEvent
	if m := mine.next(); m.event != "start" {
		t.Fatalf("first event of the own watch: %+v", m)
	} else {
		m.decode(t, &start)
	}
	if m := theirs.next(); m.event != "start" {
		t.Fatalf("first event of the other node's watch: %+v", m)
	}
	// Lease events from the start (a node just started may hold no lease
	// yet: 0), soon with a lease.
	if m := mine.next(); m.event != "lease" {
		t.Fatalf("second event of the own watch %+v, want a lease event", m)
	}
	var le LeaseEvent
	mine.until("a lease event with a lease", func(m sseMsg) bool {
		if m.event != "lease" {
			t.Fatalf("event %+v before any resource exists", m)
		}
		m.decode(t, &le)
		return le.LeaseRemainingMs > 0
	})
	if !inLease(le.LeaseRemainingMs) || le.Revision < start.Revision {
		t.Fatalf("lease event %+v, want a lease in (0, %d] ms at revision >= %d", le, leaseMs, start.Revision)
	}

	t.Run("assignments watch", func(t *testing.T) {
		registerN(t, leader, "l", 12)
		owned := map[string]uint64{}
		var leases, renewingEvents int
		var lastLease LeaseEvent
		waitFor(t, "the own watch to follow the node's owned set, with leases", func() (bool, string) {
			open := drainSSE(mine, func(m sseMsg) {
				if m.comment != "" {
					return
				}
				switch m.event {
				case "lease":
					var e LeaseEvent
					m.decode(t, &e)
					if e.Revision < lastLease.Revision || e.LeaseRemainingMs < 0 || e.LeaseRemainingMs > leaseMs {
						t.Errorf("lease event %+v after %+v", e, lastLease)
					}
					if e.LeaseRemainingMs > 0 {
						leases++
					} else {
						t.Logf("lease event without a lease while healthy: %+v", e)
					}
					lastLease = e
				case "assigned":
					var e AssignmentEvent
					m.decode(t, &e)
					if e.Owner == f.ID() {
						owned[e.ResourceID] = e.Epoch
					} else if e.PrevOwner == f.ID() {
						delete(owned, e.ResourceID)
					} else {
						t.Errorf("event of another node on a filtered watch: %+v", e)
					}
					if e.LeaseRemainingMs > 0 {
						renewingEvents++
					}
				default:
					t.Errorf("unexpected event on a filtered watch: %+v", m)
				}
			})
			if !open {
				return false, "stream ended"
			}
			want, rev := ownedOf(f)
			switch {
			case len(want) == 0:
				return false, f.ID() + " owns nothing yet"
			case lastLease.Revision < rev:
				return false, fmt.Sprintf("last lease event at revision %d, node at %d", lastLease.Revision, rev)
			case !maps.Equal(owned, want):
				return false, fmt.Sprintf("followed %v, node owns %v", owned, want)
			case leases < 5:
				return false, fmt.Sprintf("%d lease events with a lease so far", leases)
			}
			return true, ""
		})
		if renewingEvents == 0 {
			t.Errorf("no assignment event carried lease_remaining_ms")
		}
		t.Logf("%d lease events with a lease, %d assignment events with one; the last lease event: %+v", leases, renewingEvents, lastLease)
		drainSSE(theirs, func(m sseMsg) {
			if m.event == "lease" {
				t.Errorf("a watch of %s on %s carries %s's lease: %+v", other.ID(), f.ID(), f.ID(), m)
			}
		})
	})

	t.Run("GET /v1/lease", func(t *testing.T) {
		var l Lease
		waitFor(t, "GET /v1/lease on the follower at its current revision", func() (bool, string) {
			code, body := httpDo(t, "GET", fbase+"/v1/lease")
			decodeOK(t, "GET /v1/lease", code, body, &l)
			want, rev := ownedOf(f)
			got := map[string]uint64{}
			for _, o := range l.Owned {
				got[o.ID] = o.Epoch
			}
			return l.Revision == rev && maps.Equal(got, want) && len(got) > 0, fmt.Sprintf("%s; node owns %v at %d", body, want, rev)
		})
		if l.NodeID != f.ID() || l.IsLeader || l.FencingToken != 0 || l.LeaderLeaseRemainingMs != 0 || !inLease(l.OwnershipLeaseRemainingMs) {
			t.Errorf("GET /v1/lease on follower %s: %+v", f.ID(), l)
		}
		code, body := httpDo(t, "GET", lbase+"/v1/lease")
		decodeOK(t, "GET /v1/lease on the leader", code, body, &l)
		if l.NodeID != leader.ID() || !l.IsLeader || l.FencingToken != leader.Status().FencingToken ||
			!inLease(l.LeaderLeaseRemainingMs) || !inLease(l.OwnershipLeaseRemainingMs) || l.Owned == nil {
			t.Errorf("GET /v1/lease on the leader: %s", body)
		}
		if code, body := httpDo(t, "POST", lbase+"/v1/lease"); code != 405 {
			t.Errorf("POST /v1/lease: %d %s", code, body)
		}
	})

	t.Run("leader", func(t *testing.T) {
		var li LeaderInfo
		code, body := httpDo(t, "GET", lbase+"/v1/leader")
		decodeOK(t, "GET /v1/leader on the leader", code, body, &li)
		if !li.IsSelf || !inLease(li.LeaseRemainingMs) {
			t.Errorf("GET /v1/leader on the leader: %s", body)
		}
		code, body = httpDo(t, "GET", fbase+"/v1/leader")
		decodeOK(t, "GET /v1/leader on a follower", code, body, &li)
		if li.IsSelf || li.LeaseRemainingMs != 0 || li.Leader.ID != leader.ID() {
			t.Errorf("GET /v1/leader on a follower: %s", body)
		}

		lw := openSSE(t, lbase+"/v1/watch/leader", nil)
		fw := openSSE(t, fbase+"/v1/watch/leader", nil)
		lw.next().decode(t, &li)
		token := li.FencingToken
		if !li.IsSelf || !inLease(li.LeaseRemainingMs) {
			t.Fatalf("first event of the leader's watch: %+v", li)
		}
		fw.next().decode(t, &li)
		if li.IsSelf || li.LeaseRemainingMs != 0 {
			t.Fatalf("first event of a follower's watch: %+v", li)
		}
		renewals := 0
		for renewals < 10 {
			lw.next().decode(t, &li)
			if !li.IsSelf || li.FencingToken != token || li.LeaseRemainingMs < 0 || li.LeaseRemainingMs > leaseMs {
				t.Fatalf("renewal %d of the leader's watch: %+v (token %d)", renewals, li, token)
			}
			if li.LeaseRemainingMs > 0 {
				renewals++
			}
		}
		drainSSE(fw, func(m sseMsg) {
			if m.comment == "" {
				t.Errorf("the follower's leader watch sent %+v while the leader's sent renewals", m)
			}
		})
	})

	t.Run("cut off", func(t *testing.T) {
		if !drainSSE(mine, func(sseMsg) {}) { // events of before the cut
			t.Fatal("the own watch ended")
		}
		fnet.Isolate(raft.ServerAddress(f.PeerAddr()))
		defer fnet.Heal(raft.ServerAddress(f.PeerAddr()))
		mine.until("a lease event with no lease left", func(m sseMsg) bool {
			var e LeaseEvent
			if m.event == "lease" {
				m.decode(t, &e)
			}
			return m.event == "lease" && e.LeaseRemainingMs == 0
		})
		waitFor(t, "GET /v1/lease on the cut-off follower without an ownership lease", func() (bool, string) {
			var l Lease
			code, body := httpDo(t, "GET", fbase+"/v1/lease")
			decodeOK(t, "GET /v1/lease on the cut-off follower", code, body, &l)
			return l.OwnershipLeaseRemainingMs == 0 && !l.IsLeader && len(l.Owned) > 0, body
		})
		// It stays without one while cut off (a lease event every 50 ms).
		for i := 0; i < 5; i++ {
			var e LeaseEvent
			mine.until("a lease event", func(m sseMsg) bool { return m.event == "lease" }).decode(t, &e)
			if e.LeaseRemainingMs != 0 {
				t.Fatalf("lease event %+v on a cut-off follower, after one with no lease", e)
			}
		}
	})
}
