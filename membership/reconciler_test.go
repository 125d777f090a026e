package membership

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var errFakeNotLeader = errors.New("fake: not leader")

// sim is a leader's world without raft: a fake clock, a fake lease, a fake
// transport's reply times, and an Applier that applies to a real FSM.
type sim struct {
	t      *testing.T
	f      *testFSM
	now    time.Time
	leader atomic.Bool
	mu     sync.Mutex
	reply  map[string]time.Time // peer address -> last reply
	silent map[string]bool      // peers that stopped answering
	r      *Reconciler
	ticks  int

	isLeaderCalls atomic.Int64 // how often the reconciler asked
}

func (s *sim) Apply(_ context.Context, b []byte) (any, error) {
	if !s.leader.Load() {
		return nil, errFakeNotLeader
	}
	return s.f.apply(b), nil
}

func (s *sim) IsLeader() bool {
	s.isLeaderCalls.Add(1)
	return s.leader.Load()
}

func (s *sim) LastReplies() map[string]time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]time.Time, len(s.reply))
	for k, v := range s.reply {
		out[k] = v
	}
	return out
}

// newSim builds members n1..nN (self n1) and `resources` resources.
func newSim(t *testing.T, members, resources int, self string) *sim {
	s := &sim{t: t, f: newTestFSM(t), now: t0, reply: map[string]time.Time{}, silent: map[string]bool{}}
	s.f.addMembers(members)
	s.f.register(resources)
	s.leader.Store(true)
	cfg := DefaultReconcilerConfig()
	cfg.SelfID = self
	cfg.Now = func() time.Time { return s.now }
	r, err := NewReconciler(cfg, s.f, s, s, s)
	if err != nil {
		t.Fatal(err)
	}
	s.r = r
	return s
}

// tick advances the clock one reconciler tick; live peers have answered
// within the last 20 ms (a deterministic jitter); then one Step runs and the
// invariants are checked.
func (s *sim) tick() {
	s.t.Helper()
	s.now = s.now.Add(s.r.cfg.Tick)
	s.ticks++
	s.mu.Lock()
	var members []Member
	s.f.Read(func(st *State) { members = st.Members() })
	for i, m := range members {
		if !s.silent[m.PeerAddr] {
			s.reply[m.PeerAddr] = s.now.Add(-time.Duration((s.ticks*7+i*3)%20) * time.Millisecond)
		}
	}
	s.mu.Unlock()
	if err := s.r.Step(context.Background()); err != nil && !errors.Is(err, errFakeNotLeader) && !errors.Is(err, errLostLeadership) {
		s.t.Fatalf("step: %v", err)
	}
	s.f.check()
}

func (s *sim) state(id string) MemberState { return s.f.member(id).State }

// until ticks until cond holds or maxTicks pass; returns the ticks taken.
func (s *sim) until(maxTicks int, what string, cond func() bool) int {
	s.t.Helper()
	for i := 1; i <= maxTicks; i++ {
		s.tick()
		if cond() {
			return i
		}
	}
	s.t.Fatalf("%s: not reached in %d ticks", what, maxTicks)
	return 0
}

func (s *sim) unowned() int {
	n := 0
	for _, o := range s.f.owners() {
		if o == "" {
			n++
		}
	}
	return n
}

func TestReconcilerDeathMovesOnlyTheDeadMembersResources(t *testing.T) {
	s := newSim(t, 5, 10000, "n1")
	s.until(3, "initial assignment", func() bool { return s.unowned() == 0 })
	for i := 0; i < 20; i++ { // steady state: nothing happens
		s.tick()
	}
	before := s.f.owners()
	revBefore := s.f.Revision()
	if got := s.r.Stats(); got.MarkedSuspect+got.MarkedDead != 0 {
		t.Fatalf("healthy cluster marked members: %+v", got)
	}

	// Kill n3: its replies stop.
	s.silent["p3"] = true
	lastReply := s.reply["p3"]
	s.until(20, "n3 dead", func() bool {
		for _, id := range []string{"n1", "n2", "n4", "n5"} {
			if st := s.state(id); st != StateAlive {
				t.Fatalf("%s became %s", id, st)
			}
		}
		return s.state("n3") == StateDead
	})
	detect := s.now.Sub(lastReply)
	t.Logf("n3 declared dead %v after its last reply", detect)
	cfg := DefaultDetectorConfig()
	if detect < cfg.MinDeadTimeout || detect > cfg.MinDeadTimeout+3*s.r.cfg.Tick {
		t.Fatalf("declared dead %v after its last reply, want %v..%v", detect, cfg.MinDeadTimeout, cfg.MinDeadTimeout+3*s.r.cfg.Tick)
	}
	// The same step committed the reassignment.
	after := s.f.owners()
	moved := 0
	for id, o := range after {
		if o == "n3" {
			t.Fatalf("%s still on dead n3", id)
		}
		if o != before[id] {
			if before[id] != "n3" {
				t.Fatalf("%s moved %s -> %s though its owner lives", id, before[id], o)
			}
			moved++
			if e := epochOf(s.f, id); e <= revBefore {
				t.Fatalf("moved resource %s kept epoch %d", id, e)
			}
		}
	}
	if moved == 0 || moved < 1500 {
		t.Fatalf("moved %d resources of n3", moved)
	}
	for i := 0; i < 20; i++ {
		s.tick()
	}
	if st := s.r.Stats(); st.Moves != uint64(10000+moved) || st.MarkedDead != 1 || st.Rejected != 0 || st.Skipped != 0 {
		t.Fatalf("stats %+v, want %d moves", st, 10000+moved)
	}

	// n3 comes back: marked alive, takes its fair share back, rate-limited.
	delete(s.silent, "p3")
	s.until(3, "n3 alive", func() bool { return s.state("n3") == StateAlive })
	maxPerRound := s.r.cfg.Plan.MaxMovesPerRound
	prevMoves := s.r.Stats().Moves
	s.until(40, "n3 back to its share", func() bool {
		m := s.r.Stats().Moves
		if m-prevMoves > uint64(maxPerRound) {
			t.Fatalf("%d moves in one tick, limit %d", m-prevMoves, maxPerRound)
		}
		prevMoves = m
		return len(s.f.ownedBy("n3")) == moved
	})
	for id, o := range s.f.owners() {
		if o != before[id] {
			t.Fatalf("after the comeback %s is on %s, was %s", id, o, before[id])
		}
	}
}

func TestReconcilerFlapShorterThanDetectionMovesNothing(t *testing.T) {
	s := newSim(t, 5, 3000, "n1")
	s.until(3, "initial assignment", func() bool { return s.unowned() == 0 })
	for i := 0; i < 10; i++ {
		s.tick()
	}
	before, movesBefore := s.f.owners(), s.r.Stats().Moves
	for _, silence := range []int{3, 5} { // 150 ms and 250 ms of silence, both under MinDeadTimeout
		s.silent["p2"] = true
		for i := 0; i < silence; i++ {
			s.tick()
			if s.state("n2") == StateDead {
				t.Fatalf("n2 declared dead after %d silent ticks", i+1)
			}
		}
		delete(s.silent, "p2")
		s.until(3, "n2 alive again", func() bool { return s.state("n2") == StateAlive })
		for i := 0; i < 10; i++ {
			s.tick()
		}
	}
	st := s.r.Stats()
	if st.Moves != movesBefore || st.MarkedDead != 0 {
		t.Fatalf("flap caused moves or deaths: %+v", st)
	}
	if st.MarkedSuspect == 0 || st.MarkedAlive != st.MarkedSuspect {
		t.Fatalf("the 250 ms silence should make n2 suspect, then alive: %+v", st)
	}
	if fmt.Sprint(s.f.owners()) != fmt.Sprint(before) {
		t.Fatal("assignment changed during a flap")
	}
}

func TestReconcilerNonLeaderDoesNothing(t *testing.T) {
	s := newSim(t, 3, 100, "n1")
	s.leader.Store(false)
	s.silent["p2"] = true
	rev := s.f.Revision()
	for i := 0; i < 40; i++ {
		s.tick()
	}
	if s.f.Revision() != rev || s.r.Stats().Ticks != 0 || s.unowned() != 100 {
		t.Fatalf("non-leader acted: revision %d -> %d, stats %+v", rev, s.f.Revision(), s.r.Stats())
	}
	// On gaining leadership the clock starts now: the long-silent n2 is not
	// dead before MinDeadTimeout of this leadership has passed.
	s.leader.Store(true)
	start := s.now.Add(s.r.cfg.Tick)
	s.until(20, "n2 dead", func() bool { return s.state("n2") == StateDead })
	if d := s.now.Sub(start); d < DefaultDetectorConfig().MinDeadTimeout {
		t.Fatalf("n2 declared dead %v into the leadership", d)
	}
	if s.unowned() != 0 || len(s.f.ownedBy("n2")) != 0 {
		t.Fatal("resources not placed on live members")
	}
	// Losing the lease mid-way: nothing more is committed.
	s.leader.Store(false)
	rev = s.f.Revision()
	s.silent["p3"] = true
	for i := 0; i < 20; i++ {
		s.tick()
	}
	if s.f.Revision() != rev {
		t.Fatal("reconciler committed after losing the lease")
	}
	// Leading again: the dead, still silent n2 is not resurrected by the
	// fresh detector (only a reply after the leadership began revives it).
	s.leader.Store(true)
	for i := 0; i < 20; i++ {
		s.tick()
		if st := s.state("n2"); st != StateDead {
			t.Fatalf("silent dead n2 became %s under the new leadership", st)
		}
	}
	delete(s.silent, "p2")
	s.until(3, "n2 revived by a reply", func() bool { return s.state("n2") == StateAlive })
}

func TestReconcilerSelfAndStall(t *testing.T) {
	s := newSim(t, 3, 50, "n2")
	// A previous leader declared this node (n2) dead; it leads now.
	s.f.ok(MarkDeadCmd("n2"))
	s.until(2, "self alive", func() bool { return s.state("n2") == StateAlive })
	s.until(2, "assigned", func() bool { return s.unowned() == 0 })
	// This node stalls for 2 s (its own GC pause, SIGSTOP): nobody's replies
	// were recorded meanwhile, yet nobody is declared dead.
	s.now = s.now.Add(2 * time.Second)
	if err := s.r.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		s.tick()
	}
	if st := s.r.Stats(); st.Stalls != 1 || st.MarkedDead != 0 || st.MarkedSuspect != 0 {
		t.Fatalf("stall: %+v", st)
	}
	// A member this leader declared dead stays dead across a stall: the
	// forgiven gap is not a reply.
	s.silent["p3"] = true
	s.until(20, "n3 dead", func() bool { return s.state("n3") == StateDead })
	for i := 0; i < 3; i++ {
		s.tick()
	}
	s.now = s.now.Add(2 * time.Second)
	for i := 0; i < 10; i++ {
		s.tick()
		if st := s.state("n3"); st != StateDead {
			t.Fatalf("silent dead n3 became %s after a stall", st)
		}
	}
	if st := s.r.Stats(); st.Stalls != 2 {
		t.Fatalf("stalls: %+v", st)
	}
}

func TestReconcilerDrainAndLeave(t *testing.T) {
	s := newSim(t, 4, 2000, "n1")
	s.until(3, "assigned", func() bool { return s.unowned() == 0 })
	before := s.f.owners()
	// A planned stop: drain, wait until it owns nothing, then leave.
	s.f.ok(SetDrainCmd("n4", true))
	s.until(2, "n4 drained", func() bool { return len(s.f.ownedBy("n4")) == 0 })
	for id, o := range s.f.owners() {
		if o != before[id] && before[id] != "n4" {
			t.Fatalf("drain moved %s from %s", id, before[id])
		}
		if o == "" {
			t.Fatalf("%s unowned during the drain", id)
		}
	}
	s.f.ok(MarkLeftCmd("n4"))
	s.silent["p4"] = true
	for i := 0; i < 20; i++ {
		s.tick()
	}
	if st := s.state("n4"); st != StateLeft {
		t.Fatalf("left member became %s", st)
	}
}

func TestReconcilerRun(t *testing.T) {
	s := newSim(t, 3, 10, "n1")
	s.r.now = time.Now // Run uses the real ticker
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.r.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for s.r.Stats().Ticks < 3 || s.f.Revision() < 7 {
		if time.Now().After(deadline) {
			t.Fatalf("Run did not step: %+v", s.r.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if s.unowned() != 0 {
		t.Fatal("Run did not assign")
	}
}

// TestRunGated: while the node does not lead, RunGated sleeps until the
// leadership changes (it asks at most a couple of times in six ticks'
// time, where Run would ask every tick); leading, it steps every tick;
// with the change channel closed it falls back to ticking.
func TestRunGated(t *testing.T) {
	s := newSim(t, 3, 10, "n1")
	s.r.now = time.Now
	s.leader.Store(false)
	changes := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- RunGated(ctx, s.r, changes) }()
	tick := s.r.cfg.Tick

	// Not leading: a must-not-happen check over six ticks.
	time.Sleep(6 * tick)
	if n := s.isLeaderCalls.Load(); n > 3 {
		t.Errorf("not leading, the reconciler asked %d times in 6 ticks: it polls", n)
	}
	if st := s.r.Stats(); st.Ticks != 0 {
		t.Errorf("not leading, it stepped as leader: %+v", st)
	}

	// Leading: it steps every tick and assigns.
	s.leader.Store(true)
	changes <- struct{}{}
	deadline := time.Now().Add(10 * time.Second)
	for s.r.Stats().Ticks < 3 || s.unowned() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("leading, RunGated did not step: %+v", s.r.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}

	// Not leading again: the steps stop.
	s.leader.Store(false)
	changes <- struct{}{}
	deadline = time.Now().Add(10 * time.Second)
	for {
		before := s.isLeaderCalls.Load()
		time.Sleep(6 * tick)
		if s.isLeaderCalls.Load()-before <= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("after losing leadership RunGated kept polling")
		}
	}

	// Leading again, untold (the change was never published): the re-check
	// finds it within a second or so.
	s.leader.Store(true)
	before := s.r.Stats().Ticks
	deadline = time.Now().Add(10 * time.Second)
	for s.r.Stats().Ticks < before+3 {
		if time.Now().After(deadline) {
			t.Fatalf("leading again without being told, RunGated never re-checked: %+v", s.r.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.leader.Store(false)
	changes <- struct{}{}

	// Closed channel: back to ticking (it asks every tick again).
	close(changes)
	deadline = time.Now().Add(10 * time.Second)
	for before := s.isLeaderCalls.Load(); s.isLeaderCalls.Load()-before < 5; {
		if time.Now().After(deadline) {
			t.Fatal("with the change channel closed RunGated does not tick")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("RunGated did not return after cancel")
	}
}

func TestReconcilerConfigValidate(t *testing.T) {
	cfg := DefaultReconcilerConfig()
	if err := cfg.Validate(); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("missing SelfID accepted: %v", err)
	}
	cfg.SelfID = "n1"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg.MaxTickGap = cfg.Tick / 2
	if err := cfg.Validate(); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("MaxTickGap < Tick accepted: %v", err)
	}
	if _, err := NewReconciler(DefaultReconcilerConfig(), nil, nil, nil, nil); err == nil {
		t.Fatal("nil dependencies accepted")
	}
}

func TestCheckOneOwnerCatchesPlantedViolations(t *testing.T) {
	f := newTestFSM(t)
	f.addMembers(2)
	f.register(3)
	f.converge(bigRounds())
	good := f.View()
	if err := CheckOneOwner(good); err != nil {
		t.Fatal(err)
	}
	plant := func(fn func(v *View)) View {
		v := f.View()
		fn(&v)
		return v
	}
	bad := map[string]View{
		"two owners": plant(func(v *View) {
			dup := v.Resources[0]
			dup.Owner = map[string]string{"n1": "n2", "n2": "n1"}[dup.Owner]
			v.Resources = append(v.Resources, dup)
		}),
		"unknown owner":         plant(func(v *View) { v.Resources[1].Owner = "ghost" }),
		"owner without epoch":   plant(func(v *View) { v.Resources[2].Epoch = 0 }),
		"epoch from the future": plant(func(v *View) { v.Resources[2].Epoch = v.Revision + 1 }),
	}
	for name, v := range bad {
		if err := CheckOneOwner(v); err == nil {
			t.Fatalf("%s: not caught", name)
		}
	}
	// The in-memory index check catches a resource listed under two owners.
	f.Read(func(s *State) {
		var r Resource
		s.EachResource(func(x Resource) bool { r = x; return false })
		other := map[string]string{"n1": "n2", "n2": "n1"}[r.Owner]
		if s.owned[other] == nil {
			s.owned[other] = map[string]struct{}{}
		}
		s.owned[other][r.ID] = struct{}{}
		if err := s.Check(); err == nil {
			t.Fatal("planted double ownership in the index not caught")
		}
		delete(s.owned[other], r.ID)
		if err := s.Check(); err != nil {
			t.Fatalf("after removing the plant: %v", err)
		}
	})
}

func TestReconcilerMemberJoiningMidLeadership(t *testing.T) {
	s := newSim(t, 3, 300, "n1")
	for i := 0; i < 20; i++ { // a long-standing leadership
		s.tick()
	}
	// n4 joins but never answers: it gets MinDeadTimeout from when the
	// leader first saw it, not from the start of the leadership.
	s.silent["p4"] = true
	s.f.ok(UpsertMemberCmd(MemberSpec{ID: "n4", PeerAddr: "p4"}))
	joined := s.now
	s.until(20, "silent newcomer dead", func() bool { return s.state("n4") == StateDead })
	if d := s.now.Sub(joined); d < DefaultDetectorConfig().MinDeadTimeout {
		t.Fatalf("newcomer declared dead %v after joining", d)
	}
	// n5 joins and answers: it stays alive and takes about a quarter of
	// the resources (n4 is dead).
	s.f.ok(UpsertMemberCmd(MemberSpec{ID: "n5", PeerAddr: "p5"}))
	for i := 0; i < 20; i++ {
		s.tick()
	}
	if st, n := s.state("n5"), len(s.f.ownedBy("n5")); st != StateAlive || n < 50 || n > 100 {
		t.Fatalf("answering newcomer: %s owning %d of 300", st, n)
	}
}

func TestCommit(t *testing.T) {
	s := newSim(t, 1, 0, "n1")
	ctx := context.Background()
	res, err := Commit(ctx, s, RegisterCmd([]ResourceSpec{{ID: "a"}}))
	if err != nil || res.Changed != 1 || res.Revision != s.f.idx {
		t.Fatalf("accepted: %+v %v", res, err)
	}
	_, err = Commit(ctx, s, MarkDeadCmd("ghost"))
	var rej *RejectedError
	if !errors.As(err, &rej) || !errors.Is(err, ErrUnknownMember) {
		t.Fatalf("rejected: %v", err)
	}
	rev := s.f.Revision()
	if _, err := Commit(ctx, s, DeleteCmd(nil)); !errors.Is(err, ErrInvalidCommand) || s.f.Revision() != rev {
		t.Fatalf("invalid: %v (revision %d -> %d)", err, rev, s.f.Revision())
	}
	s.leader.Store(false)
	if _, err := Commit(ctx, s, MarkAliveCmd("n1")); !errors.Is(err, errFakeNotLeader) || errors.As(err, &rej) {
		t.Fatalf("applier error: %v", err)
	}
}

func TestReconcilerPlansIncrementallyAndRetries(t *testing.T) {
	s := newSim(t, 4, 1000, "n1")
	s.until(3, "assigned", func() bool { return s.unowned() == 0 })
	for i := 0; i < 5; i++ {
		s.tick()
	}
	full := s.r.Stats().FullPlans
	// New resources in steady state are placed without a full plan.
	for batch := 0; batch < 5; batch++ {
		specs := make([]ResourceSpec, 100)
		for i := range specs {
			specs[i] = ResourceSpec{ID: fmt.Sprintf("b%d-%03d", batch, i)}
		}
		s.f.ok(RegisterCmd(specs))
		s.tick()
		if s.unowned() != 0 {
			t.Fatalf("batch %d not placed in one tick", batch)
		}
	}
	if got := s.r.Stats().FullPlans; got != full {
		t.Fatalf("%d full plans for new resources only", got-full)
	}
	// A member change plans everything.
	s.f.ok(SetDrainCmd("n2", true))
	s.tick()
	if got := s.r.Stats().FullPlans; got != full+1 || len(s.f.ownedBy("n2")) != 0 {
		t.Fatalf("drain: full plans %d, n2 owns %d", got-full, len(s.f.ownedBy("n2")))
	}
	// A failed commit is retried on the next tick.
	s.f.ok(RegisterCmd([]ResourceSpec{{ID: "retry-me"}}))
	s.leader.Store(false)                                // the Applier refuses...
	s.r.leader = LeaderFunc(func() bool { return true }) // ...while the lease still looks valid
	s.tick()
	if s.r.Stats().Errors == 0 || ownerOf(s.f, "retry-me") != "" {
		t.Fatal("commit should have failed")
	}
	s.leader.Store(true)
	s.tick()
	if ownerOf(s.f, "retry-me") == "" {
		t.Fatal("failed assignment not retried")
	}
}
