package membership

import (
	"fmt"
	"testing"

	"go.uber.org/goleak"

	pb "github.com/heartbeat-sidecar/heartbeat/proto/membershippb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testFSM wraps an FSM with a raft-like index counter.
type testFSM struct {
	*FSM
	t      testing.TB
	idx    uint64
	checks int
}

func newTestFSM(t testing.TB) *testFSM {
	t.Helper()
	f, err := NewFSM(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	return &testFSM{FSM: f, t: t}
}

// apply commits cmd at the next index and returns the FSM's answer.
func (f *testFSM) apply(cmd any) any {
	f.t.Helper()
	f.idx++
	var data []byte
	switch c := cmd.(type) {
	case []byte:
		data = c
	default:
		b, err := EncodeCommand(asCmd(c))
		if err != nil {
			f.t.Fatalf("encode: %v", err)
		}
		data = b
	}
	return f.ApplyCommand(f.idx, data)
}

// ok applies cmd and fails the test unless it was accepted.
func (f *testFSM) ok(cmd any) *Result {
	f.t.Helper()
	out := f.apply(cmd)
	res, isRes := out.(*Result)
	if !isRes {
		f.t.Fatalf("apply at %d: want *Result, got %v", f.idx, out)
	}
	f.check()
	return res
}

// rejected applies cmd and returns the error it was rejected with.
func (f *testFSM) rejected(cmd any) error {
	f.t.Helper()
	out := f.apply(cmd)
	err, isErr := out.(error)
	if !isErr {
		f.t.Fatalf("apply at %d: want rejection, got %#v", f.idx, out)
	}
	f.check()
	return err
}

// check asserts the internal invariants and S3 after every change.
func (f *testFSM) check() {
	f.t.Helper()
	var err error
	var n int
	f.Read(func(s *State) { err, n = s.Check(), s.NumResources() })
	if err != nil {
		f.t.Fatalf("state check: %v", err)
	}
	f.checks++
	// The sorted View costs O(n log n): on large states check it on a sample.
	if n <= 3000 || f.checks%16 == 0 {
		if err := CheckOneOwner(f.View()); err != nil {
			f.t.Fatalf("CheckOneOwner: %v", err)
		}
	}
}

// addMembers adds members n1..nN with peer addresses p1..pN.
func (f *testFSM) addMembers(n int) {
	f.t.Helper()
	for i := 1; i <= n; i++ {
		f.ok(UpsertMemberCmd(MemberSpec{ID: fmt.Sprintf("n%d", i), PeerAddr: fmt.Sprintf("p%d", i), Voter: i <= 3}))
	}
}

// register registers resources r00000.. in batches of MaxBatch.
func (f *testFSM) register(n int) {
	f.t.Helper()
	for start := 0; start < n; start += MaxBatch {
		specs := make([]ResourceSpec, 0, MaxBatch)
		for i := start; i < min(start+MaxBatch, n); i++ {
			specs = append(specs, ResourceSpec{ID: fmt.Sprintf("r%06d", i), Weight: 1})
		}
		f.ok(RegisterCmd(specs))
	}
}

// plan runs Plan and commits all its moves (ignoring the round limit: callers
// loop until no move is left when they want convergence).
func (f *testFSM) planAndCommit(cfg PlanConfig) PlanResult {
	f.t.Helper()
	var p PlanResult
	f.Read(func(s *State) { p = Plan(s, cfg) })
	for i := 0; i < len(p.Moves); i += MaxBatch {
		res := f.ok(AssignCmd(p.Moves[i:min(i+MaxBatch, len(p.Moves))]))
		if res.Skipped != 0 {
			f.t.Fatalf("fresh plan had %d skipped moves", res.Skipped)
		}
	}
	return p
}

// converge plans and commits until a plan has no moves; returns total moves.
func (f *testFSM) converge(cfg PlanConfig) int {
	f.t.Helper()
	total := 0
	for round := 0; round < 1000; round++ {
		p := f.planAndCommit(cfg)
		if len(p.Moves) == 0 {
			return total
		}
		total += len(p.Moves)
	}
	f.t.Fatal("no convergence in 1000 rounds")
	return 0
}

// owners returns resource id -> owner.
func (f *testFSM) owners() map[string]string {
	out := make(map[string]string)
	f.Read(func(s *State) {
		s.EachResource(func(r Resource) bool { out[r.ID] = r.Owner; return true })
	})
	return out
}

func asCmd(c any) *pb.Command { return c.(*pb.Command) }
