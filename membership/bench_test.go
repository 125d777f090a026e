package membership

import (
	"bytes"
	"fmt"
	"io"
	"testing"
)

// Run briefly: go test -run '^$' -bench . -benchtime 5x ./membership/

func BenchmarkPlanAfterDeath(b *testing.B) {
	for _, n := range []int{10000, 100000} {
		b.Run(fmt.Sprintf("resources=%d", n), func(b *testing.B) {
			f := newTestFSM(b)
			f.addMembers(5)
			f.register(n)
			f.converge(bigRounds())
			f.ok(MarkDeadCmd("n3"))
			var p PlanResult
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				f.Read(func(s *State) { p = Plan(s, DefaultPlanConfig()) })
			}
			b.StopTimer()
			b.ReportMetric(float64(len(p.Moves)), "moves")
			b.ReportMetric(float64(len(f.ownedBy("n3"))), "dead-owned")
		})
	}
}

func BenchmarkPlanUnowned(b *testing.B) {
	// 10,000 new resources registered into a cluster holding 100,000: the
	// reconciler's incremental plan.
	f := newTestFSM(b)
	f.addMembers(5)
	f.register(100000)
	f.converge(bigRounds())
	specs := make([]ResourceSpec, MaxBatch)
	for i := range specs {
		specs[i] = ResourceSpec{ID: fmt.Sprintf("new-%06d", i)}
	}
	f.ok(RegisterCmd(specs))
	var p PlanResult
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f.Read(func(s *State) { p = PlanUnowned(s, DefaultPlanConfig()) })
	}
	b.ReportMetric(float64(len(p.Moves)), "moves")
}

func BenchmarkApplyAssignAfterDeath(b *testing.B) {
	// Committing the failover of a dead member's ~2,000 resources (of 10,000).
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		f := newTestFSM(b)
		f.addMembers(5)
		f.register(10000)
		f.converge(bigRounds())
		f.ok(MarkDeadCmd("n3"))
		var p PlanResult
		f.Read(func(s *State) { p = Plan(s, DefaultPlanConfig()) })
		data := MustEncode(AssignCmd(p.Moves))
		b.StartTimer()
		f.apply(data)
	}
}

func BenchmarkApplyRegister10k(b *testing.B) {
	specs := make([]ResourceSpec, MaxBatch)
	for i := range specs {
		specs[i] = ResourceSpec{ID: fmt.Sprintf("resource-%06d", i), Weight: 1}
	}
	data := MustEncode(RegisterCmd(specs))
	b.SetBytes(int64(len(data)))
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		f := newTestFSM(b)
		b.StartTimer()
		if _, ok := f.apply(data).(*Result); !ok {
			b.Fatal("rejected")
		}
	}
	b.ReportMetric(float64(MaxBatch)*float64(b.N)/b.Elapsed().Seconds(), "resources/s")
}

func BenchmarkSnapshot100k(b *testing.B) {
	f := newTestFSM(b)
	f.addMembers(5)
	f.register(100000)
	f.converge(bigRounds())
	var size int
	b.Run("persist", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			snap, err := f.Snapshot()
			if err != nil {
				b.Fatal(err)
			}
			sink := &memSink{}
			if err := snap.Persist(sink); err != nil {
				b.Fatal(err)
			}
			snap.Release()
			size = sink.Len()
		}
		b.ReportMetric(float64(size), "bytes")
	})
	b.Run("capture", func(b *testing.B) { // the part Apply waits for
		for i := 0; i < b.N; i++ {
			snap, _ := f.Snapshot()
			snap.Release()
		}
	})
	data := snapshotBytes(b, f.FSM)
	b.Run("restore", func(b *testing.B) {
		g := newTestFSM(b)
		for i := 0; i < b.N; i++ {
			if err := g.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
				b.Fatal(err)
			}
		}
	})
}
