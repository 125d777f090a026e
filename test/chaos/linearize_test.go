package chaos

import (
	"strings"
	"testing"
	"time"
)

// TestCheckLinearizable: valid histories pass (concurrent writes, an unknown
// write seen or not), and planted violations are caught: a read from a node
// one entry behind (the weight before an acknowledged update), a read that
// misses an acknowledged registration, a resource that comes back after an
// acknowledged delete, a delete that says it found an absent resource.
func TestCheckLinearizable(t *testing.T) {
	ms := func(v int64) int64 { return v * int64(time.Millisecond) }
	regAs := func(c int, key string, w uint32, call, ret int64, out LinOutcome) LinOp {
		return LinOp{Client: c, Kind: LinRegister, Key: key, Weight: w, Outcome: out, Node: "n1", Call: ms(call), Return: ms(ret)}
	}
	reg := func(c int, key string, w uint32, call, ret int64) LinOp { return regAs(c, key, w, call, ret, LinOK) }
	del := func(c int, key string, found bool, call, ret int64) LinOp {
		return LinOp{Client: c, Kind: LinDelete, Key: key, Found: found, Outcome: LinOK, Node: "n2", Call: ms(call), Return: ms(ret)}
	}
	read := func(c int, key string, found bool, w uint32, call, ret int64) LinOp {
		return LinOp{Client: c, Kind: LinRead, Key: key, Found: found, Weight: w, Outcome: LinOK, Node: "n3", Call: ms(call), Return: ms(ret)}
	}
	for _, tc := range []struct {
		name string
		ops  []LinOp
		want string
	}{
		{"sequential", []LinOp{reg(0, "a", 1, 0, 10), read(1, "a", true, 1, 20, 30), del(0, "a", true, 40, 50), read(1, "a", false, 0, 60, 70)}, "ok"},
		{"concurrent writes, either order", []LinOp{reg(0, "a", 1, 0, 50), reg(1, "a", 2, 10, 40), read(2, "a", true, 1, 60, 70)}, "ok"},
		{"read concurrent with a write may see either", []LinOp{reg(0, "a", 1, 0, 10), reg(1, "a", 2, 20, 60), read(2, "a", true, 1, 30, 40), read(3, "a", true, 2, 30, 50)}, "ok"},
		{"unknown write seen", []LinOp{regAs(0, "a", 1, 0, 10, LinOK), regAs(1, "a", 2, 20, 30, LinUnknown), read(2, "a", true, 2, 100, 110)}, "ok"},
		{"unknown write not seen", []LinOp{reg(0, "a", 1, 0, 10), regAs(1, "a", 2, 20, 30, LinUnknown), read(2, "a", true, 1, 100, 110)}, "ok"},
		{"failed write never happened", []LinOp{reg(0, "a", 1, 0, 10), regAs(1, "a", 2, 20, 30, LinFail), read(2, "a", true, 1, 100, 110)}, "ok"},
		{"independent resources", []LinOp{reg(0, "a", 1, 0, 10), reg(0, "b", 5, 20, 30), read(1, "b", true, 5, 40, 50), read(1, "a", true, 1, 40, 50)}, "ok"},

		{"planted: a node one entry behind", []LinOp{reg(0, "a", 1, 0, 10), reg(0, "a", 2, 20, 30), read(1, "a", true, 1, 40, 50)}, "violation"},
		{"planted: registration missed", []LinOp{reg(0, "a", 1, 0, 10), read(1, "a", false, 0, 20, 30)}, "violation"},
		{"planted: back after delete", []LinOp{reg(0, "a", 1, 0, 10), del(0, "a", true, 20, 30), read(1, "a", true, 1, 40, 50)}, "violation"},
		{"delete not found after a retry that deleted", []LinOp{reg(0, "a", 1, 0, 10), del(1, "a", false, 20, 30), read(2, "a", false, 0, 40, 50)}, "ok"},
		{"planted: delete says it found an absent resource", []LinOp{reg(0, "a", 1, 0, 10), del(1, "a", true, 20, 30), del(2, "a", true, 40, 50)}, "violation"},
		{"planted: failed write seen", []LinOp{reg(0, "a", 1, 0, 10), regAs(1, "a", 2, 20, 30, LinFail), read(2, "a", true, 2, 100, 110)}, "violation"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := CheckLinearizable(tc.ops, 5*time.Second)
			if got.Verdict != tc.want {
				t.Fatalf("verdict %q (%s), want %q", got.Verdict, got.Detail, tc.want)
			}
			if tc.want == "violation" && !strings.Contains(got.Detail, "resource a") {
				t.Errorf("detail %q does not name the resource", got.Detail)
			}
		})
	}
}

// TestLinRowsReportAndReplay: operations are counted per fault window by
// invocation, R1 runs in CheckAll (a planted stale read fails it and is
// attributed to its window), the report has the section, and the history
// keeps the operations through WriteJSON / ReadSnapshot for chaos-replay.
func TestLinRowsReportAndReplay(t *testing.T) {
	ms := func(v int64) int64 { return v * int64(time.Millisecond) }
	s := Snapshot{Length: 10 * time.Second, Nodes: []string{"n1", "n2"},
		Faults: []Fault{{Kind: "quiet", Target: "none", Run: 1, Start: time.Second}, {Kind: "isolate", Target: "follower", Run: 1, Start: 5 * time.Second}}}
	s.Lin = []LinOp{
		{Client: 0, Kind: LinRegister, Key: "lin-0", Weight: 1, Outcome: LinOK, Call: ms(100), Return: ms(200)},
		{Client: 1, Kind: LinRead, Key: "lin-0", Found: true, Weight: 1, Outcome: LinOK, Call: ms(1500), Return: ms(1600)},
		{Client: 0, Kind: LinRegister, Key: "lin-0", Weight: 2, Outcome: LinOK, Call: ms(5100), Return: ms(5200)},
		{Client: 1, Kind: LinRead, Key: "lin-0", Found: true, Weight: 1, Outcome: LinOK, Node: "n2", Call: ms(5300), Return: ms(5400)}, // stale
		{Client: 2, Kind: LinDelete, Key: "lin-1", Outcome: LinUnknown, Call: ms(5500), Return: ms(7500)},
		{Client: 2, Kind: LinRead, Key: "lin-1", Outcome: LinFail, Call: ms(5600), Return: ms(7600)},
	}
	vs := CheckAll(s, DefaultCheckOptions())
	var r1 []Violation
	for _, v := range vs {
		if v.Check == CheckReadsWrites {
			r1 = append(r1, v)
		}
	}
	if len(r1) != 1 || r1[0].Fault != 1 || !strings.Contains(r1[0].Msg, "lin-0") {
		t.Fatalf("R1 violations %+v, want one in window 1 naming lin-0", r1)
	}
	rows := LinRows(s, vs)
	want := []LinRow{{Fault: -1, OK: 1, Writes: 1}, {Fault: 0, OK: 1, Reads: 1}, {Fault: 1, OK: 2, Reads: 1, Writes: 1, Fail: 1, Unknown: 1, ViolatingResources: 1}}
	if len(rows) != len(want) {
		t.Fatalf("rows %+v, want %+v", rows, want)
	}
	for i := range want {
		if rows[i] != want[i] {
			t.Errorf("row %d: %+v, want %+v", i, rows[i], want[i])
		}
	}
	var b strings.Builder
	if err := WriteReport(&b, s, vs, ReportInfo{}); err != nil {
		t.Fatal(err)
	}
	if out := b.String(); !strings.Contains(out, "## Reads and writes (linearizability)") || !strings.Contains(out, "**violation**") ||
		!strings.Contains(out, "| 1 | isolate/follower#1 | 2 (1 / 1) | 1 | 1 | 1 |") {
		t.Errorf("report section missing or wrong:\n%s", out)
	}
	path := t.TempDir() + "/history.json"
	if err := s.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	back, err := ReadSnapshot(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Lin) != len(s.Lin) || back.Lin[3] != s.Lin[3] {
		t.Fatalf("operations after a round trip: %+v", back.Lin)
	}
}
