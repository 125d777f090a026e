package api_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
	"github.com/heartbeat-sidecar/heartbeat/proto/raftpb"
	"github.com/heartbeat-sidecar/heartbeat/rpc/api"
)

func TestAdmin(t *testing.T) {
	ms := newCluster(t, 3)
	leader, follower := leaderOfCluster(ms), followerOf(ms)
	lc := raftpb.NewClusterAdminClient(dial(t, leader.addr()))
	fc := raftpb.NewClusterAdminClient(dial(t, follower.addr()))

	// Bad input is refused the same way by the leader and a follower.
	bad := []struct {
		name   string
		req    *raftpb.JoinRequest
		code   codes.Code
		reason string
	}{
		{"empty id", &raftpb.JoinRequest{PeerAddress: "127.0.0.1:1", ClusterId: testCluster}, codes.InvalidArgument, ""},
		{"empty address", &raftpb.JoinRequest{Id: "x", ClusterId: testCluster}, codes.InvalidArgument, ""},
		{"empty cluster", &raftpb.JoinRequest{Id: "x", PeerAddress: "127.0.0.1:1"}, codes.InvalidArgument, ""},
		{"wrong cluster", &raftpb.JoinRequest{Id: "x", PeerAddress: "127.0.0.1:1", ClusterId: "other"}, codes.FailedPrecondition, api.ReasonWrongCluster},
	}
	for _, tt := range bad {
		for name, c := range map[string]raftpb.ClusterAdminClient{"leader": lc, "follower": fc} {
			_, err := c.Join(ctxT(t), tt.req)
			if status.Code(err) != tt.code || api.ReasonOf(err) != tt.reason {
				t.Errorf("%s on %s: %v (reason %q), want %v %q", tt.name, name, err, api.ReasonOf(err), tt.code, tt.reason)
			}
		}
	}
	if _, err := fc.Remove(ctxT(t), &raftpb.RemoveRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("remove with empty id: %v", err)
	}

	// A join sent to a follower is forwarded to the leader. (A non-voter at
	// an address nobody serves: it never counts towards a quorum.)
	join := &raftpb.JoinRequest{Id: "x1", PeerAddress: "127.0.0.1:1", ClusterId: testCluster, Voter: false}
	resp, err := fc.Join(ctxT(t), join)
	if err != nil {
		t.Fatalf("join via follower: %v", err)
	}
	if resp.GetLeaderId() != leader.id || resp.GetIndex() == 0 {
		t.Errorf("join response %v, want leader %s and an index", resp, leader.id)
	}
	testwait.Eventually(t, waitTimeout, "x1 a non-voter in the follower's view", func() (bool, string) {
		members, err := follower.el.Members()
		if err != nil {
			return false, err.Error()
		}
		for _, m := range members {
			if m.ID == "x1" {
				return m.Suffrage == "nonvoter", m.Suffrage
			}
		}
		return false, "absent"
	})
	if _, err := fc.Join(ctxT(t), join); err != nil {
		t.Errorf("second identical join: %v, want success (idempotent)", err)
	}
	moved := &raftpb.JoinRequest{Id: "x1", PeerAddress: "127.0.0.1:2", ClusterId: testCluster}
	if _, err := fc.Join(ctxT(t), moved); status.Code(err) != codes.AlreadyExists {
		t.Errorf("join of x1 at another address: %v, want AlreadyExists", err)
	}

	// A call that was already forwarded once is not forwarded again: the
	// follower names the leader instead.
	fwd := metadata.AppendToOutgoingContext(ctxT(t), api.MetadataForwarded, "someone")
	_, err = fc.Join(fwd, &raftpb.JoinRequest{Id: "x2", PeerAddress: "127.0.0.1:3", ClusterId: testCluster})
	if status.Code(err) != codes.FailedPrecondition || api.ReasonOf(err) != api.ReasonNotLeader || !strings.Contains(err.Error(), leader.addr()) {
		t.Errorf("forwarded join at a follower: %v, want FailedPrecondition NOT_LEADER naming %s", err, leader.addr())
	}

	// Remove, through the follower too; an unknown id is NotFound.
	if _, err := fc.Remove(ctxT(t), &raftpb.RemoveRequest{Id: "ghost"}); status.Code(err) != codes.NotFound {
		t.Errorf("remove of an unknown id: %v, want NotFound", err)
	}
	if _, err := fc.Remove(ctxT(t), &raftpb.RemoveRequest{Id: "x1"}); err != nil {
		t.Fatalf("remove via follower: %v", err)
	}
	members, err := leader.el.Members()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		if m.ID == "x1" {
			t.Errorf("x1 still a member after Remove: %+v", members)
		}
	}
}

// TestAdminNoLeader: a node that knows no leader cannot forward, and says
// so with Unavailable / NO_LEADER; before its election exists it answers
// the same way.
func TestAdminNoLeader(t *testing.T) {
	m := newAdmin(t, "n1")
	// Bootstrapped with a second voter that never starts: no quorum, no
	// leader. Its election starts only after the first call.
	tc := startAdmins(t, []*member{m}, testcluster.ElectionOptions{
		NoStart: map[int]bool{0: true},
		Tweak: func(cfg *election.Config) {
			cfg.Bootstrap = append(cfg.Bootstrap, election.Peer{ID: "n2", Address: "127.0.0.1:1", Voter: true})
		},
	})
	c := raftpb.NewClusterAdminClient(dial(t, m.addr()))
	req := &raftpb.JoinRequest{Id: "x", PeerAddress: "127.0.0.1:1", ClusterId: testCluster}

	_, err := c.Join(ctxT(t), req)
	if status.Code(err) != codes.Unavailable || api.ReasonOf(err) != api.ReasonNoLeader {
		t.Errorf("join before the election exists: %v, want Unavailable NO_LEADER", err)
	}
	m.start(tc, 0)
	_, err = c.Join(ctxT(t), req)
	if status.Code(err) != codes.Unavailable || api.ReasonOf(err) != api.ReasonNoLeader {
		t.Errorf("join without a leader: %v, want Unavailable NO_LEADER", err)
	}
	_, err = c.Remove(ctxT(t), &raftpb.RemoveRequest{Id: "n2"})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("remove without a leader: %v, want Unavailable", err)
	}
}

func TestConfigValidate(t *testing.T) {
	if _, err := api.NewAdmin(api.AdminConfig{}); err == nil || !strings.Contains(err.Error(), "ID is empty") {
		t.Errorf("NewAdmin(empty): %v", err)
	}
	if _, err := api.NewCoordinator(api.CoordinatorConfig{ID: "a", ClusterID: "b"}); err == nil || !strings.Contains(err.Error(), "Election is nil") {
		t.Errorf("NewCoordinator without election: %v", err)
	}
	cfg := api.DefaultAdminConfig()
	cfg.ID, cfg.Election, cfg.ForwardTimeout = "a", &api.ElectionRef{}, -1
	if _, err := api.NewAdmin(cfg); err == nil {
		t.Error("negative ForwardTimeout accepted")
	}
}

// TestRemovedRequest: the Removed handler checks the notice is for this node
// and this cluster, and refuses it without a running raft to check it
// against (see TestRemovedChecks for the leader and commit checks).
func TestRemovedRequest(t *testing.T) {
	var got []*raftpb.RemovedRequest
	cfg := api.DefaultAdminConfig()
	cfg.ID, cfg.ClusterID, cfg.Election = "n3", testCluster, soloElection{}
	cfg.OnRemoved = func(n *raftpb.RemovedRequest) error { got = append(got, n); return nil }
	a, err := api.NewAdmin(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.OnRemoved = nil
	off, err := api.NewAdmin(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		admin *api.Admin
		req   *raftpb.RemovedRequest
		want  codes.Code
	}{
		{"another node's notice", a, &raftpb.RemovedRequest{Id: "n2", ClusterId: testCluster, Index: 9, LeaderId: "n1"}, codes.InvalidArgument},
		{"another cluster", a, &raftpb.RemovedRequest{Id: "n3", ClusterId: "other", Index: 9, LeaderId: "n1"}, codes.FailedPrecondition},
		{"no handler", off, &raftpb.RemovedRequest{Id: "n3", ClusterId: testCluster, Index: 9, LeaderId: "n1"}, codes.Unimplemented},
		{"no raft to check it against", a, &raftpb.RemovedRequest{Id: "n3", ClusterId: testCluster, Index: 9, LeaderId: "n1"}, codes.FailedPrecondition},
	} {
		_, err := tc.admin.Removed(ctxT(t), tc.req)
		if status.Code(err) != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if len(got) != 0 {
		t.Errorf("OnRemoved saw %v, want none", got)
	}
}

// TestRemovedChecks: on a cluster of three over loopback gRPC, a follower
// refuses a Removed notice (and its OnRemoved, which stops a node, is not
// called) that names no sender, names a sender that is not the raft leader,
// or names the leader while the follower is still in the committed
// configuration (the attack of issue "Security": a live node made to exit).
// The real removal, through the leader's Remove, is accepted.
func TestRemovedChecks(t *testing.T) {
	var (
		mu      sync.Mutex
		notices = map[string][]*raftpb.RemovedRequest{}
	)
	var ms []*member
	for i := 0; i < 3; i++ {
		id := fmt.Sprintf("n%d", i+1)
		ms = append(ms, newAdminWith(t, id, func(cfg *api.AdminConfig) {
			cfg.OnRemoved = func(n *raftpb.RemovedRequest) error {
				mu.Lock()
				defer mu.Unlock()
				notices[id] = append(notices[id], n)
				return nil
			}
		}))
	}
	c := startAdmins(t, ms, testcluster.ElectionOptions{})
	c.WaitLeader(waitTimeout)
	leader := leaderOfCluster(ms)
	var victim, other *member
	for _, m := range ms {
		switch {
		case m == leader:
		case victim == nil:
			victim = m
		default:
			other = m
		}
	}
	testwait.Eventually(t, waitTimeout, victim.id+" follows "+leader.id, func() (bool, string) {
		_, id := victim.el.Raft().LeaderWithID()
		return string(id) == leader.id, string(id)
	})
	vc := raftpb.NewClusterAdminClient(dial(t, victim.addr()))
	notice := func(sender string) *raftpb.RemovedRequest {
		return &raftpb.RemovedRequest{Id: victim.id, ClusterId: testCluster, Index: victim.el.Raft().LastIndex(), LeaderId: sender}
	}
	for _, tc := range []struct {
		name string
		req  *raftpb.RemovedRequest
		want codes.Code
	}{
		{"no sender", notice(""), codes.PermissionDenied},
		{"a sender that is not the leader", notice(other.id), codes.PermissionDenied},
		{"the receiver itself as sender", notice(victim.id), codes.PermissionDenied},
		{"the leader as sender, the node still in the configuration", notice(leader.id), codes.FailedPrecondition},
	} {
		ctx, cancel := context.WithTimeout(ctxT(t), time.Second)
		_, err := vc.Removed(ctx, tc.req)
		cancel()
		if status.Code(err) != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	mu.Lock()
	if n := notices[victim.id]; len(n) != 0 {
		t.Errorf("OnRemoved saw forged notices: %v", n)
	}
	mu.Unlock()

	// The real removal: the leader removes the victim and tells it.
	lc := raftpb.NewClusterAdminClient(dial(t, leader.addr()))
	if _, err := lc.Remove(ctxT(t), &raftpb.RemoveRequest{Id: victim.id}); err != nil {
		t.Fatalf("remove %s: %v", victim.id, err)
	}
	testwait.Eventually(t, waitTimeout, victim.id+" accepted the leader's notice", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		n := notices[victim.id]
		return len(n) == 1 && n[0].GetLeaderId() == leader.id, fmt.Sprint(n)
	})
}
