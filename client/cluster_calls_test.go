package client

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
)

// TestLeadershipCalls exercises the calls that move leadership and change
// the cluster, through clients whose local node is a follower (the server
// forwards to the leader): GetLeader with addresses, WatchMembers following
// a priority change, TransferLeadership to a follower (whose RunWhileLeader
// then runs fn for the first time, after the old leader's fn was
// cancelled), StepDown, Join and Remove of a node, and Leave of the local
// node.
func TestLeadershipCalls(t *testing.T) {
	c := startCluster(t, 3)
	leader := c.Leader()
	fs := c.Followers()
	f1, f2 := fs[0], fs[1]
	ctx := testcluster.Context(t)
	cl1, cl2 := newClient(t, f1, f2), newClient(t, f2, f1)

	t.Run("GetLeader names the leader's addresses", func(t *testing.T) {
		l, err := cl1.Leader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if l.ID != leader.ID() || l.ClientAddress != leader.ClientAddr() || l.HTTPAddress != leader.HTTPAddr() || l.PeerAddress != leader.PeerAddr() || l.IsSelf {
			t.Errorf("Leader() through %s = %+v", f1.ID(), l)
		}
	})

	t.Run("WatchMembers follows a priority change", func(t *testing.T) {
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		ch := cl1.WatchMembers(wctx)
		next := func() MembersEvent {
			t.Helper()
			select {
			case ev, ok := <-ch:
				if !ok || ev.Err != nil {
					t.Fatalf("members watch ended: %v", ev.Err)
				}
				return ev
			case <-time.After(waitTimeout):
				t.Fatal("no members event")
			}
			return MembersEvent{}
		}
		first := next()
		if len(first.Members) != 3 || first.Endpoint != f1.ClientAddr() || first.Reconnected {
			t.Fatalf("first members event %+v", first)
		}
		// The leader's own priority: a higher one elsewhere would move leadership.
		for _, p := range []uint32{7, 0} {
			if _, err := cl2.SetLeaderPriority(ctx, leader.ID(), p); err != nil {
				t.Fatal(err)
			}
			for {
				ev := next()
				var got uint32 = 999
				for _, m := range ev.Members {
					if m.ID == leader.ID() {
						got = m.LeaderPriority
					}
				}
				if got == p {
					break
				}
			}
		}
		if _, err := cl2.SetLeaderPriority(ctx, "", 101); status.Code(err) != codes.InvalidArgument {
			t.Errorf("priority 101 = %v, want InvalidArgument", err)
		}
	})

	// RunWhileLeader on every node's client.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runners := startRunners(t, rctx, c.Live())
	first := runners[leader.ID()].waitRuns(t, 1)[0]
	defer func() {
		cancel()
		for _, r := range runners {
			<-r.done
		}
	}()

	t.Run("TransferLeadership to a follower", func(t *testing.T) {
		if n := len(runners[f1.ID()].snapshot()); n != 0 {
			t.Fatalf("the follower %s ran fn %d times before it led", f1.ID(), n)
		}
		ch, err := cl2.TransferLeadership(ctx, f1.ID())
		if err != nil {
			t.Fatal(err)
		}
		if ch.Previous != leader.ID() || ch.Leader.ID != f1.ID() || ch.Leader.FencingToken <= first.token || ch.Leader.ClientAddress != f1.ClientAddr() {
			t.Errorf("TransferLeadership = %+v", ch)
		}
		old := runners[leader.ID()].waitCancelled(t, 0)
		got := runners[f1.ID()].waitRuns(t, 1)[0]
		if got.token != ch.Leader.FencingToken || !old.cancelled.Before(got.started) {
			t.Errorf("new leader's fn: token %d (transfer says %d), started %v after the old fn was cancelled",
				got.token, ch.Leader.FencingToken, got.started.Sub(old.cancelled))
		}
		// A repeat is a no-op.
		again, err := cl1.TransferLeadership(ctx, f1.ID())
		if err != nil || again.Leader.ID != f1.ID() || again.Leader.FencingToken != ch.Leader.FencingToken {
			t.Errorf("repeated transfer = %+v, %v", again, err)
		}
		if _, err := cl1.TransferLeadership(ctx, "nope"); status.Code(err) != codes.NotFound {
			t.Errorf("transfer to an unknown node = %v, want NotFound", err)
		}
	})

	t.Run("StepDown", func(t *testing.T) {
		ch, err := newClient(t, leader).StepDown(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ch.Previous != f1.ID() || ch.Leader.ID == "" || ch.Leader.ID == f1.ID() {
			t.Errorf("StepDown = %+v", ch)
		}
		runners[f1.ID()].waitCancelled(t, 0)
		c.Leader()
	})

	t.Run("Join and Remove", func(t *testing.T) {
		addr := deadAddr(t)
		idx, err := cl1.Join(ctx, "n9", addr, false)
		if err != nil || idx == 0 {
			t.Fatalf("Join = %d, %v", idx, err)
		}
		if again, err := cl2.Join(ctx, "n9", addr, false); err != nil || again != 0 {
			t.Errorf("repeated Join = %d, %v; want 0 (no-op)", again, err)
		}
		if _, err := cl1.Join(ctx, "n9", deadAddr(t), false); status.Code(err) != codes.AlreadyExists {
			t.Errorf("Join of a taken id at another address = %v, want AlreadyExists", err)
		}
		ridx, err := cl2.Remove(ctx, "n9")
		if err != nil || ridx <= idx {
			t.Fatalf("Remove = %d, %v", ridx, err)
		}
		if _, err := cl2.Remove(ctx, "n9"); status.Code(err) != codes.NotFound {
			t.Errorf("second Remove = %v, want NotFound", err)
		}
	})

	t.Run("Leave", func(t *testing.T) {
		res, err := cl2.Leave(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if res.NodeID != f2.ID() {
			t.Errorf("Leave = %+v", res)
		}
		testwait.Eventually(t, testcluster.DefaultWait, f2.ID()+" recorded as left", func() (bool, string) {
			ms, err := cl1.Members(ctx)
			if err != nil {
				return false, err.Error()
			}
			for _, m := range ms {
				if m.ID == f2.ID() {
					return m.State == "left", fmt.Sprintf("%+v", m)
				}
			}
			return false, "not listed"
		})
	})
}
