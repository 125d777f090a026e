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
// acknowledged delete, a delete that says an existing resource was absent.
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
		{"planted: delete says absent", []LinOp{reg(0, "a", 1, 0, 10), del(1, "a", false, 20, 30)}, "violation"},
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
