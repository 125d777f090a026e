package membership

import (
	"fmt"
	"testing"
	"time"
)

// simGrants plays the transport's grant records for a sim: every peer that
// still answers was granted 10 ms ago; a silent one keeps its last grant.
type simGrants struct{ s *sim }

func (g simGrants) LastGrants() map[string]time.Time {
	g.s.mu.Lock()
	defer g.s.mu.Unlock()
	out := make(map[string]time.Time, len(g.s.reply))
	for addr, at := range g.s.reply {
		out[addr] = at.Add(10 * time.Millisecond)
	}
	return out
}

func (g simGrants) SelfGranted() time.Time { return g.s.now }

// ownershipLeaseViolations runs a leader with OwnershipLease 500 ms (longer
// than detection, so the rule is what holds moves back) through a start, a
// death and a drain, and returns every time a resource got a new owner while
// its previous owner's lease could still hold. grants false plants the
// violation: the reconciler runs without the rule.
func ownershipLeaseViolations(t *testing.T, grants bool) map[string][]string {
	const lease = 500 * time.Millisecond
	s := &sim{t: t, f: newTestFSM(t), now: t0, reply: map[string]time.Time{}, silent: map[string]bool{}}
	s.f.addMembers(5)
	s.f.register(200)
	s.leader.Store(true)
	cfg := DefaultReconcilerConfig()
	cfg.SelfID = "n1"
	cfg.Now = func() time.Time { return s.now }
	if grants {
		cfg.Grants, cfg.OwnershipLease = simGrants{s}, lease
	}
	r, err := NewReconciler(cfg, s.f, s, s, s)
	if err != nil {
		t.Fatal(err)
	}
	s.r = r

	bad := map[string][]string{}
	phase := "start"
	// free[id]: the earliest time id may have a new owner: the last grant of
	// its owner plus the lease once it loses it (an unowned resource keeps
	// the bound of its last owner).
	free := map[string]time.Time{}
	leaderSince := s.now.Add(cfg.Tick)
	prev := s.f.owners()
	lastGrant := func(owner string) time.Time {
		if owner == "n1" {
			return s.now
		}
		return simGrants{s}.LastGrants()[s.f.member(owner).PeerAddr]
	}
	tick := func() {
		// What each owner's lease could reach before this step.
		bound := map[string]time.Time{}
		for id, o := range prev {
			if o != "" {
				bound[id] = lastGrant(o).Add(lease)
			}
		}
		s.tick()
		cur := s.f.owners()
		for id, p := range prev {
			if _, ok := cur[id]; !ok && p != "" {
				free[id] = bound[id] // deleted while owned
			}
		}
		for id, o := range cur {
			p := prev[id]
			if p != "" && o != p {
				free[id] = bound[id]
			}
			if o != "" && o != p {
				limit := free[id]
				if start := leaderSince.Add(lease); limit.Before(start) {
					limit = start
				}
				if s.now.Before(limit) {
					bad[phase] = append(bad[phase], fmt.Sprintf("%s to %s at %v, %v before its previous lease ran out",
						id, o, s.now.Sub(t0), limit.Sub(s.now)))
				}
			}
		}
		prev = cur
	}
	run := func(ticks int, what string, cond func() bool) {
		for i := 0; i < ticks; i++ {
			tick()
			if cond() {
				return
			}
		}
		t.Fatalf("%s: not reached in %d ticks", what, ticks)
	}
	run(40, "initial assignment", func() bool { return s.unowned() == 0 })
	// A death: n3 stops answering (and so gets no grants).
	phase = "death"
	s.mu.Lock()
	s.silent[s.f.member("n3").PeerAddr] = true
	s.mu.Unlock()
	run(100, "n3's resources moved", func() bool { return len(s.f.ownedBy("n3")) == 0 && s.unowned() == 0 })
	// A drain of a live member: its resources are released first.
	phase = "drain"
	s.f.ok(SetDrainCmd("n4", true))
	run(100, "n4 drained", func() bool { return len(s.f.ownedBy("n4")) == 0 && s.unowned() == 0 })
	// A delete of an owned resource and the same id registered again: the
	// old owner may still work on the old one until its lease runs out.
	// n2 is drained first so that the new ones go elsewhere.
	phase = "delete and register again"
	var again []string
	for id, o := range s.f.owners() {
		if o == "n2" && len(again) < 20 {
			again = append(again, id)
		}
	}
	if len(again) == 0 {
		t.Fatal("n2 owns nothing")
	}
	s.f.ok(DeleteCmd(again))
	s.f.ok(SetDrainCmd("n2", true))
	for _, id := range again {
		s.f.ok(RegisterCmd([]ResourceSpec{{ID: id}}))
	}
	run(100, "re-registered resources placed", func() bool { return s.unowned() == 0 && len(s.f.ownedBy("n2")) == 0 })
	if grants && r.Stats().Released == 0 {
		bad[phase] = append(bad[phase], "the drain released nothing")
	}
	return bad
}

// TestReconcilerOwnershipLeaseRule: with grants, no resource gets a new
// owner before its old owner's lease (last grant + OwnershipLease) and this
// leadership's first OwnershipLease have passed — at the start, after a
// death, through a drain. Without the rule (the planted violation) the same
// check fails.
func TestReconcilerOwnershipLeaseRule(t *testing.T) {
	for phase, b := range ownershipLeaseViolations(t, true) {
		t.Errorf("%s: %d early moves, first: %s", phase, len(b), b[0])
	}
	planted := ownershipLeaseViolations(t, false)
	for _, phase := range []string{"start", "death", "drain", "delete and register again"} {
		if b := planted[phase]; len(b) == 0 {
			t.Errorf("%s: planted violation (no ownership-lease rule) not caught", phase)
		} else {
			t.Logf("%s: planted violation caught: %d early moves, e.g. %s", phase, len(b), b[0])
		}
	}
}
