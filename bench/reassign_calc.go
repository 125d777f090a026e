package bench

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// Sentinel errors of the reassignment measurement.
var (
	// ErrNotReassigned: in the samples given, the survivors never all reported that the dead
	// node owns nothing.
	ErrNotReassigned = errors.New("survivors never all showed the dead node owning nothing")
)

// OwnedSample is one poll of one survivor during a reassignment: how many resources that
// survivor's view says the victim owns. A failed poll (OK false) says nothing.
type OwnedSample struct {
	Node        string    // the survivor polled
	Sent        time.Time // when the request left
	At          time.Time // when the answer (or the failure) arrived
	OK          bool
	VictimOwned int
}

// ReassignMoment returns the arrival time of the first sample at which every survivor's most
// recent successful poll sent after kill says the victim owns nothing, and that moment minus
// kill. A poll sent before kill can show nothing about the reassignment and is ignored; a
// failed poll leaves the survivor's previous answer in place. Samples may come in any order.
func ReassignMoment(kill time.Time, survivors []string, samples []OwnedSample) (time.Time, time.Duration, error) {
	if len(survivors) == 0 {
		return time.Time{}, 0, fmt.Errorf("%w: no survivors", ErrNotReassigned)
	}
	sorted := slices.Clone(samples)
	slices.SortStableFunc(sorted, func(a, b OwnedSample) int { return a.At.Compare(b.At) })
	latest := make(map[string]int, len(survivors)) // survivor -> victim-owned count
	want := make(map[string]bool, len(survivors))
	for _, s := range survivors {
		want[s] = true
	}
	for _, s := range sorted {
		if !want[s.Node] || !s.OK || s.Sent.Before(kill) {
			continue
		}
		latest[s.Node] = s.VictimOwned
		if len(latest) < len(survivors) {
			continue
		}
		done := true
		for _, n := range latest {
			if n != 0 {
				done = false
				break
			}
		}
		if done {
			return s.At, s.At.Sub(kill), nil
		}
	}
	return time.Time{}, 0, fmt.Errorf("%w (%d samples)", ErrNotReassigned, len(samples))
}

// MoveCheck compares the resource owners before a node died with those after its resources
// were reassigned. The move is exact when every resource the victim owned has a new live
// owner, every other resource kept its owner, and the set of resources is unchanged.
type MoveCheck struct {
	VictimHad    int      `json:"victim_had"`         // resources the victim owned before
	Moved        int      `json:"moved"`              // resources whose owner changed
	StillVictim  int      `json:"still_victim"`       // resources the victim owns after
	Unassigned   int      `json:"unassigned"`         // victim's resources with no owner after
	WronglyMoved int      `json:"wrongly_moved"`      // resources not the victim's whose owner changed
	Missing      int      `json:"missing"`            // resources present before, gone after
	Added        int      `json:"added"`              // resources present after, not before
	Exact        bool     `json:"exact"`              // only the dead node's resources moved, all of them
	Examples     []string `json:"examples,omitempty"` // a few offending ids, for the error text
}

// CheckMoves compares before and after (resource id -> owner, "" = unassigned) for victim.
func CheckMoves(victim string, before, after map[string]string) MoveCheck {
	var c MoveCheck
	example := func(format string, args ...any) {
		if len(c.Examples) < 5 {
			c.Examples = append(c.Examples, fmt.Sprintf(format, args...))
		}
	}
	for id, was := range before {
		now, ok := after[id]
		if !ok {
			c.Missing++
			example("%s missing after", id)
			continue
		}
		if was == victim {
			c.VictimHad++
		}
		if now == victim {
			c.StillVictim++
			example("%s still on %s", id, victim)
			continue
		}
		if now == was {
			continue
		}
		c.Moved++
		switch {
		case was != victim:
			c.WronglyMoved++
			example("%s moved %s -> %s", id, was, now)
		case now == "":
			c.Unassigned++
			example("%s unassigned after", id)
		}
	}
	for id := range after {
		if _, ok := before[id]; !ok {
			c.Added++
			example("%s appeared", id)
		}
	}
	c.Exact = c.VictimHad > 0 && c.Moved == c.VictimHad && c.StillVictim == 0 && c.Unassigned == 0 &&
		c.WronglyMoved == 0 && c.Missing == 0 && c.Added == 0
	slices.Sort(c.Examples)
	return c
}

// FalseDeathCounter counts members declared failed during a healthy run: every change, in one
// observer's view, of one member from any other state (or never seen) to "suspect" or "dead"
// is one false death (suspect then dead is one). It is not safe for concurrent use.
type FalseDeathCounter struct {
	last   map[string]string // observer/member -> state
	Count  int
	Events []string // "observer sees member suspect", the first few
}

// Observe records one observer's member list (member id -> state).
func (f *FalseDeathCounter) Observe(observer string, states map[string]string) {
	if f.last == nil {
		f.last = map[string]string{}
	}
	for member, st := range states {
		key := observer + "/" + member
		prev, seen := f.last[key]
		f.last[key] = st
		if !failedState(st) || (seen && failedState(prev)) {
			continue
		}
		f.Count++
		if len(f.Events) < 20 {
			f.Events = append(f.Events, fmt.Sprintf("%s sees %s %s", observer, member, st))
		}
	}
}

func failedState(s string) bool { return s == "suspect" || s == "dead" }
