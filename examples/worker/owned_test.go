package main

import "testing"

func TestOwnedSetSummary(t *testing.T) {
	s := ownedSet{"shard-2": 20, "shard-10": 17}
	if got, want := s.summary(), "shard-10@17 shard-2@20"; got != want {
		t.Fatalf("summary = %q; want %q", got, want)
	}
	c := s.clone()
	c["shard-3"] = 1
	if len(s) != 2 {
		t.Fatalf("clone shares the map: %v", s)
	}
}
