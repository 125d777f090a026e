package gateway_test

import (
	"fmt"
	"maps"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
	"github.com/heartbeat-sidecar/heartbeat/node"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// ownedOf returns what node n's own state says n owns (id -> epoch) and the
// state's revision.
func ownedOf(n *node.Node) (map[string]uint64, uint64) {
	v := n.Membership().View()
	out := map[string]uint64{}
	for _, r := range v.Resources {
		if r.Owner == n.ID() {
			out[r.ID] = r.Epoch
		}
	}
	return out, v.Revision
}

// TestHTTPLeases: the HTTP faces of the leases on a 3-node cluster.
//   - GET /v1/lease (GetLease) answers what a KeepAlive answer says: the
//     leader's lease and token on the leader only, the ownership lease and
//     the owned set (with epochs, at the answer's revision) on every node.
//   - GET /v1/leader and the leader watch carry lease_remaining on the
//     leader only, and the leader's watch sends renewals.
//   - Cut off from its peers, the follower's ownership lease goes to 0.
func TestHTTPLeases(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{FaultNet: true})
	leader := c.Leader()
	f := c.Followers()[0]
	lbase, fbase := "http://"+leader.HTTPAddr(), "http://"+f.HTTPAddr()
	lease := max(leader.Election().LeaseDuration(), leader.Election().OwnershipLeaseDuration())
	inLease := func(d *durationpb.Duration) bool { return d.AsDuration() > 0 && d.AsDuration() <= lease }
	register(t, lbase, "l", 12)

	t.Run("GET /v1/lease", func(t *testing.T) {
		var l heartbeatpb.GetLeaseResponse
		testwait.Eventually(t, testcluster.DefaultWait, "GET /v1/lease on the follower at its current revision", func() (bool, string) {
			r := do(t, "GET", fbase+"/v1/lease", "")
			r.ok(t, "GET /v1/lease", &l)
			want, rev := ownedOf(f)
			got := map[string]uint64{}
			for _, o := range l.GetLease().GetOwned() {
				got[o.GetId()] = o.GetEpoch()
			}
			return l.GetLease().GetRevision() == rev && maps.Equal(got, want) && len(got) > 0, fmt.Sprintf("%s; node owns %v at %d", r.body, want, rev)
		})
		if x := l.GetLease(); x.GetNodeId() != f.ID() || x.GetIsLeader() || x.GetFencingToken() != 0 ||
			x.GetLeaderLeaseRemaining().AsDuration() != 0 || !inLease(x.GetOwnershipLeaseRemaining()) {
			t.Errorf("GET /v1/lease on follower %s: %v", f.ID(), &l)
		}
		do(t, "GET", lbase+"/v1/lease", "").ok(t, "GET /v1/lease on the leader", &l)
		if x := l.GetLease(); x.GetNodeId() != leader.ID() || !x.GetIsLeader() || x.GetFencingToken() != leader.Status().FencingToken ||
			!inLease(x.GetLeaderLeaseRemaining()) || !inLease(x.GetOwnershipLeaseRemaining()) {
			t.Errorf("GET /v1/lease on the leader: %v", &l)
		}
		if r := do(t, "POST", lbase+"/v1/lease", ""); r.code != 405 {
			t.Errorf("POST /v1/lease: %d %s", r.code, r.body)
		}
	})

	t.Run("leader", func(t *testing.T) {
		var g heartbeatpb.GetLeaderResponse
		do(t, "GET", lbase+"/v1/leader", "").ok(t, "GET /v1/leader on the leader", &g)
		if !g.GetLeadership().GetIsLeader() || !inLease(g.GetLeadership().GetLeaseRemaining()) {
			t.Errorf("GET /v1/leader on the leader: %v", &g)
		}
		do(t, "GET", fbase+"/v1/leader", "").ok(t, "GET /v1/leader on a follower", &g)
		if l := g.GetLeadership(); l.GetIsLeader() || l.GetLeaseRemaining().AsDuration() != 0 || l.GetLeader().GetNodeId() != leader.ID() {
			t.Errorf("GET /v1/leader on a follower: %v", &g)
		}

		lw := openSSE(t, lbase+"/v1/watch/leader", nil)
		fw := openSSE(t, fbase+"/v1/watch/leader", nil)
		var ev heartbeatpb.WatchLeaderResponse
		lw.next().decode(t, &ev)
		token := ev.GetLeadership().GetFencingToken()
		if !ev.GetLeadership().GetIsLeader() || !inLease(ev.GetLeadership().GetLeaseRemaining()) {
			t.Fatalf("first event of the leader's watch: %v", &ev)
		}
		fw.next().decode(t, &ev)
		if ev.GetLeadership().GetIsLeader() || ev.GetLeadership().GetLeaseRemaining().AsDuration() != 0 {
			t.Fatalf("first event of a follower's watch: %v", &ev)
		}
		for renewals := 0; renewals < 10; {
			lw.next().decode(t, &ev)
			l := ev.GetLeadership()
			if !l.GetIsLeader() || l.GetFencingToken() != token || l.GetLeaseRemaining().AsDuration() < 0 || l.GetLeaseRemaining().AsDuration() > lease {
				t.Fatalf("renewal %d of the leader's watch: %v (token %d)", renewals, &ev, token)
			}
			if l.GetLeaseRemaining().AsDuration() > 0 {
				renewals++
			}
		}
		for {
			m, ok := fw.poll()
			if !ok {
				break
			}
			if m.comment == "" {
				t.Errorf("the follower's leader watch sent %+v while the leader's sent renewals", m)
			}
		}
	})

	t.Run("cut off", func(t *testing.T) {
		c.Isolate(f.ID())
		defer c.Heal(f.ID())
		testwait.Eventually(t, testcluster.DefaultWait, "GET /v1/lease on the cut-off follower without an ownership lease", func() (bool, string) {
			var l heartbeatpb.GetLeaseResponse
			r := do(t, "GET", fbase+"/v1/lease", "")
			r.ok(t, "GET /v1/lease on the cut-off follower", &l)
			x := l.GetLease()
			return x.GetOwnershipLeaseRemaining().AsDuration() == 0 && !x.GetIsLeader() && len(x.GetOwned()) > 0, r.body
		})
		// It stays without one while cut off: five polls 50 ms apart.
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < 5; i++ {
			<-tick.C
			var l heartbeatpb.GetLeaseResponse
			do(t, "GET", fbase+"/v1/lease", "").ok(t, "GET /v1/lease on the cut-off follower", &l)
			if d := l.GetLease().GetOwnershipLeaseRemaining().AsDuration(); d != 0 {
				t.Fatalf("GET /v1/lease on a cut-off follower: %v left, after none", d)
			}
		}
	})
}
