package chaos

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Work kinds: what an application fn held.
const (
	// WorkLeader is the leader job (client RunWhileLeader). Leadership is one
	// exclusive resource, whatever the fencing token.
	WorkLeader = "leader"
	// WorkResource is the work on one resource (client RunWhileOwner).
	WorkResource = "resource"
)

// Work is one run of an application fn beside a node, on the History's
// clock: from the moment fn started until the moment its context was
// cancelled (its ctx.Done() fired).
type Work struct {
	Node string `json:"node"`
	Kind string `json:"kind"`
	// Resource is the resource id (WorkResource only).
	Resource string `json:"resource,omitempty"`
	// Token is the fencing token (leader) or the epoch (resource) fn got.
	Token uint64        `json:"token"`
	Start time.Duration `json:"start"`
	// End is when fn's context was cancelled; meaningless while Open.
	End time.Duration `json:"end,omitempty"`
	// Open: fn was still running when the snapshot was taken. It counts as
	// running until the end of the history.
	Open bool `json:"open,omitempty"`
}

// what names the leadership or resource held: "leader job" or "resource r".
func (w Work) what() string {
	if w.Kind == WorkLeader {
		return "leader job"
	}
	return "resource " + w.Resource
}

// until is w's end, the end of the history s for open work.
func (w Work) until(s Snapshot) time.Duration {
	if w.Open {
		return s.Length
	}
	return w.End
}

func (w Work) describe(s Snapshot) string {
	end := fmtDur(w.until(s))
	if w.Open {
		end = "still running"
	}
	return fmt.Sprintf("%s (token %d, %s..%s)", w.Node, w.Token, fmtDur(w.Start), end)
}

// StartWork records that an application fn started; EndWork(i) records its
// cancellation.
func (h *History) StartWork(w Work) (i int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	w.Open = true
	h.work = append(h.work, w)
	return len(h.work) - 1
}

// EndWork records that the context of work i (from StartWork) was cancelled
// at at (h.Since()).
func (h *History) EndWork(i int, at time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.work[i].End, h.work[i].Open = at, false
}

// workByHolding groups s.Work by what was held (the leadership, or one
// resource), each group sorted by start, groups in a stable order.
func (s Snapshot) workByHolding() [][]Work {
	groups := map[string][]Work{}
	for _, w := range s.Work {
		k := w.Kind + "\x00" + w.Resource
		groups[k] = append(groups[k], w)
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([][]Work, 0, len(keys))
	for _, k := range keys {
		g := groups[k]
		sort.SliceStable(g, func(i, j int) bool { return g[i].Start < g[j].Start })
		out = append(out, g)
	}
	return out
}

// CheckExclusiveWork: no two nodes' applications hold the same thing at once.
// The leader job (any token) is one exclusive holding, each resource another;
// the runs of fn beside different nodes, from start to cancellation (open
// runs until the end of the history), must not overlap at all: the client
// cancels a holder's context before another node's can start. Both holders,
// their times and the overlap are reported.
func CheckExclusiveWork(s Snapshot) []Violation {
	var vs []Violation
	for _, g := range s.workByHolding() {
		for i, a := range g {
			for _, b := range g[i+1:] {
				if b.Start >= a.until(s) {
					break // sorted by start: no later run overlaps a
				}
				overlap := min(a.until(s), b.until(s)) - b.Start
				if a.Node == b.Node || overlap <= 0 {
					continue
				}
				vs = append(vs, Violation{Check: CheckOneHolder, Node: b.Node, At: b.Start, Fault: -1,
					Msg: fmt.Sprintf("%s held by %s and %s at once for %s", a.what(), a.describe(s), b.describe(s), fmtDur(overlap))})
			}
		}
	}
	return vs
}

// Handover is a run of fn after another (the earlier run that ended last):
// Gap is from that run's cancellation to this one's start, negative when
// they overlapped. From != To is a change of holder; From == To with the same
// Token is an interruption: the node kept the holding, but its fn was
// cancelled and started again (a lapsed lease renewed, a stream reopened).
type Handover struct {
	Kind, Resource string
	From, To       string
	Token          uint64        // To's token
	Interrupted    bool          // same node, same token
	At             time.Duration // To's start
	Gap            time.Duration
}

// Handovers lists every run of the leader job and of each resource that
// followed another, in order of start.
func Handovers(s Snapshot) []Handover {
	var out []Handover
	for _, g := range s.workByHolding() {
		prev := g[0] // of the runs so far, the one that ended last
		for _, w := range g[1:] {
			out = append(out, Handover{Kind: w.Kind, Resource: w.Resource, From: prev.Node, To: w.Node, Token: w.Token,
				Interrupted: prev.Node == w.Node && prev.Token == w.Token, At: w.Start, Gap: w.Start - prev.until(s)})
			if w.until(s) >= prev.until(s) {
				prev = w
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At < out[j].At })
	return out
}

// WorkRow is what the application workload showed in one fault window: from
// its start to the next window's start (Fault -1: before the first window).
type WorkRow struct {
	Fault int
	// Leaders are the leader job's holders during the window, in order:
	// "n1(2)" is n1 with fencing token 2.
	Leaders []string
	// Leader and Resource are the changes of holder that began in the
	// window; LeaderInterrupted and ResourceInterrupted count the
	// interruptions (see Handover).
	Leader, Resource                       []Handover
	LeaderInterrupted, ResourceInterrupted int
	// Violations counts CheckOneHolder findings in the window.
	Violations int
}

// WorkSummary returns one WorkRow per fault window (and one for the time
// before the first window when work started there).
func WorkSummary(s Snapshot, vs []Violation) []WorkRow {
	rows := make([]WorkRow, len(s.Faults)+1) // rows[0] is "before the first window"
	for i := range rows {
		rows[i].Fault = i - 1
	}
	bounds := func(i int) (lo, hi time.Duration) {
		if i > 0 {
			lo = s.Faults[i-1].Start
		}
		hi = s.Length
		if i < len(s.Faults) {
			hi = s.Faults[i].Start
		}
		return lo, hi
	}
	for _, g := range s.workByHolding() {
		if g[0].Kind != WorkLeader {
			continue
		}
		for _, w := range g {
			name := fmt.Sprintf("%s(%d)", w.Node, w.Token)
			for i := range rows {
				lo, hi := bounds(i)
				if w.Start < hi && w.until(s) > lo && (len(rows[i].Leaders) == 0 || rows[i].Leaders[len(rows[i].Leaders)-1] != name) {
					rows[i].Leaders = append(rows[i].Leaders, name)
				}
			}
		}
	}
	for _, h := range Handovers(s) {
		r := &rows[s.faultAt(h.At)+1]
		switch {
		case h.Interrupted && h.Kind == WorkLeader:
			r.LeaderInterrupted++
		case h.Interrupted:
			r.ResourceInterrupted++
		case h.From == h.To: // same node, new token: neither
		case h.Kind == WorkLeader:
			r.Leader = append(r.Leader, h)
		default:
			r.Resource = append(r.Resource, h)
		}
	}
	for _, v := range vs {
		if v.Check == CheckOneHolder && v.Fault+1 >= 0 && v.Fault+1 < len(rows) {
			rows[v.Fault+1].Violations++
		}
	}
	first := time.Duration(-1)
	for _, w := range s.Work {
		if first < 0 || w.Start < first {
			first = w.Start
		}
	}
	if len(s.Faults) > 0 && (first < 0 || first >= s.Faults[0].Start) {
		rows = rows[1:]
	}
	return rows
}

// minGap returns the handover with the shortest gap, false when hs is empty.
func minGap(hs []Handover) (Handover, bool) {
	if len(hs) == 0 {
		return Handover{}, false
	}
	m := hs[0]
	for _, h := range hs[1:] {
		if h.Gap < m.Gap {
			m = h
		}
	}
	return m, true
}

// gapText is "N (from→to)" in ms, or "–" without handovers.
func gapText(hs []Handover) string {
	m, ok := minGap(hs)
	if !ok {
		return "–"
	}
	if m.Kind == WorkLeader {
		return fmt.Sprintf("%s (%s→%s)", ms(m.Gap), m.From, m.To)
	}
	return fmt.Sprintf("%s (%s %s→%s)", ms(m.Gap), m.Resource, m.From, m.To)
}

// writeWork writes the report's "Application work" section.
func writeWork(b *strings.Builder, s Snapshot, vs []Violation) {
	b.WriteString("\n## Application work\n\n" +
		"Beside every node the suite runs an application (one Go client whose local sidecar is that node): a leader job " +
		"(RunWhileLeader) and work on every resource it owns (RunWhileOwner), each recording when fn started and when its " +
		"context was cancelled. *A1*: no two nodes' runs of the leader job (any token), or of one resource, overlap. " +
		"*Handovers*: a run whose previous holder (the earlier run that ended last) was another node; *min gap*: the shortest " +
		"time in ms from that holder's cancellation to the next holder's start (negative: overlap), over the handovers that " +
		"began in the window. *Interrupted*: fn cancelled and run again on the same node with the same token (the node kept " +
		"the holding: a lapsed client lease renewed, a stream reopened). Counted where the run began.\n\n")
	b.WriteString("| # | fault | leader job holders | leader handovers | min leader gap | leader interrupted | resource handovers | min resource gap | resource interrupted | A1 violations |\n")
	b.WriteString("|---:|---|---|---:|---|---:|---:|---|---:|---:|\n")
	var leader, resource []Handover
	li, ri := 0, 0
	for _, r := range WorkSummary(s, vs) {
		label := "(before the first fault)"
		if r.Fault >= 0 {
			label = s.Faults[r.Fault].Label()
		}
		holders := strings.Join(r.Leaders, " → ")
		if holders == "" {
			holders = "none"
		}
		fmt.Fprintf(b, "| %d | %s | %s | %d | %s | %d | %d | %s | %d | %d |\n", r.Fault, label, holders, len(r.Leader), gapText(r.Leader),
			r.LeaderInterrupted, len(r.Resource), gapText(r.Resource), r.ResourceInterrupted, r.Violations)
		leader, resource = append(leader, r.Leader...), append(resource, r.Resource...)
		li, ri = li+r.LeaderInterrupted, ri+r.ResourceInterrupted
	}
	fmt.Fprintf(b, "\nWhole run: %d leader handovers, min gap %s, %d leader job interruptions; %d resource handovers, min gap %s, %d resource interruptions.\n",
		len(leader), gapText(leader), li, len(resource), gapText(resource), ri)
}
