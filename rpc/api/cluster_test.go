package api_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
	"github.com/heartbeat-sidecar/heartbeat/membership"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
	mpb "github.com/heartbeat-sidecar/heartbeat/proto/membershippb"
	"github.com/heartbeat-sidecar/heartbeat/rpc/api"
)

// coordNode is a cluster member with a membership state machine and a
// Coordinator (with Admin) on its own client port.
type coordNode struct {
	*member
	fsm    *membership.FSM
	coord  *api.Coordinator
	client heartbeatpb.CoordinatorClient
	caddr  string
}

// newCoordCluster starts n voters with membership state machines and
// Coordinators, and registers every member (peer, client and HTTP
// addresses) in the membership state.
func newCoordCluster(t *testing.T, n int) []*coordNode {
	t.Helper()
	fsms := map[string]*membership.FSM{}
	ms := newClusterWith(t, n, func(id string) raft.FSM {
		f, err := membership.NewFSM(membership.Config{FeedCapacity: membership.MaxBatch})
		if err != nil {
			t.Fatal(err)
		}
		fsms[id] = f
		return f
	})
	var out []*coordNode
	for _, m := range ms {
		cn := &coordNode{member: m, fsm: fsms[m.id]}
		cn.coord, cn.client, cn.caddr = serveCoordinatorWith(t, m, func(cfg *api.CoordinatorConfig) {
			cfg.Membership, cfg.Applier, cfg.Admin = cn.fsm, m.el, m.admin
		})
		out = append(out, cn)
	}
	leader := coordLeader(t, out)
	for _, cn := range out {
		spec := membership.MemberSpec{ID: cn.id, PeerAddr: cn.addr(), ClientAddr: cn.caddr, HTTPAddr: "http-" + cn.id, Voter: true}
		if _, err := leader.coord.Commit(ctxT(t), membership.UpsertMemberCmd(spec)); err != nil {
			t.Fatalf("register %s: %v", cn.id, err)
		}
	}
	testwait.Eventually(t, waitTimeout, "every member registered everywhere", func() (bool, string) {
		for _, cn := range out {
			if got := len(cn.fsm.View().Members); got != n {
				return false, fmt.Sprintf("%s knows %d members", cn.id, got)
			}
		}
		return true, ""
	})
	return out
}

// coordLeader waits until every node names the same leader, which claims
// leadership, and returns it.
func coordLeader(t *testing.T, cs []*coordNode) *coordNode {
	t.Helper()
	var leader *coordNode
	testwait.Eventually(t, waitTimeout, "one leader known to all", func() (bool, string) {
		leader = nil
		seen := ""
		for _, c := range cs {
			l := c.el.Leadership()
			if l.LeaderID == "" || (seen != "" && l.LeaderID != seen) {
				return false, fmt.Sprintf("%s sees %q", c.id, l.LeaderID)
			}
			seen = l.LeaderID
			if c.id == seen && l.IsLeader {
				leader = c
			}
		}
		return leader != nil, "the leader does not claim leadership yet"
	})
	return leader
}

func others(cs []*coordNode, not ...*coordNode) []*coordNode {
	var out []*coordNode
	for _, c := range cs {
		skip := false
		for _, x := range not {
			skip = skip || c == x
		}
		if !skip {
			out = append(out, c)
		}
	}
	return out
}

// TestCoordinatorClusterCalls runs the leadership and configuration calls on
// a three-node cluster: bad input first (nothing applied), then GetLeader,
// StepDown and TransferLeadership through followers, and Join and Remove
// through a follower.
func TestCoordinatorClusterCalls(t *testing.T) {
	cs := newCoordCluster(t, 3)
	t.Run("bad input", func(t *testing.T) { testClusterBadInput(t, cs) })
	t.Run("get leader", func(t *testing.T) { testGetLeader(t, cs) })
	t.Run("step down and transfer", func(t *testing.T) { testLeadershipChanges(t, cs) })
	t.Run("join and remove", func(t *testing.T) { testJoinRemove(t, cs) })
}

func testClusterBadInput(t *testing.T, cs []*coordNode) {
	leader := coordLeader(t, cs)
	follower := others(cs, leader)[0]
	long := strings.Repeat("n", membership.MaxMemberIDLen+1)
	type call func(c heartbeatpb.CoordinatorClient) error
	tests := []struct {
		name string
		call call
		want codes.Code
	}{
		{"transfer: empty id", func(c heartbeatpb.CoordinatorClient) error {
			_, err := c.TransferLeadership(ctxT(t), &heartbeatpb.TransferLeadershipRequest{})
			return err
		}, codes.InvalidArgument},
		{"transfer: oversized id", func(c heartbeatpb.CoordinatorClient) error {
			_, err := c.TransferLeadership(ctxT(t), &heartbeatpb.TransferLeadershipRequest{NodeId: long})
			return err
		}, codes.InvalidArgument},
		{"transfer: control character", func(c heartbeatpb.CoordinatorClient) error {
			_, err := c.TransferLeadership(ctxT(t), &heartbeatpb.TransferLeadershipRequest{NodeId: "n\x01"})
			return err
		}, codes.InvalidArgument},
		{"transfer: unknown id", func(c heartbeatpb.CoordinatorClient) error {
			_, err := c.TransferLeadership(ctxT(t), &heartbeatpb.TransferLeadershipRequest{NodeId: "nope"})
			return err
		}, codes.NotFound},
		{"priority: above 100", func(c heartbeatpb.CoordinatorClient) error {
			_, err := c.SetLeaderPriority(ctxT(t), &heartbeatpb.SetLeaderPriorityRequest{NodeId: "n1", Priority: 101})
			return err
		}, codes.InvalidArgument},
		{"priority: oversized id", func(c heartbeatpb.CoordinatorClient) error {
			_, err := c.SetLeaderPriority(ctxT(t), &heartbeatpb.SetLeaderPriorityRequest{NodeId: long, Priority: 1})
			return err
		}, codes.InvalidArgument},
		{"priority: unknown id", func(c heartbeatpb.CoordinatorClient) error {
			_, err := c.SetLeaderPriority(ctxT(t), &heartbeatpb.SetLeaderPriorityRequest{NodeId: "nope", Priority: 1})
			return err
		}, codes.NotFound},
		{"join: empty id", func(c heartbeatpb.CoordinatorClient) error {
			_, err := c.Join(ctxT(t), &heartbeatpb.JoinRequest{PeerAddress: "127.0.0.1:9"})
			return err
		}, codes.InvalidArgument},
		{"join: id of 65 bytes", func(c heartbeatpb.CoordinatorClient) error {
			_, err := c.Join(ctxT(t), &heartbeatpb.JoinRequest{NodeId: strings.Repeat("x", api.MaxJoinIDLen+1), PeerAddress: "127.0.0.1:9"})
			return err
		}, codes.InvalidArgument},
		{"join: id with a space", func(c heartbeatpb.CoordinatorClient) error {
			_, err := c.Join(ctxT(t), &heartbeatpb.JoinRequest{NodeId: "a b", PeerAddress: "127.0.0.1:9"})
			return err
		}, codes.InvalidArgument},
		{"join: empty address", func(c heartbeatpb.CoordinatorClient) error {
			_, err := c.Join(ctxT(t), &heartbeatpb.JoinRequest{NodeId: "x9"})
			return err
		}, codes.InvalidArgument},
		{"join: no port", func(c heartbeatpb.CoordinatorClient) error {
			_, err := c.Join(ctxT(t), &heartbeatpb.JoinRequest{NodeId: "x9", PeerAddress: "nohost"})
			return err
		}, codes.InvalidArgument},
		{"join: no host", func(c heartbeatpb.CoordinatorClient) error {
			_, err := c.Join(ctxT(t), &heartbeatpb.JoinRequest{NodeId: "x9", PeerAddress: ":7000"})
			return err
		}, codes.InvalidArgument},
		{"join: wildcard host", func(c heartbeatpb.CoordinatorClient) error {
			_, err := c.Join(ctxT(t), &heartbeatpb.JoinRequest{NodeId: "x9", PeerAddress: "0.0.0.0:7000"})
			return err
		}, codes.InvalidArgument},
		{"join: port 0", func(c heartbeatpb.CoordinatorClient) error {
			_, err := c.Join(ctxT(t), &heartbeatpb.JoinRequest{NodeId: "x9", PeerAddress: "127.0.0.1:0"})
			return err
		}, codes.InvalidArgument},
		{"join: port out of range", func(c heartbeatpb.CoordinatorClient) error {
			_, err := c.Join(ctxT(t), &heartbeatpb.JoinRequest{NodeId: "x9", PeerAddress: "127.0.0.1:99999"})
			return err
		}, codes.InvalidArgument},
		{"join: oversized address", func(c heartbeatpb.CoordinatorClient) error {
			_, err := c.Join(ctxT(t), &heartbeatpb.JoinRequest{NodeId: "x9", PeerAddress: strings.Repeat("h", 300) + ":7000"})
			return err
		}, codes.InvalidArgument},
		{"join: id taken at another address", func(c heartbeatpb.CoordinatorClient) error {
			_, err := c.Join(ctxT(t), &heartbeatpb.JoinRequest{NodeId: "n1", PeerAddress: "127.0.0.1:9"})
			return err
		}, codes.AlreadyExists},
		{"join: address taken by another id", func(c heartbeatpb.CoordinatorClient) error {
			_, err := c.Join(ctxT(t), &heartbeatpb.JoinRequest{NodeId: "x9", PeerAddress: cs[0].addr()})
			return err
		}, codes.AlreadyExists},
		{"remove: empty id", func(c heartbeatpb.CoordinatorClient) error {
			_, err := c.Remove(ctxT(t), &heartbeatpb.RemoveRequest{})
			return err
		}, codes.InvalidArgument},
		{"remove: oversized id", func(c heartbeatpb.CoordinatorClient) error {
			_, err := c.Remove(ctxT(t), &heartbeatpb.RemoveRequest{NodeId: long})
			return err
		}, codes.InvalidArgument},
		{"remove: unknown id", func(c heartbeatpb.CoordinatorClient) error {
			_, err := c.Remove(ctxT(t), &heartbeatpb.RemoveRequest{NodeId: "nope"})
			return err
		}, codes.NotFound},
		{"leave: no hook", func(c heartbeatpb.CoordinatorClient) error {
			_, err := c.Leave(ctxT(t), &heartbeatpb.LeaveRequest{})
			return err
		}, codes.Unimplemented},
	}
	rev := leader.fsm.Revision()
	before, err := leader.el.Members()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		for _, via := range []*coordNode{leader, follower} {
			if err := tt.call(via.client); status.Code(err) != tt.want {
				t.Errorf("%s via %s: %v, want %v", tt.name, via.id, err, tt.want)
			} else if err != nil && status.Convert(err).Message() == "" {
				t.Errorf("%s via %s: no message", tt.name, via.id)
			}
		}
	}
	// Removing the serving node itself is Leave's job.
	if _, err := follower.client.Remove(ctxT(t), &heartbeatpb.RemoveRequest{NodeId: follower.id}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("remove of the serving node: %v, want FailedPrecondition", err)
	}
	// Nothing was applied.
	if got := leader.fsm.Revision(); got != rev {
		t.Errorf("membership revision moved from %d to %d on refused calls", rev, got)
	}
	after, err := leader.el.Members()
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("configuration changed on refused calls: %v -> %v", before, after)
	}
}

func testGetLeader(t *testing.T, cs []*coordNode) {
	leader := coordLeader(t, cs)
	follower := others(cs, leader)[0]
	evResp, err := follower.client.GetLeader(ctxT(t), &heartbeatpb.GetLeaderRequest{})
	ev := evResp.GetLeadership()
	if err != nil {
		t.Fatal(err)
	}
	l := ev.GetLeader()
	if l.GetNodeId() != leader.id || l.GetPeerAddress() != leader.addr() || l.GetClientAddress() != leader.caddr ||
		l.GetHttpAddress() != "http-"+leader.id || ev.GetFencingToken() == 0 || ev.GetTerm() == 0 || ev.GetIsLeader() ||
		ev.GetLeaseUntil() != nil || ev.GetObserved() == nil {
		t.Errorf("GetLeader on follower %s: %v (leader %s at %s, client %s)", follower.id, ev, leader.id, leader.addr(), leader.caddr)
	}
	levResp, err := leader.client.GetLeader(ctxT(t), &heartbeatpb.GetLeaderRequest{})
	lev := levResp.GetLeadership()
	if err != nil {
		t.Fatal(err)
	}
	if !lev.GetIsLeader() || lev.GetLeaseUntil() == nil || lev.GetLeader().GetClientAddress() != leader.caddr {
		t.Errorf("GetLeader on the leader: %v", lev)
	}
	st, err := follower.client.GetStatus(ctxT(t), &heartbeatpb.GetStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetLeader().GetClientAddress() != leader.caddr || st.GetLeader().GetHttpAddress() != "http-"+leader.id {
		t.Errorf("Status leader addresses: %v", st.GetLeader())
	}
	w, err := follower.client.WatchLeader(ctxT(t), &heartbeatpb.WatchLeaderRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if wev, err := w.Recv(); err != nil || wev.GetLeadership().GetLeader().GetClientAddress() != leader.caddr {
		t.Errorf("WatchLeader first event: %v %v", wev, err)
	}
}

func testLeadershipChanges(t *testing.T, cs []*coordNode) {
	leader := coordLeader(t, cs)
	via := others(cs, leader)[0]
	before := leader.el.Leadership().FencingToken

	// StepDown through a follower: another node leads, with a greater token,
	// and the follower knows it when the call returns.
	chResp, err := via.client.StepDown(ctxT(t), &heartbeatpb.StepDownRequest{})
	ch := chResp.GetChange()
	if err != nil {
		t.Fatalf("step down via %s: %v", via.id, err)
	}
	if ch.GetPreviousNodeId() != leader.id || ch.GetLeader().GetNodeId() == "" || ch.GetLeader().GetNodeId() == leader.id ||
		ch.GetFencingToken() <= before || ch.GetLeader().GetClientAddress() == "" {
		t.Errorf("step down: %v (old leader %s, token %d)", ch, leader.id, before)
	}
	if l := via.el.Leadership(); l.LeaderID != ch.GetLeader().GetNodeId() {
		t.Errorf("%s sees leader %q after the step down answered %q", via.id, l.LeaderID, ch.GetLeader().GetNodeId())
	}
	next := coordLeader(t, cs)
	if next.id != ch.GetLeader().GetNodeId() {
		t.Errorf("leader %s, step down answered %s", next.id, ch.GetLeader().GetNodeId())
	}

	// Transfer to a named voter through the third node.
	rest := others(cs, next)
	target, through := rest[0], rest[1]
	tcResp, err := through.client.TransferLeadership(ctxT(t), &heartbeatpb.TransferLeadershipRequest{NodeId: target.id})
	tc := tcResp.GetChange()
	if err != nil {
		t.Fatalf("transfer to %s via %s: %v", target.id, through.id, err)
	}
	if tc.GetPreviousNodeId() != next.id || tc.GetLeader().GetNodeId() != target.id || tc.GetFencingToken() <= ch.GetFencingToken() {
		t.Errorf("transfer: %v (previous %s, target %s)", tc, next.id, target.id)
	}
	if got := coordLeader(t, cs); got != target {
		t.Errorf("leader after the transfer: %s, want %s", got.id, target.id)
	}
	// The target already leads: a no-op.
	sameResp, err := through.client.TransferLeadership(ctxT(t), &heartbeatpb.TransferLeadershipRequest{NodeId: target.id})
	same := sameResp.GetChange()
	if err != nil || same.GetLeader().GetNodeId() != target.id || same.GetFencingToken() != tc.GetFencingToken() {
		t.Errorf("transfer to the leader: %v %v, want a no-op at token %d", same, err, tc.GetFencingToken())
	}

	// Targets that cannot lead, as the membership state says.
	leader = target
	cand := others(cs, leader)[0]
	for _, bad := range []struct {
		name       string
		set, unset *mpb.Command
	}{
		{"draining", membership.SetDrainCmd(cand.id, true), membership.SetDrainCmd(cand.id, false)},
		{"application unhealthy", membership.SetAppHealthCmd(cand.id, false), membership.SetAppHealthCmd(cand.id, true)},
		{"dead", membership.MarkDeadCmd(cand.id), membership.MarkAliveCmd(cand.id)},
	} {
		commit(t, cs, bad.set)
		for _, c := range cs {
			if _, err := c.client.TransferLeadership(ctxT(t), &heartbeatpb.TransferLeadershipRequest{NodeId: cand.id}); status.Code(err) != codes.InvalidArgument {
				t.Errorf("transfer to %s %s via %s: %v, want InvalidArgument", bad.name, cand.id, c.id, err)
			}
		}
		if bad.name == "dead" {
			// A dead voter does not count towards a majority: removing another
			// live voter would leave one alive of two.
			third := others(cs, leader, cand)[0]
			if _, err := third.client.Remove(ctxT(t), &heartbeatpb.RemoveRequest{NodeId: leader.id}); status.Code(err) != codes.FailedPrecondition {
				t.Errorf("remove leaving no live majority: %v, want FailedPrecondition", err)
			}
		}
		commit(t, cs, bad.unset)
	}
	if got := coordLeader(t, cs); got != leader {
		t.Fatalf("leadership moved during refused transfers: %s", got.id)
	}
}

// TestTransferStatus: the one table of codes for leadership-transfer
// errors (one transfer at a time is election's rule, tested there; here its
// answer's code).
func TestTransferStatus(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want codes.Code
	}{
		{fmt.Errorf("%w: raft", election.ErrTransferInProgress), codes.FailedPrecondition},
		{fmt.Errorf("%w: x is a nonvoter", election.ErrNotVoter), codes.InvalidArgument},
		{fmt.Errorf("%w: x is draining", election.ErrCannotLead), codes.InvalidArgument},
		{fmt.Errorf("%w: x", election.ErrUnknownMember), codes.NotFound},
		{election.ErrNoOtherVoter, codes.Unavailable},
		{&election.NotLeaderError{LeaderID: "n2", LeaderAddr: "a:1"}, codes.FailedPrecondition},
		{&election.NotLeaderError{}, codes.Unavailable},
		{election.ErrShutdown, codes.Unavailable},
		{context.DeadlineExceeded, codes.DeadlineExceeded},
		{errors.New("raft: timed out"), codes.Unavailable},
	} {
		if got := status.Code(api.TransferStatus("step down", tc.err)); got != tc.want {
			t.Errorf("TransferStatus(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// commit applies a command through the leader's Coordinator and waits until
// every node applied it.
func commit(t *testing.T, cs []*coordNode, cmd *mpb.Command) {
	t.Helper()
	res, err := coordLeader(t, cs).coord.Commit(ctxT(t), cmd)
	if err != nil {
		t.Fatalf("commit %v: %v", cmd, err)
	}
	for _, c := range cs {
		if err := c.fsm.WaitRevision(ctxT(t), res.Revision); err != nil {
			t.Fatalf("%s did not apply revision %d: %v", c.id, res.Revision, err)
		}
	}
}

func testJoinRemove(t *testing.T, cs []*coordNode) {
	leader := coordLeader(t, cs)
	follower := others(cs, leader)[0]
	// A member watch sees configuration changes (which come with no
	// membership or leadership event).
	watch, err := follower.client.WatchMembers(ctxT(t), &heartbeatpb.WatchMembersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if first, err := watch.Recv(); err != nil || len(first.GetMembers()) != len(cs) {
		t.Fatalf("first member list: %v %v", first, err)
	}
	// A non-voter at an address nobody serves: it never counts for a quorum.
	join := &heartbeatpb.JoinRequest{NodeId: "x1", PeerAddress: "127.0.0.1:1", Nonvoter: true}
	jr, err := follower.client.Join(ctxT(t), join)
	if err != nil {
		t.Fatalf("join via follower %s: %v", follower.id, err)
	}
	if jr.GetRevision() == 0 {
		t.Errorf("join: index 0 for a new member")
	}
	inConfig := func(c *coordNode, id string) (election.Member, bool) {
		ms, err := c.el.Members()
		if err != nil {
			return election.Member{}, false
		}
		for _, m := range ms {
			if m.ID == id {
				return m, true
			}
		}
		return election.Member{}, false
	}
	// Read-your-writes: the follower that forwarded the join sees it at once.
	if m, ok := inConfig(follower, "x1"); !ok || m.Suffrage != "nonvoter" {
		t.Fatalf("x1 right after the join, in the view of the follower that forwarded it: %+v %v", m, ok)
	}
	for {
		ev, err := watch.Recv()
		if err != nil {
			t.Fatalf("member watch: %v", err)
		}
		if m := memberOf(ev, "x1"); m != nil {
			if heartbeatpb.Short(m.GetSuffrage()) != "nonvoter" || heartbeatpb.Short(m.GetState()) != "" {
				t.Errorf("x1 in the member watch: %v", m)
			}
			break
		}
	}
	if again, err := follower.client.Join(ctxT(t), join); err != nil || again.GetRevision() != 0 {
		t.Errorf("repeated join: %v %v, want a no-op with index 0", again, err)
	}
	// A join that repeats a running voter's own id and address, with the
	// request's defaults, is a no-op that leaves it a voter (before v1 the
	// voter flag defaulted to false and demoted it).
	v := cs[len(cs)-1]
	if again, err := follower.client.Join(ctxT(t), &heartbeatpb.JoinRequest{NodeId: v.id, PeerAddress: v.addr()}); err != nil || again.GetRevision() != 0 {
		t.Errorf("join of the running voter %s with defaults: %v %v, want a no-op", v.id, again, err)
	}
	if m, ok := inConfig(v, v.id); !ok || m.Suffrage != "voter" {
		t.Errorf("%s after a join with defaults: %+v %v, want a voter", v.id, m, ok)
	}
	// Leadership goes to voters only.
	for _, c := range cs {
		if _, err := c.client.TransferLeadership(ctxT(t), &heartbeatpb.TransferLeadershipRequest{NodeId: "x1"}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("transfer to the non-voter via %s: %v, want InvalidArgument", c.id, err)
		}
	}
	rr, err := follower.client.Remove(ctxT(t), &heartbeatpb.RemoveRequest{NodeId: "x1"})
	if err != nil {
		t.Fatalf("remove via follower: %v", err)
	}
	if rr.GetRevision() == 0 {
		t.Errorf("remove: index 0")
	}
	if _, ok := inConfig(follower, "x1"); ok {
		t.Errorf("x1 still in the view of the follower that forwarded its removal")
	}
	testwait.Eventually(t, waitTimeout, "x1 gone from every view", func() (bool, string) {
		for _, c := range cs {
			if _, ok := inConfig(c, "x1"); ok {
				return false, c.id + " still has x1"
			}
		}
		return true, ""
	})
	if _, err := follower.client.Remove(ctxT(t), &heartbeatpb.RemoveRequest{NodeId: "x1"}); status.Code(err) != codes.NotFound {
		t.Errorf("second remove: %v, want NotFound", err)
	}
}

// TestStepDownAlone: a leader without another voter cannot step down, and an
// election without transfers answers Unimplemented.
func TestStepDownAlone(t *testing.T) {
	ms := newCluster(t, 1)
	_, c := serveCoordinator(t, ms[0])
	if _, err := c.StepDown(ctxT(t), &heartbeatpb.StepDownRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("step down of a lone voter: %v, want Unavailable", err)
	}
	_, solo := serveSolo(t)
	if _, err := solo.StepDown(ctxT(t), &heartbeatpb.StepDownRequest{}); status.Code(err) != codes.Unimplemented {
		t.Errorf("step down without transfers: %v, want Unimplemented", err)
	}
}

// TestLeaveHook: Leave answers with the hook's result, keeps its status
// code, and is Unimplemented without a hook.
func TestLeaveHook(t *testing.T) {
	calls := 0
	_, _, c, _ := serveSoloWith(t, func(cfg *api.CoordinatorConfig) {
		cfg.Leave = func(context.Context) (int, error) {
			calls++
			if calls > 1 {
				return 0, status.Error(codes.FailedPrecondition, "already leaving")
			}
			return 7, nil
		}
	})
	resp, err := c.Leave(ctxT(t), &heartbeatpb.LeaveRequest{})
	if err != nil || resp.GetNodeId() != "solo" || resp.GetMoved() != 7 {
		t.Errorf("leave: %v %v", resp, err)
	}
	if _, err := c.Leave(ctxT(t), &heartbeatpb.LeaveRequest{}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("second leave: %v, want FailedPrecondition", err)
	}
	_, plain := serveSolo(t)
	if _, err := plain.Leave(ctxT(t), &heartbeatpb.LeaveRequest{}); status.Code(err) != codes.Unimplemented {
		t.Errorf("leave without a hook: %v, want Unimplemented", err)
	}
}
