package bench

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"
)

// Sentinel errors of the lease hand-over measurement.
var (
	// ErrNoOldWork: the paused node's application was not working on the key when it was
	// paused, so there is no cancellation to measure from.
	ErrNoOldWork = errors.New("the paused node was not working on the key at the pause")
	// ErrNoNewWork: no other node's application has started the key's work since.
	ErrNoNewWork = errors.New("no other node has started the work")
)

// LeaderKey is the WorkInterval key of leader work (RunWhileLeader); resource work uses the
// resource id.
const LeaderKey = "(leader)"

// WorkInterval is one run of an application's fn, on the benchmark process's monotonic
// clock: from its first instruction to the moment it saw its context cancelled.
type WorkInterval struct {
	App   string    `json:"app"`   // node id of the sidecar the application runs beside
	Key   string    `json:"key"`   // LeaderKey or a resource id
	Fence uint64    `json:"fence"` // fencing token (leader) or epoch (resource)
	Start time.Time `json:"start"`
	End   time.Time `json:"end"` // zero while it runs
}

// Running reports whether the run had begun and not ended at t.
func (w WorkInterval) Running(t time.Time) bool {
	return !w.Start.After(t) && (w.End.IsZero() || w.End.After(t))
}

// endOr is the run's end, or asOf while it still runs.
func (w WorkInterval) endOr(asOf time.Time) time.Time {
	if w.End.IsZero() {
		return asOf
	}
	return w.End
}

// Handover is how one key's work moved away from a paused node: the old run's cancellation,
// the new run's start elsewhere, and the gap between them, which must be positive.
type Handover struct {
	Key  string `json:"key"`
	From string `json:"from"`
	To   string `json:"to"`
	// OldRunning: the old run had not ended when the hand-over was computed; Gap then
	// counts it as ending at that moment (the old run lasted at least that long), so the
	// gap is at most that and always an overlap.
	OldRunning bool `json:"old_running,omitempty"`
	// Gap is the new run's start minus the old run's end: positive when the old work
	// stopped first, zero or negative when both ran at once.
	Gap time.Duration `json:"gap"`
	// ToCancel is the old run's end minus the pause; ToStart the new run's start minus
	// the pause.
	ToCancel time.Duration `json:"to_cancel"`
	ToStart  time.Duration `json:"to_start"`
}

// Overlap reports whether the hand-over let two nodes work on the key at once (or at the
// same instant): a gap that is not positive.
func (h Handover) Overlap() bool { return h.OldRunning || h.Gap <= 0 }

// ComputeHandover measures how key's work moved away from victim, whose sidecar was paused
// at pause. The old run is the victim's run of key that was running at pause (the latest
// one if, wrongly, several were); the new run is the earliest run of key on another node
// that started after the old one did. An old run still going is taken to end at asOf.
// Intervals may come in any order; other keys are ignored.
//
// It returns ErrNoOldWork when the victim was not working on key at pause, ErrNoNewWork
// when no other node has started key since.
func ComputeHandover(ivs []WorkInterval, key, victim string, pause, asOf time.Time) (Handover, error) {
	h := Handover{Key: key, From: victim}
	var old, next *WorkInterval
	for i := range ivs {
		w := &ivs[i]
		if w.Key == key && w.App == victim && w.Running(pause) && (old == nil || w.Start.After(old.Start)) {
			old = w
		}
	}
	if old == nil {
		return h, fmt.Errorf("%s on %s: %w", key, victim, ErrNoOldWork)
	}
	for i := range ivs {
		w := &ivs[i]
		if w.Key == key && w.App != victim && w.Start.After(old.Start) && (next == nil || w.Start.Before(next.Start)) {
			next = w
		}
	}
	if next == nil {
		return h, fmt.Errorf("%s from %s: %w", key, victim, ErrNoNewWork)
	}
	end := old.endOr(asOf)
	h.To, h.OldRunning = next.App, old.End.IsZero()
	h.Gap = next.Start.Sub(end)
	h.ToCancel, h.ToStart = end.Sub(pause), next.Start.Sub(pause)
	return h, nil
}

// Overlap is two runs of the same key at once: two applications working as leader, or on
// one resource, at the same time.
type Overlap struct {
	A, B WorkInterval
	// For is how long both ran (a run still going counts until asOf).
	For time.Duration
}

// String renders the overlap for a report.
func (o Overlap) String() string {
	return fmt.Sprintf("%s: %s (fence %d) and %s (fence %d) both ran for %v", o.A.Key, o.A.App, o.A.Fence,
		o.B.App, o.B.Fence, o.For)
}

// Overlaps returns every pair of runs of one key that ran at the same time, whatever their
// nodes (the client never runs one key twice at once on a node either). A run still going
// counts as running until asOf; runs that touch (one ends at the instant the other starts)
// count as overlapping. The result is sorted by key, then start.
func Overlaps(ivs []WorkInterval, asOf time.Time) []Overlap {
	byKey := map[string][]WorkInterval{}
	for _, w := range ivs {
		byKey[w.Key] = append(byKey[w.Key], w)
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []Overlap
	for _, k := range keys {
		runs := byKey[k]
		slices.SortStableFunc(runs, func(a, b WorkInterval) int { return a.Start.Compare(b.Start) })
		for i, a := range runs {
			for _, b := range runs[i+1:] {
				// b.Start >= a.Start; they overlap unless a ended strictly before b began.
				aEnd := a.endOr(asOf)
				if aEnd.Before(b.Start) {
					break // later runs start later still
				}
				out = append(out, Overlap{A: a, B: b, For: minTime(aEnd, b.endOr(asOf)).Sub(b.Start)})
			}
		}
	}
	return out
}

// LeaseSettled reports whether the applications' runs at t match the cluster: exactly one
// run of leader work, on leader's application, and for each resource in owners exactly one
// run, on its owner's application (an unowned resource must have none). Otherwise why says
// the first difference. It is the "settled" test between pauses.
func LeaseSettled(ivs []WorkInterval, leader string, owners map[string]string, t time.Time) (ok bool, why string) {
	running := map[string][]string{} // key -> apps running it at t
	for _, w := range ivs {
		if w.Running(t) {
			running[w.Key] = append(running[w.Key], w.App)
		}
	}
	want := func(key, owner string) string {
		got := running[key]
		switch {
		case owner == "" && len(got) == 0:
			return ""
		case len(got) == 1 && got[0] == owner:
			return ""
		}
		return fmt.Sprintf("%s: owner %q, running on %v", key, owner, got)
	}
	if why := want(LeaderKey, leader); why != "" {
		return false, why
	}
	ids := make([]string, 0, len(owners))
	for id := range owners {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if why := want(id, owners[id]); why != "" {
			return false, why
		}
	}
	for key, apps := range running {
		if _, known := owners[key]; !known && key != LeaderKey {
			return false, fmt.Sprintf("%s: not a registered resource, running on %v", key, apps)
		}
	}
	return true, ""
}

// minTime returns the earlier of two times (min does not order time.Time).
func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// Restarts lists, for the runs given, every time work stopped and started again on the same
// node with the same fencing token or epoch: the key did not move, the node's lease lapsed
// (or its stream broke) and was renewed. Each entry is how long the work was stopped, from
// the run's end to the next run's start. Leader work and resource work are told apart by
// key: pass only the runs of interest.
func Restarts(ivs []WorkInterval) []time.Duration {
	type slot struct {
		app, key string
		fence    uint64
	}
	by := map[slot][]WorkInterval{}
	for _, w := range ivs {
		s := slot{w.App, w.Key, w.Fence}
		by[s] = append(by[s], w)
	}
	var out []time.Duration
	for _, runs := range by {
		slices.SortStableFunc(runs, func(a, b WorkInterval) int { return a.Start.Compare(b.Start) })
		for i := 1; i < len(runs); i++ {
			if prev := runs[i-1]; !prev.End.IsZero() {
				out = append(out, runs[i].Start.Sub(prev.End))
			}
		}
	}
	slices.Sort(out)
	return out
}
