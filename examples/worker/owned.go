package main

import (
	"fmt"
	"sort"
	"strings"

	"github.com/heartbeat-sidecar/heartbeat/client"
)

// change is one difference in the owned set: a resource acquired (with the
// epoch of its assignment) or released (with the reason).
type change struct {
	acquired bool
	id       string
	epoch    uint64
	why      string
}

func (c change) String() string {
	if c.acquired {
		return fmt.Sprintf("acquired %s epoch %d", c.id, c.epoch)
	}
	return fmt.Sprintf("released %s (%s)", c.id, c.why)
}

// ownedSet is the set of resources a worker owns, id -> epoch. It is a
// plain value: the worker guards it with its mutex.
type ownedSet map[string]uint64

// apply applies one watch event of node self's assignments and returns
// the changes it made.
func (s ownedSet) apply(self string, ev client.AssignmentEvent) []change {
	switch ev.Kind {
	case client.KindAssigned:
		if ev.Owner == self {
			if old, ok := s[ev.ResourceID]; ok && old == ev.Epoch {
				return nil
			}
			s[ev.ResourceID] = ev.Epoch
			return []change{{acquired: true, id: ev.ResourceID, epoch: ev.Epoch}}
		}
		if _, ok := s[ev.ResourceID]; ok {
			delete(s, ev.ResourceID)
			why := "moved to " + ev.Owner
			if ev.Owner == "" {
				why = "unassigned"
			}
			return []change{{id: ev.ResourceID, why: why}}
		}
	case client.KindDeleted:
		if _, ok := s[ev.ResourceID]; ok {
			delete(s, ev.ResourceID)
			return []change{{id: ev.ResourceID, why: "deleted"}}
		}
	case client.KindResync:
		return s.replace(ev.Resources, "resync")
	}
	return nil
}

// replace makes the set equal to resources (a listing of the node's
// assignments) and returns the changes, releases first, each group sorted.
func (s ownedSet) replace(resources []client.Resource, why string) []change {
	next := make(map[string]uint64, len(resources))
	for _, r := range resources {
		next[r.ID] = r.Epoch
	}
	var out []change
	for _, id := range s.ids() {
		if _, ok := next[id]; !ok {
			delete(s, id)
			out = append(out, change{id: id, why: why})
		}
	}
	ids := make([]string, 0, len(next))
	for id := range next {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if old, ok := s[id]; ok && old == next[id] {
			continue
		}
		s[id] = next[id]
		out = append(out, change{acquired: true, id: id, epoch: next[id]})
	}
	return out
}

// ids returns the owned ids, sorted.
func (s ownedSet) ids() []string {
	out := make([]string, 0, len(s))
	for id := range s {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// summary is "shard-1@17 shard-4@20" (id@epoch, sorted).
func (s ownedSet) summary() string {
	var b strings.Builder
	for i, id := range s.ids() {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s@%d", id, s[id])
	}
	return b.String()
}

// clone copies the set.
func (s ownedSet) clone() map[string]uint64 {
	out := make(map[string]uint64, len(s))
	for k, v := range s {
		out[k] = v
	}
	return out
}
