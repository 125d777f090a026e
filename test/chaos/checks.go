package chaos

import (
	"fmt"
	"slices"
	"sort"
	"time"
)

// Checker names, as they appear in Violations and the report.
const (
	CheckOneLeaderPerTerm = "S1-one-leader-per-term"
	CheckTokensGrow       = "S2-fencing-tokens-grow"
	CheckTwoLeaders       = "S1b-two-leaders-at-once"
	CheckDurable          = "S4-acknowledged-kept"
	CheckFailover         = "L1-new-leader-within-bound"
	CheckStable           = "L2-no-election-without-fault"
	CheckOneHolder        = "A1-one-holder-at-a-time"
	CheckReadsWrites      = "R1-linearizable-reads-and-writes"
)

// Violation is one broken invariant.
type Violation struct {
	Check string        `json:"check"`
	Node  string        `json:"node,omitempty"`
	At    time.Duration `json:"at"`
	// Fault is the index of the fault window the violation falls in, -1 if none.
	Fault int    `json:"fault"`
	Msg   string `json:"msg"`
}

// String is "check at T on node: message".
func (v Violation) String() string {
	return fmt.Sprintf("%s at %s on %s: %s", v.Check, fmtDur(v.At), v.Node, v.Msg)
}

// CheckOptions tunes the checkers.
type CheckOptions struct {
	// Tolerance absorbs the latency of reading two nodes at "the same" time:
	// two leadership claims must overlap by more than this to count, and a
	// claim is compared with tokens seen more than this before it.
	Tolerance time.Duration
}

// DefaultCheckOptions: 50 ms of tolerance (a status poll is ~1 ms on an idle
// host, but this machine is shared and noisy).
func DefaultCheckOptions() CheckOptions { return CheckOptions{Tolerance: 50 * time.Millisecond} }

// CheckAll runs every checker on s and attributes each violation to the fault
// window it falls in.
func CheckAll(s Snapshot, o CheckOptions) []Violation {
	var vs []Violation
	vs = append(vs, CheckS1(s)...)
	vs = append(vs, CheckS2(s, o.Tolerance)...)
	vs = append(vs, CheckNoTwoLeaders(s, o.Tolerance)...)
	vs = append(vs, CheckS4(s)...)
	vs = append(vs, CheckL1(s)...)
	vs = append(vs, CheckL2(s)...)
	vs = append(vs, CheckExclusiveWork(s)...)
	vs = append(vs, CheckLinearizableOps(s, linTimeout)...)
	for i := range vs {
		if vs[i].Fault < 0 {
			vs[i].Fault = s.faultAt(vs[i].At)
		}
	}
	sort.SliceStable(vs, func(i, j int) bool { return vs[i].At < vs[j].At })
	return vs
}

// faultAt returns the index of the fault window containing t: from its Start
// to the next fault's Start (the recovery belongs to the fault). -1 if none.
func (s Snapshot) faultAt(t time.Duration) int {
	idx := -1
	for i, f := range s.Faults {
		if f.Start <= t {
			idx = i
		}
	}
	return idx
}

// claims reports whether e is a leadership claim and, if so, its leadership
// (fencing token). A WatchLeader or status is_self is a claim with its token;
// a status saying state=leader is one too when its term equals its token (a
// consistent reading; term and token are read separately by the node).
func claims(e Event) (uint64, bool) {
	switch {
	case e.IsSelf && e.Token != 0:
		return e.Token, true
	case e.Source == SourceStatus && e.Role == RoleLeader && e.Term != 0 && e.Term == e.Token:
		return e.Term, true
	}
	return 0, false
}

// selfClaim reports whether e hands leadership to the application (is_self,
// the node leads AND its lease is valid) and with which fencing token. Raft's
// own state=leader is not handed out: an old leader that has not yet heard
// of a newer term still says state=leader, with is_leader=false once its
// lease has lapsed, and that is correct.
func selfClaim(e Event) (uint64, bool) {
	return e.Token, e.IsSelf && e.Token != 0
}

// CheckS1: at most one leader per term across every node's history. Two
// different nodes claiming leadership with the same fencing token (= the
// term of election) is a violation.
func CheckS1(s Snapshot) []Violation {
	type first struct {
		node string
		at   time.Duration
	}
	byTerm := map[uint64]first{}
	reported := map[[2]string]bool{}
	var vs []Violation
	for _, e := range s.Events {
		term, ok := claims(e)
		if !ok {
			continue
		}
		f, seen := byTerm[term]
		if !seen {
			byTerm[term] = first{e.Node, e.At}
			continue
		}
		key := [2]string{fmt.Sprint(term), e.Node}
		if f.node != e.Node && !reported[key] {
			reported[key] = true
			vs = append(vs, Violation{Check: CheckOneLeaderPerTerm, Node: e.Node, At: e.At, Fault: -1,
				Msg: fmt.Sprintf("%s leads term %d, already led by %s (seen at %s)", e.Node, term, f.node, fmtDur(f.at))})
		}
	}
	return vs
}

// CheckS2: fencing tokens only grow. (a) The tokens each node reports through
// each channel (status polls, the watch stream) never decrease (0, "no
// leader known", is skipped). (b) A node tells its application it leads
// (is_self) only with a token at least as high as any token any node
// reported more than tol before the claim's earliest possible instant
// (At - Latency). Claims are taken from status polls only (see below).
func CheckS2(s Snapshot, tol time.Duration) []Violation {
	var vs []Violation
	last := map[string]Event{}
	for _, e := range s.Events {
		if e.Token == 0 {
			continue
		}
		key := e.Node + "/" + string(e.Source)
		if p, ok := last[key]; ok && e.Token < p.Token {
			vs = append(vs, Violation{Check: CheckTokensGrow, Node: e.Node, At: e.At, Fault: -1,
				Msg: fmt.Sprintf("%s token fell from %d (at %s) to %d", e.Source, p.Token, fmtDur(p.At), e.Token)})
		}
		last[key] = e
	}
	// (b): events are sorted by At; keep the highest token seen per time.
	type seen struct {
		at    time.Duration
		token uint64
		node  string
	}
	var maxes []seen // increasing token, increasing at
	for _, e := range s.Events {
		// Only status polls time a claim: a poll's answer was made between
		// its request (At - Latency) and its arrival. A watch event's is
		// not bounded from below at all (after a net-disconnect TCP
		// delivers what the node sent before the cut in one burst, and
		// several events may be in flight at once), so a watch claim
		// cannot show that the node claimed after a newer token existed;
		// the watches count for (a) only.
		if tok, ok := selfClaim(e); ok && e.Source == SourceStatus {
			// highest token reported before the poll was sent, less tol
			limit := e.At - e.Latency - tol
			i := sort.Search(len(maxes), func(i int) bool { return maxes[i].at >= limit })
			if i > 0 && maxes[i-1].token > tok {
				m := maxes[i-1]
				vs = append(vs, Violation{Check: CheckTokensGrow, Node: e.Node, At: e.At, Fault: -1,
					Msg: fmt.Sprintf("claims leadership with token %d after %s reported token %d at %s", tok, m.node, m.token, fmtDur(m.at))})
			}
		}
		if e.Token != 0 && (len(maxes) == 0 || e.Token > maxes[len(maxes)-1].token) {
			maxes = append(maxes, seen{e.At, e.Token, e.Node})
		}
	}
	return vs
}

// CheckNoTwoLeaders: no two nodes claim leadership (is_self in their status)
// at the same time. A node's claim spans from the first to the last status
// poll in a row that said is_self; two claims by different nodes must not
// overlap by more than tol. Watch events are not used: their end is unknown
// when a node dies.
func CheckNoTwoLeaders(s Snapshot, tol time.Duration) []Violation {
	type span struct {
		node     string
		from, to time.Duration
		token    uint64
	}
	var spans []span
	open := map[string]*span{}
	for _, e := range s.Events {
		if e.Source != SourceStatus {
			continue
		}
		if e.IsSelf {
			if sp := open[e.Node]; sp != nil {
				sp.to = e.Until
				continue
			}
			open[e.Node] = &span{e.Node, e.At, e.Until, e.Token}
			continue
		}
		if sp := open[e.Node]; sp != nil {
			spans = append(spans, *sp)
			delete(open, e.Node)
		}
	}
	for _, sp := range open {
		spans = append(spans, *sp)
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].from < spans[j].from })
	var vs []Violation
	for i := range spans {
		for j := i + 1; j < len(spans) && spans[j].from < spans[i].to; j++ {
			a, b := spans[i], spans[j]
			if a.node == b.node {
				continue
			}
			overlap := min(a.to, b.to) - max(a.from, b.from)
			if overlap > tol {
				vs = append(vs, Violation{Check: CheckTwoLeaders, Node: b.node, At: b.from, Fault: -1,
					Msg: fmt.Sprintf("%s (token %d, %s..%s) and %s (token %d, %s..%s) both claim leadership for %s",
						a.node, a.token, fmtDur(a.from), fmtDur(a.to), b.node, b.token, fmtDur(b.from), fmtDur(b.to), fmtDur(overlap))})
			}
		}
	}
	return vs
}

// CheckS4: nothing acknowledged is lost across a fault that restarts nodes.
// For every fault with Recovered > 0 (the highest raft commit index any node
// reported before it), some node must report a commit index at least that
// high after the fault ended (before the next fault). Once the cluster holds
// resources, the same hook compares the acknowledged registrations recorded
// before the kill with the committed view after it.
func CheckS4(s Snapshot) []Violation {
	var vs []Violation
	for i, f := range s.Faults {
		if f.Recovered == 0 {
			continue
		}
		end := s.Length
		if i+1 < len(s.Faults) {
			end = s.Faults[i+1].Start
		}
		var best uint64
		bestNode := ""
		for _, e := range s.Events {
			if e.Source == SourceStatus && e.Answered() && e.At >= f.End && e.At <= end && e.CommitIndex > best {
				best, bestNode = e.CommitIndex, e.Node
			}
		}
		if best < f.Recovered {
			vs = append(vs, Violation{Check: CheckDurable, Node: bestNode, At: f.End, Fault: i,
				Msg: fmt.Sprintf("%s: commit index %d acknowledged before, highest after restart %d", f.Label(), f.Recovered, best)})
		}
	}
	return vs
}

// CheckL1: after a fault that expects a failover, every survivor names a new
// leader (a higher fencing token) within the fault's Bound.
func CheckL1(s Snapshot) []Violation {
	var vs []Violation
	for i, f := range s.Faults {
		if f.Expect != ExpectFailover {
			continue
		}
		m := Measure(s, i)
		switch {
		case !m.Elected:
			vs = append(vs, Violation{Check: CheckFailover, At: m.Ref, Fault: i,
				Msg: fmt.Sprintf("%s: no new leader known to every survivor (missing: %v)", f.Label(), m.Missing)})
		case m.NewLeader > f.Bound:
			vs = append(vs, Violation{Check: CheckFailover, At: m.Ref, Fault: i,
				Msg: fmt.Sprintf("%s: new leader known to all after %s, bound %s", f.Label(), fmtDur(m.NewLeader), fmtDur(f.Bound))})
		}
	}
	return vs
}

// CheckL2: in windows that expect stability (fault-free stretches, a pause
// shorter than the heartbeat timeout, a minority cut off) no node reports a
// term or fencing token other than the one before, and no node outside the
// fault's targets becomes a candidate. (A cut-off or restarted target may run
// pre-vote, which hashicorp/raft reports as candidate without raising its
// term; raising the term anywhere is still a violation.)
func CheckL2(s Snapshot) []Violation {
	var vs []Violation
	for i, f := range s.Faults {
		if f.Expect != ExpectStable {
			continue
		}
		reported := map[string]bool{}
		for _, e := range s.Events {
			if e.At < f.Start || e.At > f.Settled || !e.Answered() || reported[e.Node] {
				continue
			}
			var what string
			switch {
			case e.Role == RoleCandidate && !slices.Contains(f.Nodes, e.Node):
				what = "became candidate"
			case e.Term != 0 && e.Term != f.OldTerm:
				what = fmt.Sprintf("term %d, was %d", e.Term, f.OldTerm)
			case e.Token != 0 && e.Token != f.OldToken:
				what = fmt.Sprintf("fencing token %d, was %d", e.Token, f.OldToken)
			default:
				continue
			}
			reported[e.Node] = true
			vs = append(vs, Violation{Check: CheckStable, Node: e.Node, At: e.At, Fault: i,
				Msg: fmt.Sprintf("%s: %s (%s)", f.Label(), what, e.Source)})
		}
	}
	return vs
}

func fmtDur(d time.Duration) string {
	return fmt.Sprintf("%.3fs", d.Seconds())
}
