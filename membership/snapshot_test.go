package membership

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/heartbeat-sidecar/heartbeat/proto/membershippb"
)

// memSink is an in-memory raft.SnapshotSink.
type memSink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Close() error  { s.closed = true; return nil }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }

func snapshotBytes(t testing.TB, f *FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	if !sink.closed || sink.cancelled {
		t.Fatalf("sink closed=%v cancelled=%v", sink.closed, sink.cancelled)
	}
	return sink.Bytes()
}

// richState builds a state with every kind of member and resource field set.
func richState(t *testing.T, resources int) *testFSM {
	f := newTestFSM(t)
	f.addMembers(5)
	f.ok(UpsertMemberCmd(MemberSpec{ID: "big", PeerAddr: "pb", ClientAddr: "c", HTTPAddr: "h", Capacity: 700}))
	f.register(resources)
	f.ok(RegisterCmd([]ResourceSpec{{ID: "labelled", Weight: 42, Labels: map[string]string{"zone": "a", "app": "db"}}}))
	f.converge(DefaultPlanConfig())
	f.ok(MarkDeadCmd("n2"))
	f.ok(MarkSuspectCmd("n3"))
	f.ok(SetDrainCmd("n4", true))
	f.ok(SetAppHealthCmd("n5", false))
	f.ok(SetLeaderPriorityCmd("n1", 70))
	f.ok(SetLeaderPriorityCmd("big", MaxLeaderPriority))
	f.ok(MarkLeftCmd("big"))
	return f
}

func TestSnapshotRestoreByteForByte(t *testing.T) {
	f := richState(t, 3000)
	b1 := snapshotBytes(t, f.FSM)
	if b2 := snapshotBytes(t, f.FSM); !bytes.Equal(b1, b2) {
		t.Fatal("two snapshots of the same state differ")
	}
	g := newTestFSM(t)
	g.addMembers(1) // prior state that Restore must discard
	if err := g.Restore(io.NopCloser(bytes.NewReader(b1))); err != nil {
		t.Fatal(err)
	}
	if b3 := snapshotBytes(t, g.FSM); !bytes.Equal(b1, b3) {
		t.Fatalf("re-snapshot after restore differs (%d vs %d bytes)", len(b1), len(b3))
	}
	v1, v2 := f.View(), g.View()
	if fmt.Sprint(v1) != fmt.Sprint(v2) {
		t.Fatal("restored view differs")
	}
	if p1, p2 := g.member("n1").LeaderPriority, g.member("big").LeaderPriority; p1 != 70 || p2 != MaxLeaderPriority {
		t.Fatalf("restored leader priorities %d, %d; want 70, %d", p1, p2, MaxLeaderPriority)
	}
	g.check()
	// The feed restarts at the snapshot: older readers must re-list.
	if _, err := g.Changes(v1.Revision-1, 10); !errors.Is(err, ErrCompacted) {
		t.Fatalf("Changes before snapshot: %v", err)
	}
	if evs, err := g.Changes(v1.Revision, 10); err != nil || len(evs) != 0 {
		t.Fatalf("Changes at snapshot: %v %v", evs, err)
	}
	// The restored FSM keeps applying from the snapshot's index.
	g.idx = v1.Revision
	var r Resource
	g.Read(func(s *State) {
		s.EachResource(func(x Resource) bool { r = x; return x.Owner == "n1" })
	})
	if r.Owner == "n1" {
		t.Fatal("every resource on n1: the fixture is wrong")
	}
	res := g.ok(AssignCmd([]Move{{ResourceID: r.ID, From: r.Owner, FromEpoch: r.Epoch, To: "n1"}}))
	if res.Changed != 1 || ownerOf(g, r.ID) != "n1" || epochOf(g, r.ID) != v1.Revision+1 {
		t.Fatalf("move after restore: %+v", res)
	}
}

func ownerOf(f *testFSM, id string) string {
	var r Resource
	f.Read(func(s *State) { r, _ = s.Resource(id) })
	return r.Owner
}

func epochOf(f *testFSM, id string) uint64 {
	var r Resource
	f.Read(func(s *State) { r, _ = s.Resource(id) })
	return r.Epoch
}

// frames splits a snapshot into its decoded frames.
func frames(t *testing.T, b []byte) []*pb.SnapshotFrame {
	t.Helper()
	var out []*pb.SnapshotFrame
	for len(b) > 0 {
		n, k := binary.Uvarint(b)
		fr := &pb.SnapshotFrame{}
		if err := proto.Unmarshal(b[k:k+int(n)], fr); err != nil {
			t.Fatal(err)
		}
		out = append(out, fr)
		b = b[k+int(n):]
	}
	return out
}

func encodeFrames(t *testing.T, frs []*pb.SnapshotFrame) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, fr := range frs {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(fr)
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(binary.AppendUvarint(nil, uint64(len(b))))
		buf.Write(b)
	}
	return buf.Bytes()
}

func TestRestoreRejectsCorruptSnapshots(t *testing.T) {
	f := richState(t, 2500)
	good := snapshotBytes(t, f.FSM)
	if n := len(frames(t, good)); n != 5 { // header, 3 batches of <=1024, end
		t.Fatalf("%d frames", n)
	}
	mutate := func(fn func(frs []*pb.SnapshotFrame) []*pb.SnapshotFrame) []byte {
		return encodeFrames(t, fn(frames(t, good)))
	}
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"truncated", good[:len(good)-3]},
		{"no end frame", mutate(func(f []*pb.SnapshotFrame) []*pb.SnapshotFrame { return f[:len(f)-1] })},
		{"missing batch", mutate(func(f []*pb.SnapshotFrame) []*pb.SnapshotFrame { return append(f[:1], f[2:]...) })},
		{"batches swapped", mutate(func(f []*pb.SnapshotFrame) []*pb.SnapshotFrame { f[1], f[2] = f[2], f[1]; return f })},
		{"header not first", mutate(func(f []*pb.SnapshotFrame) []*pb.SnapshotFrame { return f[1:] })},
		{"unknown version", mutate(func(f []*pb.SnapshotFrame) []*pb.SnapshotFrame { f[0].GetHeader().Version = 9; return f })},
		{"unknown owner", mutate(func(f []*pb.SnapshotFrame) []*pb.SnapshotFrame {
			f[1].GetResources().Resources[0].Owner = "ghost"
			return f
		})},
		{"epoch without owner", mutate(func(f []*pb.SnapshotFrame) []*pb.SnapshotFrame {
			r := f[1].GetResources().Resources[0]
			r.Owner, r.Epoch = "", 3
			return f
		})},
		{"epoch beyond revision", mutate(func(f []*pb.SnapshotFrame) []*pb.SnapshotFrame {
			f[1].GetResources().Resources[0].Epoch = 1 << 40
			return f
		})},
		{"bad member state", mutate(func(f []*pb.SnapshotFrame) []*pb.SnapshotFrame {
			f[0].GetHeader().Members[0].State = 7
			return f
		})},
		{"leader priority out of range", mutate(func(f []*pb.SnapshotFrame) []*pb.SnapshotFrame {
			f[0].GetHeader().Members[0].LeaderPriority = MaxLeaderPriority + 1
			return f
		})},
		{"zero weight", mutate(func(f []*pb.SnapshotFrame) []*pb.SnapshotFrame {
			f[1].GetResources().Resources[0].Weight = 0
			return f
		})},
		{"huge frame length", append(binary.AppendUvarint(nil, 1<<40), 1, 2, 3)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := richState(t, 10)
			before := snapshotBytes(t, g.FSM)
			err := g.Restore(io.NopCloser(bytes.NewReader(tc.b)))
			if !errors.Is(err, ErrInvalidSnapshot) {
				t.Fatalf("want ErrInvalidSnapshot, got %v", err)
			}
			if after := snapshotBytes(t, g.FSM); !bytes.Equal(before, after) {
				t.Fatal("failed restore changed the state")
			}
		})
	}
}

// TestReplicasConverge: replicas that apply the same log — one of them from a
// snapshot taken half-way — answer every command alike and end with
// byte-identical snapshots, although their in-memory layouts differ.
func TestReplicasConverge(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	a, b := newTestFSM(t), newTestFSM(t)
	var restored []*testFSM // replicas started from a snapshot at steps 100, 200, 300...
	var log [][]byte
	emit := func(cmd *pb.Command) {
		data := MustEncode(cmd)
		log = append(log, data)
		ra, rb := a.apply(data), b.apply(data)
		if fmt.Sprint(ra) != fmt.Sprint(rb) {
			t.Fatalf("entry %d: replicas answered %v and %v", len(log), ra, rb)
		}
		for i, c := range restored {
			if rc := c.apply(data); fmt.Sprint(rc) != fmt.Sprint(ra) {
				t.Fatalf("entry %d: replica %d (restored) answered %v, others %v", len(log), i, rc, ra)
			}
		}
	}
	member := func() string { return fmt.Sprintf("n%d", 1+rng.IntN(6)) }
	for step := 0; step < 700; step++ {
		if step > 0 && step%100 == 0 {
			c := newTestFSM(t)
			if err := c.Restore(io.NopCloser(bytes.NewReader(snapshotBytes(t, a.FSM)))); err != nil {
				t.Fatal(err)
			}
			c.idx = a.idx
			restored = append(restored, c)
		}
		switch k := rng.IntN(10); {
		case k < 2:
			id := member()
			emit(UpsertMemberCmd(MemberSpec{ID: id, PeerAddr: "addr-" + id, Capacity: uint32(rng.IntN(3)) * 100}))
		case k < 4:
			specs := make([]ResourceSpec, 1+rng.IntN(200))
			for i := range specs {
				specs[i] = ResourceSpec{ID: fmt.Sprintf("r%04d", rng.IntN(3000)), Weight: uint32(rng.IntN(5))}
			}
			emit(RegisterCmd(dedupe(specs)))
		case k < 5:
			ids := map[string]bool{}
			for i := 0; i < 1+rng.IntN(50); i++ {
				ids[fmt.Sprintf("r%04d", rng.IntN(3000))] = true
			}
			var list []string
			for id := range ids {
				list = append(list, id)
			}
			emit(DeleteCmd(list))
		case k < 7:
			id := member()
			emit([]*pb.Command{MarkSuspectCmd(id), MarkDeadCmd(id), MarkAliveCmd(id), MarkLeftCmd(id),
				SetDrainCmd(id, rng.IntN(2) == 0), SetAppHealthCmd(id, rng.IntN(3) > 0), RemoveMemberCmd(id),
				SetLeaderPriorityCmd(id, uint32(rng.IntN(MaxLeaderPriority+1)))}[rng.IntN(8)])
		default: // the leader's plan, as the reconciler would commit it
			var p PlanResult
			a.Read(func(s *State) { p = Plan(s, PlanConfig{MaxMovesPerRound: 100, FairShareSlack: 0.1}) })
			if len(p.Moves) > 0 {
				emit(AssignCmd(p.Moves))
			}
		}
	}
	sa := snapshotBytes(t, a.FSM)
	for i, c := range append([]*testFSM{b}, restored...) {
		if !bytes.Equal(sa, snapshotBytes(t, c.FSM)) {
			t.Fatalf("replica %d diverged", i)
		}
	}
	if v := a.View(); len(v.Resources) < 500 || len(v.Members) < 3 || a.idx < 300 {
		t.Fatalf("weak history: %d resources, %d members, %d entries", len(v.Resources), len(v.Members), a.idx)
	}
}

func dedupe(specs []ResourceSpec) []ResourceSpec {
	seen := map[string]bool{}
	out := specs[:0]
	for _, s := range specs {
		if !seen[s.ID] {
			seen[s.ID] = true
			out = append(out, s)
		}
	}
	return out
}
