package node_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
	"github.com/heartbeat-sidecar/heartbeat/node"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
	"github.com/heartbeat-sidecar/heartbeat/proto/raftpb"
	"github.com/heartbeat-sidecar/heartbeat/rpc/api"
)

// TestGhostVotersJoin: three "voters" whose addresses nobody listens on
// join a 3-node cluster through a follower's client port (Join, forwarded to
// the leader over ClusterAdmin). They enter as learners and, never
// answering, stay non-voters: the quorum stays 2 of 3 and writes commit.
// Before learners, the third ghost made 6 voters of which 3 answer (quorum
// 4): its join never committed and the cluster stopped for good. A real
// node that joins as a voter is then promoted, and writes still commit.
func TestGhostVotersJoin(t *testing.T) {
	c := startMemCluster(t, 3, 0)
	client := heartbeatpb.NewCoordinatorClient(dialClient(t, c.Follower().ClientAddr()))
	write := func(what string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := client.RegisterResources(ctx, &heartbeatpb.RegisterResourcesRequest{
			Resources: []*heartbeatpb.ResourceSpec{{Id: what}}})
		if err != nil {
			t.Fatalf("write %s: %v", what, err)
		}
	}
	write("before-ghosts")

	ghosts := testcluster.FreeAddrs(t, 3) // reserved: nothing listens on them
	for i, addr := range ghosts {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := client.Join(ctx, &heartbeatpb.JoinRequest{NodeId: fmt.Sprintf("ghost%d", i+1), PeerAddress: addr})
		cancel()
		if err != nil {
			t.Fatalf("join ghost%d at %s: %v", i+1, addr, err)
		}
		write(fmt.Sprintf("after-ghost%d", i+1))
	}
	members, err := c.Leader().Members()
	if err != nil {
		t.Fatal(err)
	}
	voters := 0
	for _, m := range members {
		if m.Suffrage == "voter" {
			voters++
		}
		if len(m.ID) > 5 && m.ID[:5] == "ghost" && m.Suffrage != "staging" {
			t.Fatalf("%s is %q on the leader, want staging (a learner waiting for promotion): %+v", m.ID, m.Suffrage, members)
		}
	}
	if voters != 3 {
		t.Fatalf("%d voters after the ghost joins, want 3: %+v", voters, members)
	}

	// A real node joining as a voter is promoted; the ghosts are not.
	n4 := c.Join("n4", testcluster.FreeAddrs(t, 1)[0], true)
	testwait.Eventually(t, waitTimeout, "n4 promoted to voter", func() (bool, string) {
		ms, err := c.Leader().Members()
		if err != nil {
			return false, err.Error()
		}
		got := map[string]string{}
		for _, m := range ms {
			got[m.ID] = m.Suffrage
		}
		return got["n4"] == "voter" && got["ghost1"] == "staging", fmt.Sprint(got)
	})
	testwait.Eventually(t, waitTimeout, "n4 to see itself a voter", func() (bool, string) {
		s := n4.Status()
		return s.Voter, fmt.Sprintf("%+v", s)
	})
	write("after-n4")
}

// TestRemoveRefusedChangesNothing: with one of three voters dead, a
// ClusterAdmin Remove of a live voter (the peer port, below the client
// port's own membership check) is refused with FailedPrecondition by the
// election's quorum guard, and the member stays an alive voter: the guard
// runs before the leader records the member as left.
func TestRemoveRefusedChangesNothing(t *testing.T) {
	c := startMemCluster(t, 3, 0)
	lead := c.Leader()
	fs := c.Followers()
	dead, keep := fs[0].Status().ID, fs[1].Status().ID
	c.Kill(dead)
	testwait.Eventually(t, waitTimeout, "the leader to count the killed voter as dead", func() (bool, string) {
		err := lead.Election().CheckRemove(ctxT(t), keep)
		return errors.Is(err, election.ErrQuorumAtRisk), fmt.Sprint(err)
	})

	admin := raftpb.NewClusterAdminClient(dialClient(t, lead.PeerAddr()))
	ctx := api.OutgoingContext(ctxT(t), keep, lead.Status().ClusterID)
	_, err := admin.Remove(ctx, &raftpb.RemoveRequest{Id: keep})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("remove a live voter with another voter dead: %v, want FailedPrecondition", err)
	}
	ms, err := lead.Members()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.ID == keep && (!m.Voter || m.State != "alive") {
			t.Fatalf("the refused removal changed %s: %+v", keep, m)
		}
	}
}

// TestLearnerAsksNewLeader: a learner the leader was about to promote is
// forgotten when leadership moves (only the leader keeps the learners it
// promotes); the joining node asks again until it is a voter, so the new
// leader promotes it. The leader's link to n4 is cut until the hand-off,
// so the first leader cannot promote it.
func TestLearnerAsksNewLeader(t *testing.T) {
	c := startCluster(t, 3, 0, testcluster.Options{FaultNet: true})
	lead := c.Leader()
	addr4 := testcluster.FreeAddrs(t, 1)[0]
	c.Net().Cut(raft.ServerAddress(lead.PeerAddr()), raft.ServerAddress(addr4))
	c.Join("n4", addr4, true)
	suffrageOf := func(n *node.Node, id string) string {
		ms, err := n.Members()
		if err != nil {
			return err.Error()
		}
		for _, m := range ms {
			if m.ID == id {
				return m.Suffrage
			}
		}
		return ""
	}
	testwait.Eventually(t, waitTimeout, "n4 a learner waiting on the first leader", func() (bool, string) {
		s := suffrageOf(lead, "n4")
		return s == "staging", s
	})
	target := "n1"
	if lead.ID() == target {
		target = "n2"
	}
	if _, err := lead.Election().TransferLeadership(ctxT(t), target); err != nil {
		t.Fatalf("transfer leadership to %s: %v", target, err)
	}
	c.Net().HealAll()
	testwait.Eventually(t, waitTimeout, "n4 promoted by the new leader", func() (bool, string) {
		l := c.Node(target)
		s := suffrageOf(l, "n4")
		return l.Election().Leadership().IsLeader && s == "voter", target + " says n4 is " + s
	})
}
