package node_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
	"github.com/heartbeat-sidecar/heartbeat/rpc/api"
)

// TestWriteOutcomeUnknownNotRetried: a write forwarded by a follower to a
// leader that appends it, sends it to the followers, never hears their
// replies (a one-way partition) and steps down. The next leader commits the
// entry. The follower must not forward the write again, to the next leader:
// that applies it a second time, after whatever another client wrote
// meanwhile (the chaos suite's reads-and-writes check saw a registration
// come back after another client had deleted it). The answer is
// Unavailable with the outcome unknown, without NOT_LEADER or NO_LEADER
// (which tell a client that nothing was done), and the resource is there
// once the cluster heals.
func TestWriteOutcomeUnknownNotRetried(t *testing.T) {
	c, fn := startFaultCluster(t, 3)
	lead := c.Leader()
	c.WaitMembers()
	f := c.Follower()
	client := heartbeatpb.NewCoordinatorClient(dialClient(t, f.ClientAddr()))
	for _, o := range c.Live() {
		if o.ID() != lead.ID() {
			fn.Cut(raft.ServerAddress(o.PeerAddr()), raft.ServerAddress(lead.PeerAddr()))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	_, err := client.RegisterResources(ctx, &heartbeatpb.RegisterResourcesRequest{
		Resources: []*heartbeatpb.ResourceSpec{{Id: "in-doubt", Weight: 7}}})
	fn.HealAll()
	t.Logf("write through %s to the cut-off leader %s: %v", f.ID(), lead.ID(), err)
	switch {
	case err == nil:
		t.Fatalf("answered OK: a write whose first attempt was appended by a deposed leader was applied again")
	case status.Code(err) != codes.Unavailable:
		t.Fatalf("answered %v, want Unavailable (outcome unknown)", err)
	case api.ReasonOf(err) != "":
		t.Fatalf("answered with reason %s, which says nothing was done: %v", api.ReasonOf(err), err)
	}
	testwait.Eventually(t, waitTimeout, "the in-doubt write committed by the next leader", func() (bool, string) {
		for _, n := range c.Live() {
			if _, ok := owners(n.Membership().View())["in-doubt"]; !ok {
				return false, fmt.Sprintf("%s has no in-doubt", n.ID())
			}
		}
		return true, ""
	})
}
