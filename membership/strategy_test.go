package membership

import (
	"fmt"
	"hash/fnv"
	"math"
	"reflect"
	"testing"
)

func bigRounds() PlanConfig { return PlanConfig{MaxMovesPerRound: math.MaxInt32, FairShareSlack: 0.10} }

func TestPlanDeterministic(t *testing.T) {
	build := func() *testFSM {
		f := newTestFSM(t)
		f.addMembers(5)
		f.ok(UpsertMemberCmd(MemberSpec{ID: "heavy", PeerAddr: "ph", Capacity: 300}))
		f.register(5000)
		return f
	}
	a, b := build(), build()
	var p1, p2, p3 PlanResult
	a.Read(func(s *State) { p1 = Plan(s, DefaultPlanConfig()); p2 = Plan(s, DefaultPlanConfig()) })
	b.Read(func(s *State) { p3 = Plan(s, DefaultPlanConfig()) })
	if !reflect.DeepEqual(p1, p2) || !reflect.DeepEqual(p1, p3) {
		t.Fatal("Plan differs between runs or between identically built states")
	}
	if p1.Placed != 5000 || len(p1.Moves) != 5000 {
		t.Fatalf("initial placement: %+v", p1.Placed)
	}
	// A golden digest pins the hash function: changing it would reassign
	// most resources when a cluster upgrades, so it must be deliberate.
	h := fnv.New64a()
	for _, m := range p1.Moves {
		fmt.Fprintf(h, "%s>%s;", m.ResourceID, m.To)
	}
	if got := fmt.Sprintf("%016x", h.Sum64()); got != pinnedPlan {
		t.Fatalf("placement digest changed: %s", got)
	}
}

func TestPlanDeathMovesOnlyDeadMembersResources(t *testing.T) {
	for _, n := range []int{2, 3, 5, 8} {
		t.Run(fmt.Sprintf("%d members", n), func(t *testing.T) {
			f := newTestFSM(t)
			f.addMembers(n)
			f.register(4000)
			f.converge(bigRounds())
			before := f.owners()
			victim := fmt.Sprintf("n%d", (n+1)/2)
			f.ok(MarkDeadCmd(victim))
			p := f.planAndCommit(DefaultPlanConfig()) // failover ignores the round limit
			owned := 0
			for _, o := range before {
				if o == victim {
					owned++
				}
			}
			if len(p.Moves) != owned || p.Placed != owned || p.Rebalanced != 0 {
				t.Fatalf("%d moves (%d placed, %d rebalanced) for %d resources of the dead member", len(p.Moves), p.Placed, p.Rebalanced, owned)
			}
			after := f.owners()
			for id, o := range after {
				if before[id] != victim && o != before[id] {
					t.Fatalf("resource %s moved %s -> %s though its owner lives", id, before[id], o)
				}
				if o == victim {
					t.Fatalf("resource %s still on the dead member", id)
				}
			}
			if extra := f.converge(bigRounds()); extra != 0 {
				t.Fatalf("%d further moves after failover", extra)
			}
			// Back from the dead: it takes its share back and only it gains.
			f.ok(MarkAliveCmd(victim))
			moved := f.converge(bigRounds())
			final := f.owners()
			for id, o := range final {
				if o != after[id] && o != victim {
					t.Fatalf("rejoin moved %s to %s", id, o)
				}
			}
			if moved != owned || !reflect.DeepEqual(final, before) {
				t.Fatalf("rejoin moved %d (want %d); assignment restored: %v", moved, owned, reflect.DeepEqual(final, before))
			}
		})
	}
}

func TestPlanJoinTakesAtMostFairShareRateLimited(t *testing.T) {
	const total = 10000
	for _, n := range []int{3, 5} {
		t.Run(fmt.Sprintf("%d+1 members", n), func(t *testing.T) {
			f := newTestFSM(t)
			f.addMembers(n)
			f.register(total)
			f.converge(bigRounds())
			before := f.owners()
			f.ok(UpsertMemberCmd(MemberSpec{ID: "new", PeerAddr: "pnew"}))
			cfg := PlanConfig{MaxMovesPerRound: 300, FairShareSlack: 0.10}
			moved, rounds := 0, 0
			for {
				p := f.planAndCommit(cfg)
				if len(p.Moves) == 0 {
					break
				}
				rounds++
				if p.Rebalanced > cfg.MaxMovesPerRound || p.Placed != 0 {
					t.Fatalf("round %d: %+v", rounds, p)
				}
				for _, m := range p.Moves {
					if m.To != "new" {
						t.Fatalf("join moved %s to %s", m.ResourceID, m.To)
					}
				}
				moved += len(p.Moves)
			}
			fair := float64(total) / float64(n+1)
			if float64(moved) > fair*1.1 || float64(moved) < fair*0.85 {
				t.Fatalf("newcomer took %d, fair share %.0f", moved, fair)
			}
			if rounds < int(math.Ceil(float64(moved)/300)) {
				t.Fatalf("%d moves in %d rounds: rate limit broken", moved, rounds)
			}
			changed := 0
			for id, o := range f.owners() {
				if o != before[id] {
					changed++
				}
			}
			if changed != moved {
				t.Fatalf("%d resources changed owner, %d moves", changed, moved)
			}
		})
	}
}

func loads(f *testFSM) map[string]float64 {
	out := map[string]float64{}
	f.Read(func(s *State) {
		s.EachResource(func(r Resource) bool { out[r.Owner] += float64(r.Weight); return true })
	})
	return out
}

func TestPlanBalance(t *testing.T) {
	f := newTestFSM(t)
	f.addMembers(5)
	f.register(20000)
	f.converge(bigRounds())
	for m, l := range loads(f) {
		if math.Abs(l-4000)/4000 > 0.05 {
			t.Fatalf("member %s has %v of 20000 (want 4000 ± 5%%)", m, l)
		}
	}
	// Capacity weights the share: "heavy" (capacity 300 vs 100) gets 3/8.
	f.ok(UpsertMemberCmd(MemberSpec{ID: "heavy", PeerAddr: "ph", Capacity: 300}))
	f.converge(PlanConfig{MaxMovesPerRound: math.MaxInt32, FairShareSlack: 0.5})
	l := loads(f)
	if share := l["heavy"] / 20000; math.Abs(share-3.0/8) > 0.03 {
		t.Fatalf("heavy member share %.3f, want 0.375", share)
	}
}

func TestPlanFairShareCapWithHeavyResources(t *testing.T) {
	f := newTestFSM(t)
	f.addMembers(4)
	specs := make([]ResourceSpec, 400)
	for i := range specs {
		specs[i] = ResourceSpec{ID: fmt.Sprintf("w%03d", i), Weight: uint32(1 + (i*37)%1000)}
	}
	f.ok(RegisterCmd(specs))
	f.converge(bigRounds())
	f.ok(UpsertMemberCmd(MemberSpec{ID: "new", PeerAddr: "pnew"}))
	cfg := PlanConfig{MaxMovesPerRound: math.MaxInt32, FairShareSlack: 0}
	f.converge(cfg)
	var total float64
	for _, l := range loads(f) {
		total += l
	}
	if got, fair := loads(f)["new"], total/5; got > fair || got < fair*0.5 {
		t.Fatalf("newcomer load %v, fair share %v (slack 0)", got, fair)
	}
}

func TestPlanSuspectDrainUnhealthy(t *testing.T) {
	f := newTestFSM(t)
	f.addMembers(4)
	f.register(2000)
	f.converge(bigRounds())
	before := f.owners()

	// A suspect keeps its resources: a flap moves nothing, and new resources
	// avoid it.
	f.ok(MarkSuspectCmd("n2"))
	if p := f.planAndCommit(bigRounds()); len(p.Moves) != 0 {
		t.Fatalf("suspect member caused %d moves", len(p.Moves))
	}
	f.ok(RegisterCmd([]ResourceSpec{{ID: "fresh1"}, {ID: "fresh2"}, {ID: "fresh3"}, {ID: "fresh4"}, {ID: "fresh5"}, {ID: "fresh6"}}))
	for _, m := range f.planAndCommit(bigRounds()).Moves {
		if m.To == "n2" {
			t.Fatal("new resource placed on a suspect member")
		}
	}
	f.ok(MarkAliveCmd("n2"))
	f.converge(bigRounds()) // fresh resources may move to n2 now; nothing else
	for id, o := range f.owners() {
		if b, ok := before[id]; ok && b != o {
			t.Fatalf("flap moved %s from %s to %s", id, b, o)
		}
	}

	for _, tc := range []struct {
		name     string
		off, on  any
		affected string
	}{
		{"drain", SetDrainCmd("n3", true), SetDrainCmd("n3", false), "n3"},
		{"unhealthy", SetAppHealthCmd("n1", false), SetAppHealthCmd("n1", true), "n1"},
		{"left and rejoined", MarkLeftCmd("n4"), UpsertMemberCmd(MemberSpec{ID: "n4", PeerAddr: "p4"}), "n4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := f.owners()
			f.ok(tc.off)
			p := f.planAndCommit(PlanConfig{MaxMovesPerRound: 1, FairShareSlack: 0.1})
			for _, m := range p.Moves {
				if m.From != tc.affected {
					t.Fatalf("%s moved %s from %s", tc.name, m.ResourceID, m.From)
				}
			}
			if len(f.ownedBy(tc.affected)) != 0 {
				t.Fatalf("%s still owns resources after one round (handing off is not rate-limited)", tc.affected)
			}
			f.ok(tc.on)
			f.converge(bigRounds())
			if got := f.owners(); !reflect.DeepEqual(got, start) {
				t.Fatalf("%s: assignment not restored after undo", tc.name)
			}
		})
	}
}

func (f *testFSM) ownedBy(id string) []Resource {
	var out []Resource
	f.Read(func(s *State) { out = s.Owned(id) })
	return out
}

func TestPlanNoEligibleMember(t *testing.T) {
	f := newTestFSM(t)
	f.addMembers(2)
	f.register(10)
	f.converge(bigRounds())
	f.ok(MarkDeadCmd("n1"))
	f.ok(SetDrainCmd("n2", true))
	var p PlanResult
	f.Read(func(s *State) { p = Plan(s, DefaultPlanConfig()) })
	if len(p.Moves) != 0 || p.Unplaceable != 10 {
		t.Fatalf("plan with nobody to take work: %+v", p)
	}
	// Resources stay with their (ineligible) owners rather than lose them.
	if err := CheckOneOwner(f.View()); err != nil {
		t.Fatal(err)
	}
}

func TestPlanConfigValidate(t *testing.T) {
	for _, c := range []PlanConfig{{MaxMovesPerRound: -1}, {FairShareSlack: -0.1}, {FairShareSlack: math.NaN()}} {
		if err := c.Validate(); err == nil {
			t.Fatalf("%+v accepted", c)
		}
	}
	if err := DefaultPlanConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

// pinnedPlan is the digest of the initial placement in TestPlanDeterministic.
const pinnedPlan = "36d34fbb3b090ef6"

func TestPlanUnownedMatchesPlan(t *testing.T) {
	f := newTestFSM(t)
	f.addMembers(5)
	f.register(3000)
	f.converge(bigRounds())
	f.ok(MarkDeadCmd("n2"))
	specs := make([]ResourceSpec, 500)
	for i := range specs {
		specs[i] = ResourceSpec{ID: fmt.Sprintf("new-%03d", i)}
	}
	f.ok(RegisterCmd(specs))
	var full, part PlanResult
	f.Read(func(s *State) {
		full, part = Plan(s, DefaultPlanConfig()), PlanUnowned(s, DefaultPlanConfig())
		if s.NumUnowned() != 500 {
			t.Fatalf("%d unowned", s.NumUnowned())
		}
	})
	var want []Move
	for _, m := range full.Moves {
		if m.From == "" {
			want = append(want, m)
		}
	}
	if len(want) != 500 || !reflect.DeepEqual(part.Moves, want) || part.Placed != 500 {
		t.Fatalf("PlanUnowned: %d moves, want the %d unowned moves of Plan", len(part.Moves), len(want))
	}
	if len(full.Moves) <= 500 {
		t.Fatal("full plan should also move the dead member's resources")
	}
}
