package membership

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
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
