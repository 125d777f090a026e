package node_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
	"github.com/heartbeat-sidecar/heartbeat/membership"
	"github.com/heartbeat-sidecar/heartbeat/node"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// TestLeave: the leader of three voters and a non-voter leaves through its
// Coordinator. Its resources move to the other members before it goes (no
// resource is ever without an owner in any remaining node's view), another
// voter leads, it is recorded left and removed from the raft configuration,
// a second Leave meanwhile is refused, and its Run returns nil.
func TestLeave(t *testing.T) {
	c := startMemCluster(t, 3, 1)
	n := c.Leader()
	c.WaitMembers()
	registerN(t, c.Follower(), "r", 60)
	c.WaitSettled(60)
	owned := node.NumOwned(n, n.ID())
	if owned == 0 {
		t.Fatalf("the leader %s owns nothing: the fixture is wrong", n.ID())
	}
	runErr := make(chan error, 1)
	go func() { runErr <- n.Run(context.Background()) }()

	var rest []*node.Node
	for _, x := range c.Live() {
		if x != n {
			rest = append(rest, x)
		}
	}
	// Its resources are released, then placed one ownership lease later
	// (1.2 s at these timings); nothing else is ever without an owner.
	releases := watchReleases(rest...)
	mine := ownedBy(n, n.ID())

	client := heartbeatpb.NewCoordinatorClient(dialClient(t, n.ClientAddr()))
	type result struct {
		resp *heartbeatpb.LeaveResponse
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := client.Leave(ctxT(t), &heartbeatpb.LeaveRequest{})
		done <- result{resp, err}
	}()
	testwait.Eventually(t, waitTimeout, "the leave to start", func() (bool, string) { return node.Leaving(n), "" })
	if _, err := client.Leave(ctxT(t), &heartbeatpb.LeaveRequest{}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("second leave while leaving: %v, want FailedPrecondition", err)
	}
	var res result
	select {
	case res = <-done:
	case <-time.After(waitTimeout):
		t.Fatal("leave did not answer")
	}
	if res.err != nil {
		t.Fatalf("leave: %v", res.err)
	}
	if res.resp.GetNodeId() != n.ID() || int(res.resp.GetMoved()) != owned {
		t.Errorf("leave response %v, want node %s and %d moved", res.resp, n.ID(), owned)
	}
	select {
	case err := <-runErr:
		if err != nil {
			t.Errorf("Run after leave: %v, want nil", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Run did not return after the leave")
	}
	c.Forget(n.ID()) // it stopped itself
	releases.check(t, mine, 3*time.Second)

	next := c.Leader()
	if next == n {
		t.Fatalf("%s still leads after leaving", n.ID())
	}
	testwait.Eventually(t, waitTimeout, n.ID()+" left and out of every configuration", func() (bool, string) {
		for _, x := range c.Live() {
			v := x.Membership().View()
			m, ok := findMember(v, n.ID())
			if !ok || m.State != membership.StateLeft {
				return false, fmt.Sprintf("%s sees %+v (%v)", x.ID(), m, ok)
			}
			for _, r := range v.Resources {
				if r.Owner == n.ID() {
					return false, fmt.Sprintf("%s: %s still owned by %s", x.ID(), r.ID, n.ID())
				}
			}
			ms, err := x.Election().Members()
			if err != nil {
				return false, err.Error()
			}
			for _, rm := range ms {
				if rm.ID == n.ID() {
					return false, fmt.Sprintf("%s still has %s in its configuration", x.ID(), n.ID())
				}
			}
		}
		return true, ""
	})
	// The cluster goes on: a write through the new leader commits.
	registerN(t, next, "after", 3)
	c.WaitSettled(63)
}

// TestLeaveRefused: the only voter cannot leave; nothing is applied and the
// refusal can be repeated (the node is not left "leaving").
func TestLeaveRefused(t *testing.T) {
	c := startMemCluster(t, 1, 0)
	n := c.Leader()
	c.WaitMembers()
	rev := n.Membership().Revision()
	client := heartbeatpb.NewCoordinatorClient(dialClient(t, n.ClientAddr()))
	for i := 0; i < 2; i++ {
		_, err := client.Leave(ctxT(t), &heartbeatpb.LeaveRequest{})
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "only voter") {
			t.Fatalf("leave %d of the only voter: %v, want FailedPrecondition (only voter)", i+1, err)
		}
	}
	if m, _ := findMember(n.Membership().View(), n.ID()); m.Draining || m.State != membership.StateAlive {
		t.Errorf("refused leave changed the member: %+v", m)
	}
	if got := n.Membership().Revision(); got != rev {
		t.Errorf("refused leave moved the revision %d -> %d", rev, got)
	}
	select {
	case <-n.Left():
		t.Error("Left closed after a refused leave")
	default:
	}
}

// TestLeaveThenRejoin: a voter that left is started again from its data dir
// with its original flags (the initial cluster): it discards its stale raft
// state, joins again through the other members (instead of campaigning
// forever with a configuration that no longer holds it), is alive and owns
// resources again; a further restart keeps its state.
func TestLeaveThenRejoin(t *testing.T) {
	c := startMemCluster(t, 3, 0)
	c.Leader()
	c.WaitMembers()
	registerN(t, c.Node("n1"), "j", 30)
	c.WaitSettled(30)
	n := c.Follower()
	id := n.ID()
	if _, err := n.Leave(ctxT(t)); err != nil {
		t.Fatalf("leave: %v", err)
	}
	if err := n.Shutdown(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	c.Forget(id)
	if _, err := os.Stat(node.LeftPath(node.DataDir(n))); err != nil {
		t.Fatalf("no left marker after the leave: %v", err)
	}
	inConfig := func(x *node.Node) bool {
		ms, err := x.Election().Members()
		if err != nil {
			return false
		}
		for _, m := range ms {
			if m.ID == id {
				return true
			}
		}
		return false
	}
	leader := c.Leader()
	if inConfig(leader) {
		t.Fatalf("%s still in the configuration after leaving", id)
	}

	back := c.Restart(id)
	testwait.Eventually(t, waitTimeout, id+" a voter again, alive, owning resources", func() (bool, string) {
		l := c.Leader()
		m, _ := findMember(l.Membership().View(), id)
		return inConfig(l) && m.State == membership.StateAlive && node.NumOwned(l, id) > 0,
			fmt.Sprintf("in config %v, %+v, owns %d", inConfig(l), m, node.NumOwned(l, id))
	})
	testwait.Eventually(t, waitTimeout, "the left marker removed", func() (bool, string) {
		_, err := os.Stat(node.LeftPath(node.DataDir(back)))
		return os.IsNotExist(err), fmt.Sprint(err)
	})
	c.WaitSettled(30)

	// A plain restart now keeps the state (nothing is discarded again).
	applied := back.Election().Raft().AppliedIndex()
	c.Kill(id)
	again := c.Restart(id)
	if got := again.Election().Raft().LastIndex(); got < applied {
		t.Errorf("restart after the rejoin lost raft state: last index %d < %d applied before", got, applied)
	}
	c.WaitMembers()
}

// TestRemovedWhileRunning: a running voter removed by the leader (heartbeat
// remove) is told so: its Run returns node.ErrRemoved instead of the node
// campaigning forever with a configuration that no longer holds it. Started
// again from its data dir, it asks to join anew, keeping its raft state, and
// is a member, alive and owning resources again.
func TestRemovedWhileRunning(t *testing.T) {
	c := startMemCluster(t, 3, 0)
	leader := c.Leader()
	c.WaitMembers()
	registerN(t, leader, "m", 30)
	c.WaitSettled(30)
	victim := c.Follower()
	id := victim.ID()
	runErr := make(chan error, 1)
	go func() { runErr <- victim.Run(context.Background()) }()

	client := heartbeatpb.NewCoordinatorClient(dialClient(t, leader.ClientAddr()))
	if _, err := client.Remove(ctxT(t), &heartbeatpb.RemoveRequest{NodeId: id}); err != nil {
		t.Fatalf("remove %s: %v", id, err)
	}
	select {
	case err := <-runErr:
		if !errors.Is(err, node.ErrRemoved) {
			t.Fatalf("Run of the removed node returned %v, want node.ErrRemoved", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("the removed node kept running")
	}
	if phase, found, err := node.LeftPhase(node.DataDir(victim)); err != nil || !found || phase != node.PhaseRejoining {
		t.Fatalf("left marker after the removal: phase %q %v %v", phase, found, err)
	}
	lastBefore := victim.Election().Raft().LastIndex()
	c.Forget(id) // Run returned: it stopped itself

	back := c.Restart(id)
	if got := back.Election().Raft().LastIndex(); got < lastBefore {
		t.Errorf("the removed node's raft state was discarded: last index %d < %d", got, lastBefore)
	}
	testwait.Eventually(t, waitTimeout, id+" a member again, alive and owning resources", func() (bool, string) {
		l := c.Leader()
		m, _ := findMember(l.Membership().View(), id)
		ms, _ := l.Election().Members()
		in := false
		for _, x := range ms {
			in = in || x.ID == id
		}
		return in && m.State == membership.StateAlive && node.NumOwned(l, id) > 0, fmt.Sprintf("in config %v, %+v", in, m)
	})
	testwait.Eventually(t, waitTimeout, "the marker removed", func() (bool, string) {
		_, found, err := node.LeftPhase(node.DataDir(back))
		return !found && err == nil, fmt.Sprint(found, err)
	})
}
