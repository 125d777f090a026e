package election

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestLeaseEnd(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	const (
		dur   = 400 * time.Millisecond
		drift = 20 * time.Millisecond
		term  = 7
	)
	ago := func(ms int) time.Time { return now.Add(-time.Duration(ms) * time.Millisecond) }
	voter := func(id string) raft.Server {
		return raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress(id + ":1")}
	}
	nonvoter := func(id string) raft.Server {
		return raft.Server{Suffrage: raft.Nonvoter, ID: raft.ServerID(id), Address: raft.ServerAddress(id + ":1")}
	}
	ack := func(ms int, tm uint64) Ack { return Ack{SentAt: ago(ms), Term: tm} }
	three := []raft.Server{voter("a"), voter("b"), voter("c")}
	five := []raft.Server{voter("a"), voter("b"), voter("c"), voter("d"), voter("e")}

	tests := []struct {
		name    string
		self    string
		servers []raft.Server
		acks    map[raft.ServerAddress]Ack
		want    time.Time // zero: no lease
	}{
		{"single voter: self alone is a quorum", "a", []raft.Server{voter("a")}, nil, now.Add(dur - drift)},
		{"3 voters, no acks", "a", three, nil, time.Time{}},
		{"3 voters, one ack makes the quorum", "a", three,
			map[raft.ServerAddress]Ack{"b:1": ack(100, term)}, ago(100).Add(dur - drift)},
		{"3 voters, the latest of two acks counts", "a", three,
			map[raft.ServerAddress]Ack{"b:1": ack(100, term), "c:1": ack(30, term)}, ago(30).Add(dur - drift)},
		{"planted: acks from an old term are rejected", "a", three,
			map[raft.ServerAddress]Ack{"b:1": ack(10, term-1), "c:1": ack(5, term-1)}, time.Time{}},
		{"old-term ack ignored, current one used", "a", three,
			map[raft.ServerAddress]Ack{"b:1": ack(5, term-1), "c:1": ack(200, term)}, ago(200).Add(dur - drift)},
		{"5 voters: the quorum-th (3rd) latest including self", "a", five,
			map[raft.ServerAddress]Ack{"b:1": ack(10, term), "c:1": ack(50, term), "d:1": ack(90, term), "e:1": ack(300, term)},
			ago(50).Add(dur - drift)},
		{"5 voters, only one ack: no quorum", "a", five,
			map[raft.ServerAddress]Ack{"b:1": ack(10, term)}, time.Time{}},
		{"non-voters do not count", "a", append([]raft.Server{nonvoter("x"), nonvoter("y")}, three...),
			map[raft.ServerAddress]Ack{"x:1": ack(1, term), "y:1": ack(1, term)}, time.Time{}},
		{"acks from unknown addresses do not count", "a", three,
			map[raft.ServerAddress]Ack{"zz:1": ack(1, term)}, time.Time{}},
		{"self not a voter: needs a quorum of others", "z", three,
			map[raft.ServerAddress]Ack{"a:1": ack(10, term), "b:1": ack(40, term)}, ago(40).Add(dur - drift)},
		{"ack stamped in the future is capped at now", "a", three,
			map[raft.ServerAddress]Ack{"b:1": {SentAt: now.Add(time.Second), Term: term}}, now.Add(dur - drift)},
		{"zero send time does not count", "a", three,
			map[raft.ServerAddress]Ack{"b:1": {Term: term}}, time.Time{}},
		{"no voters at all", "a", nil, nil, time.Time{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := leaseEnd(raft.ServerID(tc.self), tc.servers, tc.acks, term, now, dur, drift)
			if !got.Equal(tc.want) {
				t.Fatalf("leaseEnd = %v, want %v", got, tc.want)
			}
		})
	}
}
