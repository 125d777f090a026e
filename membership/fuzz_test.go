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
	valid := snapshotBytes(f, full.FSM)
	return [][]byte{
		valid,
		corruptSnapshot(f, valid, func(h *pb.SnapshotHeader, rs []*pb.Resource) { rs[0].Owner = "ghost" }),
		corruptSnapshot(f, valid, func(h *pb.SnapshotHeader, rs []*pb.Resource) { rs[0], rs[1] = rs[1], rs[0] }),
		corruptSnapshot(f, valid, func(h *pb.SnapshotHeader, rs []*pb.Resource) { rs[1].Id = rs[0].Id }),
		corruptSnapshot(f, valid, func(h *pb.SnapshotHeader, rs []*pb.Resource) { h.Members[1].Id = h.Members[0].Id }),
		corruptSnapshot(f, valid, func(h *pb.SnapshotHeader, rs []*pb.Resource) { rs[2].Owner, rs[2].Epoch = "", 5 }),
		corruptSnapshot(f, valid, func(h *pb.SnapshotHeader, rs []*pb.Resource) { h.Members[0].State = 9 }),
		corruptSnapshot(f, valid, func(h *pb.SnapshotHeader, rs []*pb.Resource) { rs[1].Weight = 0 }),
		snapshotBytes(f, empty.FSM),
		headerOnly,
		binary.AppendUvarint(nil, 10),
		binary.AppendUvarint(nil, maxSnapshotFrame+1),
		{},
	}
}

// corruptSnapshot decodes a snapshot of one resource batch, lets edit
// change its header and resources, and encodes it again: a snapshot whose
// frames are well formed but whose content one of the reader's checks
// must refuse.
func corruptSnapshot(tb testing.TB, b []byte, edit func(*pb.SnapshotHeader, []*pb.Resource)) []byte {
	tb.Helper()
	var frames []*pb.SnapshotFrame
	for r := bytes.NewReader(b); r.Len() > 0; {
		n, err := binary.ReadUvarint(r)
		if err != nil {
			tb.Fatal(err)
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			tb.Fatal(err)
		}
		fr := &pb.SnapshotFrame{}
		if err := proto.Unmarshal(body, fr); err != nil {
			tb.Fatal(err)
		}
		frames = append(frames, fr)
	}
	if len(frames) != 3 || frames[0].GetHeader() == nil || frames[1].GetResources() == nil {
		tb.Fatalf("want a header, one resource batch and an end, got %d frames", len(frames))
	}
	edit(frames[0].GetHeader(), frames[1].GetResources().GetResources())
	var out []byte
	for _, fr := range frames {
		body, err := proto.Marshal(fr)
		if err != nil {
			tb.Fatal(err)
		}
		out = binary.AppendUvarint(out, uint64(len(body)))
		out = append(out, body...)
	}
	return out
}

// snapshotContent decodes an accepted snapshot's header and resources up
// to its end frame (fields this reader does not know are dropped, as
// Restore drops them).
func snapshotContent(t *testing.T, b []byte) (*pb.SnapshotHeader, []*pb.Resource) {
	t.Helper()
	var hdr *pb.SnapshotHeader
	var res []*pb.Resource
	for r := bytes.NewReader(b); ; {
		n, err := binary.ReadUvarint(r)
		if err != nil {
			t.Fatalf("accepted snapshot: frame length: %v", err)
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			t.Fatalf("accepted snapshot: frame: %v", err)
		}
		fr := &pb.SnapshotFrame{}
		if err := (proto.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(body, fr); err != nil {
			t.Fatalf("accepted snapshot: frame: %v", err)
		}
		switch {
		case fr.GetHeader() != nil:
			hdr = fr.GetHeader()
		case fr.GetResources() != nil:
			res = append(res, fr.GetResources().GetResources()...)
		case fr.GetEnd() != nil:
			return hdr, res
		}
	}
}

// FuzzRestore feeds arbitrary bytes to the FSM's snapshot reader (raft's
// Restore: a snapshot from disk or from the leader's InstallSnapshot).
// Properties: no panic; a refused snapshot is an ErrInvalidSnapshot and
// leaves the FSM as it was (same revision, same bytes on the next
// Snapshot); an accepted one passes the state's invariant check, loses
// nothing (its own snapshot has the same header and resources, field by
// field, whatever the batching), and its own snapshot restores to the same
// bytes again.
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
		inHdr, inRes := snapshotContent(t, b)
		outHdr, outRes := snapshotContent(t, again)
		if !proto.Equal(inHdr, outHdr) {
			t.Fatalf("accepted snapshot's header not kept:\n in: %v\nout: %v", inHdr, outHdr)
		}
		if len(inRes) != len(outRes) {
			t.Fatalf("accepted snapshot of %d resources kept %d", len(inRes), len(outRes))
		}
		for i := range inRes {
			if !proto.Equal(inRes[i], outRes[i]) {
				t.Fatalf("accepted snapshot's resource %d not kept:\n in: %v\nout: %v", i, inRes[i], outRes[i])
			}
		}
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
