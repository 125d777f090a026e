package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// ownedSet is the set of resources a worker works on, id -> epoch. It is a
// plain value: the worker guards it with its mutex.
type ownedSet map[string]uint64

// summary is "shard-1@17 shard-4@20" (id@epoch, sorted by id).
func (s ownedSet) summary() string {
	var b strings.Builder
	for i, id := range slices.Sorted(maps.Keys(s)) {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s@%d", id, s[id])
	}
	return b.String()
}

// clone copies the set.
func (s ownedSet) clone() map[string]uint64 {
	return maps.Clone(map[string]uint64(s))
}
