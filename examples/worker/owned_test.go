package main

import (
	"fmt"
	"maps"
	"testing"

	"github.com/heartbeat-sidecar/heartbeat/client"
)

func TestOwnedSetApply(t *testing.T) {
	tests := []struct {
		name    string
		start   ownedSet
		ev      client.AssignmentEvent
		want    ownedSet
		changes string
	}{
		{"assigned to me", ownedSet{}, client.AssignmentEvent{Kind: client.KindAssigned, ResourceID: "a", Owner: "n1", Epoch: 7},
			ownedSet{"a": 7}, "[acquired a epoch 7]"},
		{"reassigned to me, new epoch", ownedSet{"a": 7}, client.AssignmentEvent{Kind: client.KindAssigned, ResourceID: "a", Owner: "n1", Epoch: 9},
			ownedSet{"a": 9}, "[acquired a epoch 9]"},
		{"same assignment again", ownedSet{"a": 7}, client.AssignmentEvent{Kind: client.KindAssigned, ResourceID: "a", Owner: "n1", Epoch: 7},
			ownedSet{"a": 7}, "[]"},
		{"moved away", ownedSet{"a": 7, "b": 8}, client.AssignmentEvent{Kind: client.KindAssigned, ResourceID: "a", Owner: "n2", PrevOwner: "n1", Epoch: 10},
			ownedSet{"b": 8}, "[released a (moved to n2)]"},
		{"unassigned", ownedSet{"a": 7}, client.AssignmentEvent{Kind: client.KindAssigned, ResourceID: "a", PrevOwner: "n1"},
			ownedSet{}, "[released a (unassigned)]"},
		{"someone else's", ownedSet{"a": 7}, client.AssignmentEvent{Kind: client.KindAssigned, ResourceID: "z", Owner: "n2", Epoch: 10},
			ownedSet{"a": 7}, "[]"},
		{"deleted", ownedSet{"a": 7}, client.AssignmentEvent{Kind: client.KindDeleted, ResourceID: "a", PrevOwner: "n1"},
			ownedSet{}, "[released a (deleted)]"},
		{"registered changes nothing", ownedSet{"a": 7}, client.AssignmentEvent{Kind: client.KindRegistered, ResourceID: "a"},
			ownedSet{"a": 7}, "[]"},
		{"resync replaces", ownedSet{"a": 7, "b": 8}, client.AssignmentEvent{Kind: client.KindResync, Resources: []client.Resource{
			{ID: "b", Owner: "n1", Epoch: 8}, {ID: "c", Owner: "n1", Epoch: 11}}},
			ownedSet{"b": 8, "c": 11}, "[released a (resync) acquired c epoch 11]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := maps.Clone(tt.start)
			changes := s.apply("n1", tt.ev)
			if !maps.Equal(s, tt.want) {
				t.Errorf("set = %v; want %v", s, tt.want)
			}
			if got := fmt.Sprint(changes); got != tt.changes {
				t.Errorf("changes = %s; want %s", got, tt.changes)
			}
		})
	}
}

func TestOwnedSetSummary(t *testing.T) {
	s := ownedSet{"shard-2": 20, "shard-10": 17}
	if got, want := s.summary(), "shard-10@17 shard-2@20"; got != want {
		t.Fatalf("summary = %q; want %q", got, want)
	}
}
