package lifecycle

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

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

// countingAdmin is a ClusterAdmin that counts Join calls.
type countingAdmin struct {
	raftpb.UnimplementedClusterAdminServer
	joins atomic.Int32
}

func (a *countingAdmin) Join(context.Context, *raftpb.JoinRequest) (*raftpb.JoinResponse, error) {
	a.joins.Add(1)
	return &raftpb.JoinResponse{}, nil
}

// TestAwaitPromotion: a learner that wants to be a voter asks its Join
// address again (at once after a restart), and stops asking once a Leave
// has begun — asking again would add the leaving node back.
func TestAwaitPromotion(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	admin := &countingAdmin{}
	raftpb.RegisterClusterAdminServer(srv, admin)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	defer func() {
		srv.Stop()
		<-served
	}()

	for _, leaving := range []bool{false, true} {
		admin.joins.Store(0)
		cfg := DefaultConfig()
		cfg.ID, cfg.ClusterID, cfg.DataDir = "n4", "c", t.TempDir()
		cfg.Join, cfg.Voter = []string{lis.Addr().String()}, true
		members := []election.Member{{ID: "n1", Voter: true}, {ID: "n4"}}
		l, err := New(cfg, fakeElection{members}, nil, nil, fakeRemover{}, func(error) {}, func() bool { return false })
		if err != nil {
			t.Fatal(err)
		}
		l.leaving.Store(leaving)
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		l.awaitPromotion(ctx, true)
		cancel()
		switch got := admin.joins.Load(); {
		case leaving && got != 0:
			t.Errorf("leaving: %d Join calls, want none", got)
		case !leaving && got != 1:
			t.Errorf("a learner after a restart: %d Join calls in 500ms, want 1 (at once, then every %v)", got, promotionAsk)
		}
	}
}
