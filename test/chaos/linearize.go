package chaos

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// The linearizability check of the resource API (issue 10). Clients register,
// update and delete resources and read them back (consistent reads) through
// different nodes while faults run; every operation is recorded with its
// invocation and return times and its outcome, and the history is checked
// with porcupine (as etcd's robustness tests do) against a model of the
// resource set: each resource is absent or present with a weight.
//
// Resources are independent, so the history is partitioned per resource id
// (a listing read counts as one read of each id it was asked about, all at
// the listing's single revision). A write whose outcome is unknown (the call
// timed out or the node answered Unavailable after it may have committed)
// may have taken effect at any moment after its invocation: its return time
// is the end of the history and the model lets it apply or not.

// LinOpKind is what an operation did.
type LinOpKind string

// Operation kinds.
const (
	LinRegister LinOpKind = "register" // register or update Key with Weight
	LinDelete   LinOpKind = "delete"   // delete Key
	LinRead     LinOpKind = "read"     // read Key (consistent)
)

// LinOutcome is how an operation ended.
type LinOutcome string

// Outcomes.
const (
	LinOK      LinOutcome = "ok"      // acknowledged (a delete of an absent key is ok with Found false)
	LinFail    LinOutcome = "fail"    // refused: it surely did not take effect
	LinUnknown LinOutcome = "unknown" // it may or may not have taken effect
)

// LinOp is one operation of a client, times in nanoseconds of one monotonic
// clock (the test process's).
type LinOp struct {
	Client  int
	Kind    LinOpKind
	Key     string
	Weight  uint32 // register: the weight written; read: the weight seen
	Found   bool   // read: present; delete: it existed (false: NotFound, which may answer a retry of an attempt that deleted it)
	Outcome LinOutcome
	Node    string // the node the client asked
	Call    int64
	Return  int64
}

// linState is one resource in the model: absent, or present with a weight.
type linState struct {
	present bool
	weight  uint32
}

// resourceModel is the sequential specification of one resource.
var resourceModel = porcupine.NondeterministicModel{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range h {
			k := op.Input.(LinOp).Key
			if _, ok := by[k]; !ok {
				keys = append(keys, k)
			}
			by[k] = append(by[k], op)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, by[k])
		}
		return out
	},
	Init: func() []interface{} { return []interface{}{linState{}} },
	Step: func(state, input, _ interface{}) []interface{} {
		s, op := state.(linState), input.(LinOp)
		next := s
		switch op.Kind {
		case LinRegister:
			next = linState{present: true, weight: op.Weight}
		case LinDelete:
			next = linState{}
			if op.Outcome == LinOK && op.Found && !s.present {
				return nil // it said it deleted a resource that was not there
			}
			// Found false (NotFound) asserts nothing about before: it may be
			// the answer to a retry of an attempt that did delete it.
		case LinRead:
			if op.Found != s.present || (op.Found && op.Weight != s.weight) {
				return nil
			}
			return []interface{}{s}
		}
		if op.Outcome == LinUnknown {
			return []interface{}{s, next} // it may not have happened
		}
		return []interface{}{next}
	},
	DescribeOperation: func(input, _ interface{}) string {
		op := input.(LinOp)
		switch op.Kind {
		case LinRegister:
			return fmt.Sprintf("%s register(%s, %d) %s", op.Node, op.Key, op.Weight, op.Outcome)
		case LinDelete:
			return fmt.Sprintf("%s delete(%s) %s found=%v", op.Node, op.Key, op.Outcome, op.Found)
		}
		if !op.Found {
			return fmt.Sprintf("%s read(%s) -> absent", op.Node, op.Key)
		}
		return fmt.Sprintf("%s read(%s) -> %d", op.Node, op.Key, op.Weight)
	},
	DescribeState: func(state interface{}) string {
		s := state.(linState)
		if !s.present {
			return "absent"
		}
		return fmt.Sprintf("weight %d", s.weight)
	},
}

// LinResult is the verdict on a history.
type LinResult struct {
	Ops     int    // operations checked (failed ones are left out: they did nothing)
	Verdict string // "ok", "violation" or "unknown" (the checker ran out of time)
	// Detail names the resource whose history is not linearizable and its
	// operations around the violation (empty when ok).
	Detail string
}

// CheckLinearizable checks ops with porcupine within timeout.
func CheckLinearizable(ops []LinOp, timeout time.Duration) LinResult {
	var end int64
	for _, op := range ops {
		end = max(end, op.Return)
	}
	var hist []porcupine.Operation
	for _, op := range ops {
		if !checked(op) {
			continue
		}
		ret := op.Return
		if op.Outcome == LinUnknown {
			ret = end + 1 // it may take effect until the end
		}
		hist = append(hist, porcupine.Operation{ClientId: op.Client, Input: op, Call: op.Call, Output: nil, Return: ret})
	}
	res, info := porcupine.CheckOperationsVerbose(resourceModel.ToModel(), hist, timeout)
	out := LinResult{Ops: len(hist)}
	switch res {
	case porcupine.Ok:
		out.Verdict = "ok"
	case porcupine.Unknown:
		out.Verdict = "unknown"
	default:
		out.Verdict = "violation"
		out.Detail = describeViolation(hist, info)
	}
	return out
}

// checked: the operation enters the history (a failed one did nothing, a
// read without an answer told nothing).
func checked(op LinOp) bool {
	return op.Outcome != LinFail && (op.Kind != LinRead || op.Outcome == LinOK)
}

// describeViolation names the first resource whose history cannot be
// linearized, with where the checker got stuck: the last operations of the
// longest linearizable prefix it found, and the earliest operations it
// could not place after them.
func describeViolation(hist []porcupine.Operation, info porcupine.LinearizationInfo) string {
	partitions := resourceModel.Partition(hist)
	partials := info.PartialLinearizations()
	for i, part := range partitions {
		if i >= len(partials) {
			break
		}
		var longest []int
		for _, p := range partials[i] {
			if len(p) > len(longest) {
				longest = p
			}
		}
		if len(longest) >= len(part) {
			continue
		}
		done := map[int]bool{}
		for _, j := range longest {
			done[j] = true
		}
		var rest []int
		for j := range part {
			if !done[j] {
				rest = append(rest, j)
			}
		}
		sort.Slice(rest, func(a, b int) bool { return part[rest[a]].Call < part[rest[b]].Call })
		describe := func(op porcupine.Operation) string {
			in := op.Input.(LinOp)
			return fmt.Sprintf("[%s %.3fs-%.3fs]", resourceModel.DescribeOperation(in, nil),
				float64(in.Call)/1e9, float64(in.Return)/1e9)
		}
		var b strings.Builder
		fmt.Fprintf(&b, "resource %s: %d of its %d operations linearize; the last of them:", part[0].Input.(LinOp).Key, len(longest), len(part))
		for _, j := range longest[max(0, len(longest)-3):] {
			b.WriteString(" " + describe(part[j]))
		}
		b.WriteString("; none of these can come next:")
		for _, j := range rest[:min(6, len(rest))] {
			b.WriteString(" " + describe(part[j]))
		}
		return b.String()
	}
	return "no linearization exists (porcupine)"
}

// linTimeout bounds the linearizability check of one history.
const linTimeout = 60 * time.Second

// CheckLinearizableOps is R1: the reads-and-writes workload's history (if it
// ran) is linearizable. A verdict of "unknown" (the checker ran out of
// time) is not a violation; the report shows it.
func CheckLinearizableOps(s Snapshot, timeout time.Duration) []Violation {
	if len(s.Lin) == 0 {
		return nil
	}
	r := CheckLinearizable(s.Lin, timeout)
	if r.Verdict != "violation" {
		return nil
	}
	at := time.Duration(0)
	if key := violatingKey(r.Detail); key != "" {
		for _, op := range s.Lin {
			if op.Key == key && time.Duration(op.Return) > at {
				at = time.Duration(op.Return)
			}
		}
	}
	return []Violation{{Check: CheckReadsWrites, At: at, Fault: -1, Msg: r.Detail}}
}

// violatingKey extracts the resource id from a LinResult.Detail.
func violatingKey(detail string) string {
	rest, ok := strings.CutPrefix(detail, "resource ")
	if !ok {
		return ""
	}
	key, _, _ := strings.Cut(rest, ":")
	return key
}

// LinRow is the reads-and-writes workload in one fault window: operations
// invoked in it, by outcome.
type LinRow struct {
	Fault              int // -1: before the first fault
	OK, Fail, Unknown  int
	Reads, Writes      int // of the ok ones
	ViolatingResources int // violations attributed to the window (R1)
}

// LinRows counts the operations per fault window (by invocation time).
func LinRows(s Snapshot, vs []Violation) []LinRow {
	rows := map[int]*LinRow{}
	row := func(f int) *LinRow {
		if rows[f] == nil {
			rows[f] = &LinRow{Fault: f}
		}
		return rows[f]
	}
	for _, op := range s.Lin {
		r := row(s.faultAt(time.Duration(op.Call)))
		switch op.Outcome {
		case LinOK:
			r.OK++
			if op.Kind == LinRead {
				r.Reads++
			} else {
				r.Writes++
			}
		case LinFail:
			r.Fail++
		default:
			r.Unknown++
		}
	}
	for _, v := range vs {
		if v.Check == CheckReadsWrites {
			row(v.Fault).ViolatingResources++
		}
	}
	out := make([]LinRow, 0, len(rows))
	for _, r := range rows {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Fault < out[j].Fault })
	return out
}

// writeLin writes the report's "Reads and writes" section.
func writeLin(b *strings.Builder, s Snapshot, vs []Violation) {
	verdict := CheckLinearizable(s.Lin, linTimeout)
	fmt.Fprintf(b, "\n## Reads and writes (linearizability)\n\n"+
		"Clients register, update and delete resources and read them back with consistent reads, through "+
		"different nodes, during every fault; every operation is recorded with its invocation and return "+
		"times and its outcome (*ok*; *fail*: surely not applied; *unknown*: a write that may have been "+
		"applied, or a read without an answer). *R1*: the whole history is checked with porcupine against "+
		"a model of the resource set (per resource: absent, or present with a weight). "+
		"Verdict over %d operations: **%s**.\n\n", verdict.Ops, verdict.Verdict)
	b.WriteString("| # | fault | ok (reads / writes) | fail | unknown | R1 violations |\n|---:|---|---|---:|---:|---:|\n")
	for _, r := range LinRows(s, vs) {
		label := "(before the first fault)"
		if r.Fault >= 0 && r.Fault < len(s.Faults) {
			label = s.Faults[r.Fault].Label()
		}
		fmt.Fprintf(b, "| %d | %s | %d (%d / %d) | %d | %d | %d |\n", r.Fault, label, r.OK, r.Reads, r.Writes, r.Fail, r.Unknown, r.ViolatingResources)
	}
}
