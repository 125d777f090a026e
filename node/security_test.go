package node_test

import (
	"context"
	"fmt"
	"math"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
	"github.com/heartbeat-sidecar/heartbeat/proto/raftpb"
	"github.com/heartbeat-sidecar/heartbeat/rpc/transport"
)

// TestPeerPortForgeries replays the peer-port attacks of issue "Security"
// against a follower of a real in-process cluster, from a raw gRPC client
// with no credentials: a forged AppendEntries whose term is 2^64-1 or the
// node's term + 2^21 (raft would adopt it, and 2^64-1 wraps to 0 at the
// next election), a Confirm that would make the node dial an outsider, and
// forged Removed notices. Each is refused; the node's term is unchanged,
// the cluster keeps its leader and the follower keeps running.
func TestPeerPortForgeries(t *testing.T) {
	c := startMemCluster(t, 3, 0)
	leader := c.Leader()
	c.WaitMembers()
	f := c.Follower()
	st, err := heartbeatpb.NewCoordinatorClient(dialClient(t, f.ClientAddr())).GetStatus(ctxT(t), &heartbeatpb.GetStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	// The raft transport requires the cluster header; anyone can send it.
	ctx := metadata.AppendToOutgoingContext(ctxT(t), transport.MetadataCluster, st.GetClusterId(), transport.MetadataNodeID, "mallory")
	conn := dialClient(t, f.PeerAddr())
	rt := raftpb.NewRaftTransportClient(conn)
	r := f.Election().Raft()
	termBefore := r.CurrentTerm()

	for _, term := range []uint64{math.MaxUint64, termBefore + 1<<21} {
		_, err := rt.AppendEntries(ctx, &raftpb.AppendEntriesRequest{
			Header: &raftpb.RPCHeader{ProtocolVersion: 3, Id: []byte("mallory"), Addr: []byte("127.0.0.1:1")},
			Term:   term, Leader: []byte("127.0.0.1:1"),
		})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("AppendEntries with term %d: %v, want InvalidArgument", term, err)
		}
		if got := r.CurrentTerm(); got > termBefore+1 {
			t.Fatalf("AppendEntries with term %d moved the follower's term from %d to %d", term, termBefore, got)
		}
	}

	// Confirm about an address outside the configuration: refused, undialed.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	if _, err := rt.Confirm(ctx, &raftpb.ConfirmRequest{LeaderAddr: lis.Addr().String()}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("Confirm about a non-member: %v, want FailedPrecondition", err)
	}
	_ = lis.(*net.TCPListener).SetDeadline(time.Now().Add(200 * time.Millisecond))
	if conn, err := lis.Accept(); err == nil {
		conn.Close()
		t.Error("Confirm about a non-member dialed it")
	}
	// About the leader, a member: answered (not lost).
	if resp, err := rt.Confirm(ctx, &raftpb.ConfirmRequest{LeaderAddr: leader.PeerAddr()}); err != nil || resp.GetLost() {
		t.Errorf("Confirm about the leader: %v %v, want not lost", resp, err)
	}

	// Forged removal notices: refused, and the node keeps running.
	admin := raftpb.NewClusterAdminClient(conn)
	for _, tc := range []struct {
		name   string
		sender string
		want   codes.Code
	}{
		{"no sender", "", codes.PermissionDenied},
		{"another follower as sender", c.Follower(f.ID()).ID(), codes.PermissionDenied},
		{"the leader as sender, the node still a member", leader.ID(), codes.FailedPrecondition},
	} {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := admin.Removed(rctx, &raftpb.RemovedRequest{Id: f.ID(), ClusterId: st.GetClusterId(), Index: r.LastIndex(), LeaderId: tc.sender})
		cancel()
		if status.Code(err) != tc.want {
			t.Errorf("Removed from %s: %v, want %v", tc.name, err, tc.want)
		}
	}

	// Still the same leader, known to the follower, which still answers
	// and has not stopped.
	testwait.Eventually(t, waitTimeout, "the follower healthy under the same leader", func() (bool, string) {
		l := f.Election().Leadership()
		ok, why := f.Ready()
		return l.LeaderID == leader.ID() && ok, fmt.Sprint(l.LeaderID, " ", why)
	})
	if got := leader.Election().Leadership(); !got.IsLeader && got.LeaderID != leader.ID() {
		t.Errorf("the cluster lost its leader: %+v", got)
	}
	if got := r.CurrentTerm(); got > termBefore+1 {
		t.Errorf("the follower's term moved from %d to %d", termBefore, got)
	}
}
