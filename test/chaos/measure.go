package chaos

import (
	"slices"
	"sort"
	"time"
)

// Measurement is what one fault window showed.
type Measurement struct {
	Fault int
	Kind  string
	Run   int
	// Target as in Fault.
	Target string
	// Ref is the instant measured from: the old leader's last answer if the
	// fault silenced it within the injection, else the end of the injection
	// (or Fault.End for faults measured from the restart).
	Ref time.Duration
	// Detected: some survivor stopped naming the old leadership (another
	// leader or none, a higher term, or candidate) Detection after Ref.
	Detected  bool
	Detection time.Duration
	// Elected: every survivor named a leader with a higher fencing token,
	// the last of them NewLeader after Ref. Missing lists those that did not.
	Elected   bool
	NewLeader time.Duration
	Missing   []string
	// NoLeader is the time between the old leadership's last is_self claim
	// (what applications are told) and the new one's first (0 if the old
	// leader never stopped claiming).
	NoLeader time.Duration
	// TermChanges is the highest term seen in the window less the old term.
	TermChanges uint64
}

// fromRestart lists fault kinds whose failover is measured from Fault.End
// (the restart), since no leader can exist before it.
var fromRestart = map[string]bool{KindKillMajority: true, KindKillAll: true}

// survivors returns the nodes whose view counts for a fault.
func (s Snapshot) survivors(f Fault) []string {
	if fromRestart[f.Kind] {
		return s.Nodes
	}
	var out []string
	for _, n := range s.Nodes {
		if !slices.Contains(f.Nodes, n) {
			out = append(out, n)
		}
	}
	return out
}

// Measure computes the Measurement of fault i.
func Measure(s Snapshot, i int) Measurement {
	f := s.Faults[i]
	m := Measurement{Fault: i, Kind: f.Kind, Target: f.Target, Run: f.Run}
	end := f.Settled
	if end == 0 {
		end = s.Length
	}
	// Ref: the restart (containers running again) for faults measured from
	// it; else the old leader's
	// last answer when the injection silenced it; else the fault's start
	// (a network cut may bite before the injection command returns).
	m.Ref = f.Start
	if fromRestart[f.Kind] {
		m.Ref = f.End
		if f.Restarted > 0 {
			m.Ref = f.Restarted
		}
	} else if f.OldLeader != "" {
		last := time.Duration(-1)
		for _, e := range s.Events {
			if e.Node == f.OldLeader && e.Source == SourceStatus && e.Answered() && e.At <= f.Injected {
				last = max(last, e.Until)
			}
		}
		if last >= f.Start && last < f.Injected {
			m.Ref = last
		}
	}

	surv := s.survivors(f)
	detected := time.Duration(-1)
	elected := map[string]time.Duration{}
	for _, e := range s.Events {
		// events still holding at Ref count from Ref
		if e.Until < m.Ref || e.At > end || !e.Answered() || !slices.Contains(surv, e.Node) {
			continue
		}
		at := max(e.At, m.Ref) - m.Ref
		changed := e.Leader != f.OldLeader || e.Term > f.OldTerm || e.Role == RoleCandidate
		if changed && detected < 0 {
			detected = at
		}
		if _, ok := elected[e.Node]; !ok && e.Leader != "" && e.Token > f.OldToken {
			elected[e.Node] = at
		}
	}
	if detected >= 0 {
		m.Detected, m.Detection = true, detected
	}
	m.Elected = len(surv) > 0
	for _, n := range surv {
		d, ok := elected[n]
		if !ok {
			m.Elected = false
			m.Missing = append(m.Missing, n)
			continue
		}
		m.NewLeader = max(m.NewLeader, d)
	}
	if !m.Elected {
		m.NewLeader = 0
	}

	// Time without a leader: last claim of the old leadership to first claim
	// of a newer one.
	lastOld, firstNew := time.Duration(-1), time.Duration(-1)
	for _, e := range s.Events {
		if e.Source != SourceStatus || e.At > end {
			continue
		}
		tok, ok := selfClaim(e)
		if !ok {
			continue
		}
		switch {
		case tok <= f.OldToken && e.At <= end && e.Until >= f.Start-time.Second:
			lastOld = max(lastOld, min(e.Until, end))
		case tok > f.OldToken && e.At >= f.Start && firstNew < 0:
			firstNew = e.At
		}
	}
	switch {
	case lastOld < 0:
		lastOld = m.Ref
	}
	switch {
	case firstNew >= 0 && firstNew > lastOld:
		m.NoLeader = firstNew - lastOld
	case firstNew < 0 && lastOld < end:
		m.NoLeader = end - lastOld
	}

	for _, e := range s.Events {
		if e.At >= f.Start && e.At <= end && e.Answered() && e.Term > f.OldTerm {
			m.TermChanges = max(m.TermChanges, e.Term-f.OldTerm)
		}
	}
	return m
}

// Row is one line of the report: one fault kind against one target.
type Row struct {
	Kind, Target string
	Runs         int
	// Detection and NewLeader of the runs that got there.
	Detection []time.Duration
	NewLeader []time.Duration
	NoLeader  []time.Duration
	// Failed counts runs without a new leader known to all survivors (only
	// meaningful for faults that expect one).
	Failed      int
	TermChanges uint64 // total over runs
	Violations  int
}

// Summarize groups measurements and violations by fault kind × target, in
// the order the faults first ran. Violations outside any fault window go to
// a row "(no fault)".
func Summarize(s Snapshot, vs []Violation) []Row {
	var rows []*Row
	index := map[[2]string]*Row{}
	row := func(kind, target string) *Row {
		k := [2]string{kind, target}
		if r, ok := index[k]; ok {
			return r
		}
		r := &Row{Kind: kind, Target: target}
		index[k] = r
		rows = append(rows, r)
		return r
	}
	for i, f := range s.Faults {
		r := row(f.Kind, f.Target)
		r.Runs++
		m := Measure(s, i)
		if m.Detected {
			r.Detection = append(r.Detection, m.Detection)
		}
		if m.Elected {
			r.NewLeader = append(r.NewLeader, m.NewLeader)
		} else if f.Expect == ExpectFailover {
			r.Failed++
		}
		r.NoLeader = append(r.NoLeader, m.NoLeader)
		r.TermChanges += m.TermChanges
	}
	for _, v := range vs {
		if v.Fault >= 0 && v.Fault < len(s.Faults) {
			f := s.Faults[v.Fault]
			row(f.Kind, f.Target).Violations++
		} else {
			row("(no fault)", "-").Violations++
		}
	}
	out := make([]Row, len(rows))
	for i, r := range rows {
		out[i] = *r
	}
	return out
}

// Percentile returns the nearest-rank p-th percentile (0 < p <= 100) of ds,
// and false when ds is empty.
func Percentile(ds []time.Duration, p float64) (time.Duration, bool) {
	if len(ds) == 0 {
		return 0, false
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	rank := int(float64(len(s))*p/100 + 0.999999)
	rank = min(max(rank, 1), len(s))
	return s[rank-1], true
}
