package lifecycle

import (
	"context"
	"testing"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/proto/raftpb"
)

// fakeElection answers Members from a fixed list; nothing else is called.
type fakeElection struct{ members []election.Member }

func (f fakeElection) Leadership() election.Leadership            { return election.Leadership{} }
func (f fakeElection) Members() ([]election.Member, error)        { return f.members, nil }
func (f fakeElection) Apply(context.Context, []byte) (any, error) { return nil, nil }
func (f fakeElection) TransferLeadership(context.Context, string) (election.Leadership, error) {
	return election.Leadership{}, nil
}

type fakeRemover struct{}

func (fakeRemover) Remove(context.Context, *raftpb.RemoveRequest) (*raftpb.RemoveResponse, error) {
	return &raftpb.RemoveResponse{}, nil
}

// TestNeedsJoin: a node asks the cluster to add it when it is not in its
// configuration, when it rejoins, and when it wants to be a voter and is a
// non-voter still — a learner restarted before its promotion, which the
// leader may have forgotten.
func TestNeedsJoin(t *testing.T) {
	self := func(voter bool) []election.Member {
		return []election.Member{{ID: "n1", Voter: true}, {ID: "n4", Voter: voter}}
	}
	for _, tc := range []struct {
		name    string
		join    []string
		voter   bool
		rejoin  bool
		members []election.Member
		want    bool
	}{
		{"no join addresses", nil, true, false, nil, false},
		{"not a member yet", []string{"a:1"}, true, false, self(true)[:1], true},
		{"a voter, as asked", []string{"a:1"}, true, false, self(true), false},
		{"a learner that wants to be a voter", []string{"a:1"}, true, false, self(false), true},
		{"a non-voter, as asked", []string{"a:1"}, false, false, self(false), false},
		{"rejoin, listed in a stale configuration", []string{"a:1"}, true, true, self(true), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.ID, cfg.ClusterID, cfg.DataDir = "n4", "c", t.TempDir()
			cfg.Join, cfg.Voter, cfg.Rejoin = tc.join, tc.voter, tc.rejoin
			l, err := New(cfg, fakeElection{tc.members}, nil, nil, fakeRemover{}, func(error) {}, func() bool { return false })
			if err != nil {
				t.Fatal(err)
			}
			if got := l.NeedsJoin(); got != tc.want {
				t.Fatalf("NeedsJoin = %v, want %v", got, tc.want)
			}
		})
	}
}
