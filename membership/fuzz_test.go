package membership

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/heartbeat-sidecar/heartbeat/proto/membershippb"
)

// snapshotSeeds are the seed corpus of FuzzRestore: real snapshots of a
// small populated state and of an empty one, and a few hand-made frames
// (a header alone, a frame length past the end, a huge frame length).
func snapshotSeeds(f *testing.F) [][]byte {
	f.Helper()
	full := newTestFSM(f)
	full.addMembers(3)
	full.ok(RegisterCmd([]ResourceSpec{{ID: "a", Weight: 2}, {ID: "b", Labels: map[string]string{"zone": "x"}}, {ID: "c"}}))
	full.converge(DefaultPlanConfig())
	full.ok(MarkSuspectCmd("n2"))
	full.ok(SetDrainCmd("n3", true))
	empty := newTestFSM(f)
	hdr, err := proto.Marshal(&pb.SnapshotFrame{Frame: &pb.SnapshotFrame_Header{Header: &pb.SnapshotHeader{Version: snapshotVersion, Revision: 7}}})
	if err != nil {
		f.Fatal(err)
	}
	headerOnly := binary.AppendUvarint(nil, uint64(len(hdr)))
	headerOnly = append(headerOnly, hdr...)
	return [][]byte{
		snapshotBytes(f, full.FSM),
		snapshotBytes(f, empty.FSM),
		headerOnly,
		binary.AppendUvarint(nil, 10),
		binary.AppendUvarint(nil, maxSnapshotFrame+1),
		{},
	}
}

// FuzzRestore feeds arbitrary bytes to the FSM's snapshot reader (raft's
// Restore: a snapshot from disk or from the leader's InstallSnapshot).
// Properties: no panic; a refused snapshot is an ErrInvalidSnapshot and
// leaves the FSM as it was (same revision, same bytes on the next
// Snapshot); an accepted one passes the state's invariant check and its own
// snapshot restores to the same bytes again (the encoding is
// deterministic, so a reader that accepts something the writer would not
// write differently shows up as a mismatch).
func FuzzRestore(f *testing.F) {
	for _, s := range snapshotSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fsm := newTestFSM(t)
		fsm.addMembers(2)
		fsm.ok(RegisterCmd([]ResourceSpec{{ID: "before"}}))
		before, beforeRev := snapshotBytes(t, fsm.FSM), fsm.Revision()

		err := fsm.Restore(io.NopCloser(bytes.NewReader(b)))
		if err != nil {
			if !errors.Is(err, ErrInvalidSnapshot) {
				t.Fatalf("refused with an error that is not ErrInvalidSnapshot: %v", err)
			}
			if got := fsm.Revision(); got != beforeRev {
				t.Fatalf("refused snapshot moved the revision %d -> %d", beforeRev, got)
			}
			if after := snapshotBytes(t, fsm.FSM); !bytes.Equal(after, before) {
				t.Fatalf("refused snapshot changed the state (%d bytes before, %d after)", len(before), len(after))
			}
			return
		}
		fsm.check()
		again := snapshotBytes(t, fsm.FSM)
		second := newTestFSM(t)
		if err := second.Restore(io.NopCloser(bytes.NewReader(again))); err != nil {
			t.Fatalf("the snapshot of an accepted snapshot is refused: %v", err)
		}
		if third := snapshotBytes(t, second.FSM); !bytes.Equal(third, again) {
			t.Fatalf("snapshot round trip not stable: %d bytes, then %d", len(again), len(third))
		}
		if second.Revision() != fsm.Revision() {
			t.Fatalf("revision after round trip: %d, want %d", second.Revision(), fsm.Revision())
		}
	})
}
