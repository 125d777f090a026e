package membership

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
)

// TestCheckText: the characters an id or a label may not hold, one per
// refused class, and look-alikes that stay allowed.
func TestCheckText(t *testing.T) {
	for _, tc := range []struct {
		name, s string
		ok      bool
	}{
		{"ascii", "orders-1 eu/x.y", true},
		{"letters and marks", "café-日本-e\u0301", true},
		{"replacement character itself", "a\ufffdb", true},
		{"invalid utf-8", "a\xffb", false},
		{"truncated utf-8", "a\xc3", false},
		{"control Cc", "a\x01b", false},
		{"C1 control", "a\u0085b", false},
		{"right-to-left override (Bidi_Control, Cf)", "abc\u202etxt.exe", false},
		{"right-to-left isolate (Bidi_Control, Cf)", "a\u2067b", false},
		{"left-to-right mark (Cf)", "a\u200eb", false},
		{"arabic letter mark (Cf)", "a\u061cb", false},
		{"zero width space (Cf)", "a\u200bb", false},
		{"zero width joiner (Cf)", "a\u200db", false},
		{"word joiner (Cf)", "a\u2060b", false},
		{"byte order mark (Cf)", "\ufeffab", false},
		{"soft hyphen (Cf)", "a\u00adb", false},
		{"private use (Co)", "a\ue000b", false},
		{"line separator (Zl)", "a\u2028b", false},
		{"paragraph separator (Zp)", "a\u2029b", false},
		{"no-break space (Zs)", "a\u00a0b", false},
		{"noncharacter (Cn)", "a\ufdd0b", false},
		{"noncharacter U+FFFF (Cn)", "a\uffffb", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckText(tc.s)
			if (err == nil) != tc.ok {
				t.Fatalf("CheckText(%q) = %v, want ok=%v", tc.s, err, tc.ok)
			}
		})
	}
}

// TestEncodeRefusesHiddenCharacters: ids and labels that enter the state
// pass CheckText when encoded; DecodeCommand keeps the old, looser rule, so
// log entries written before stay replayable.
func TestEncodeRefusesHiddenCharacters(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec ResourceSpec
	}{
		{"rtl override in id", ResourceSpec{ID: "invoice\u202efdp.exe"}},
		{"zero width space in id", ResourceSpec{ID: "a\u200bb"}},
		{"zero width joiner in label key", ResourceSpec{ID: "a", Labels: map[string]string{"zo\u200dne": "x"}}},
		{"bidi isolate in label value", ResourceSpec{ID: "a", Labels: map[string]string{"zone": "\u2066x"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := RegisterCmd([]ResourceSpec{tc.spec})
			if _, err := EncodeCommand(cmd); !errors.Is(err, ErrInvalidCommand) {
				t.Fatalf("EncodeCommand: want ErrInvalidCommand, got %v", err)
			}
			// The same entry in an old log still decodes.
			cmd.Version = CommandVersion
			b, err := proto.Marshal(cmd)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := DecodeCommand(b); err != nil {
				t.Fatalf("DecodeCommand of an entry written before the rule: %v", err)
			}
		})
	}
	if _, err := EncodeCommand(UpsertMemberCmd(MemberSpec{ID: "n\u200b1", PeerAddr: "p"})); !errors.Is(err, ErrInvalidCommand) {
		t.Fatalf("member id with a zero width space: want ErrInvalidCommand, got %v", err)
	}
	// Commands that only name an existing id keep the old rule: such a
	// resource can still be deleted.
	if _, err := EncodeCommand(DeleteCmd([]string{"a\u200bb"})); err != nil {
		t.Fatalf("delete of an old id: %v", err)
	}
}

// TestEncodeRefusesOversized: a command over MaxCommandBytes is refused when
// encoded (ErrCommandTooLarge), so it is never proposed.
func TestEncodeRefusesOversized(t *testing.T) {
	labels := make(map[string]string, MaxLabels)
	for i := range MaxLabels {
		labels[strings.Repeat("k", MaxLabelKeyLen-2)+itoa(10+i)] = strings.Repeat("v", MaxLabelValueLen)
	}
	specs := make([]ResourceSpec, MaxBatch)
	for i := range specs {
		specs[i] = ResourceSpec{ID: strings.Repeat("r", MaxResourceIDLen-6) + itoa(100000+i), Labels: labels}
	}
	cmd := RegisterCmd(specs)
	_, err := EncodeCommand(cmd)
	if !errors.Is(err, ErrCommandTooLarge) {
		t.Fatalf("EncodeCommand of a %d-byte command: want ErrCommandTooLarge, got %v", proto.Size(cmd), err)
	}
	if err := ValidateCommand(cmd); err != nil {
		t.Fatalf("the command is valid but for its size: %v", err)
	}
	if _, err := EncodeCommand(RegisterCmd(specs[:MaxBatch/10])); err != nil {
		t.Fatalf("a tenth of it: %v", err)
	}
}

// TestAssignBatches: the reconciler's Assign commands stay under
// MaxAssignBytes and MaxBatch even with the longest ids, and encode.
func TestAssignBatches(t *testing.T) {
	long := func(p string, n, i int) string { return p + strings.Repeat("x", n-len(p)-8) + itoa(10000000+i) }
	moves := make([]Move, 3*MaxBatch/2)
	for i := range moves {
		moves[i] = Move{ResourceID: long("r", MaxResourceIDLen, i), From: long("a", MaxMemberIDLen, i%7), FromEpoch: uint64(i + 1), To: long("b", MaxMemberIDLen, i%5)}
	}
	batches := AssignBatches(moves)
	total := 0
	for i, b := range batches {
		if len(b) == 0 || len(b) > MaxBatch {
			t.Fatalf("batch %d: %d moves", i, len(b))
		}
		enc, err := EncodeCommand(AssignCmd(b))
		if err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
		if len(enc) > MaxAssignBytes {
			t.Fatalf("batch %d: %d moves, %d bytes encoded, over MaxAssignBytes %d", i, len(b), len(enc), MaxAssignBytes)
		}
		if &b[0] != &moves[total] {
			t.Fatalf("batch %d does not continue where the last ended", i)
		}
		total += len(b)
	}
	if total != len(moves) {
		t.Fatalf("batches hold %d moves, want %d", total, len(moves))
	}
	// Short ids: split by count alone.
	short := make([]Move, MaxBatch+1)
	for i := range short {
		short[i] = Move{ResourceID: itoa(i), To: "n1"}
	}
	if got := AssignBatches(short); len(got) != 2 || len(got[0]) != MaxBatch {
		t.Fatalf("short ids: %d batches", len(got))
	}
}

// TestStateBytes: State.Bytes follows registrations, label changes,
// deletes and a snapshot restore (and Check verifies it after every change
// of every FSM test).
func TestStateBytes(t *testing.T) {
	f := newTestFSM(t)
	bytesOf := func(g *testFSM) (n int64) {
		g.Read(func(s *State) { n = s.Bytes() })
		return n
	}
	f.ok(RegisterCmd([]ResourceSpec{{ID: "abc"}, {ID: "de", Labels: map[string]string{"k": "vv"}}}))
	if got, want := bytesOf(f), int64(2*ResourceOverhead+3+2+3); got != want {
		t.Fatalf("after registering: %d, want %d", got, want)
	}
	f.ok(RegisterCmd([]ResourceSpec{{ID: "abc", Labels: map[string]string{"zone": "eu-1"}}}))
	if got, want := bytesOf(f), int64(2*ResourceOverhead+3+2+3+8); got != want {
		t.Fatalf("after relabelling: %d, want %d", got, want)
	}
	g := newTestFSM(t)
	if err := g.Restore(io.NopCloser(bytes.NewReader(snapshotBytes(t, f.FSM)))); err != nil {
		t.Fatal(err)
	}
	if got, want := bytesOf(g), bytesOf(f); got != want {
		t.Fatalf("restored: %d, want %d", got, want)
	}
	f.ok(DeleteCmd([]string{"abc", "de"}))
	if got := bytesOf(f); got != 0 {
		t.Fatalf("after deleting all: %d", got)
	}
}
