package node

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/proto/raftpb"
	"github.com/heartbeat-sidecar/heartbeat/rpc/api"
)

// joinAttemptTimeout bounds one ClusterAdmin.Join call (a join waits for the
// configuration change to commit).
const joinAttemptTimeout = 10 * time.Second

// isMember reports whether this node is in the raft configuration it knows.
func (n *Node) isMember() bool {
	ms, err := n.el.Members()
	if err != nil {
		return false
	}
	for _, m := range ms {
		if m.ID == n.cfg.ID {
			return true
		}
	}
	return false
}

// joinLoop asks the Join addresses, in turn, to add this node, with
// exponential backoff between rounds, until one succeeds, the node learns it
// is already a member, the cluster refuses for good, or ctx ends. A refusal
// is fatal: Run returns it wrapped in ErrJoinRefused.
func (n *Node) joinLoop(ctx context.Context) {
	backoff := 100 * time.Millisecond
	maxBackoff := n.cfg.JoinRetryMax
	if maxBackoff <= 0 {
		maxBackoff = DefaultConfig().JoinRetryMax
	}
	n.log.Info("joining cluster", "via", n.cfg.Join, "voter", n.cfg.Voter)
	for attempt := 1; ; attempt++ {
		for _, addr := range n.cfg.Join {
			if !n.rejoin && n.isMember() {
				n.log.Info("joined cluster (found self in the configuration)")
				n.afterJoin()
				return
			}
			resp, err := n.joinOnce(ctx, addr)
			if err == nil {
				n.log.Info("joined cluster", "via", addr, "leader", resp.GetLeaderId(), "index", resp.GetIndex())
				n.afterJoin()
				return
			}
			if ctx.Err() != nil {
				return
			}
			if permanentJoinError(err) {
				n.fail(fmt.Errorf("%w: via %s: %v", ErrJoinRefused, addr, err))
				return
			}
			n.log.Warn("join attempt failed", "attempt", attempt, "via", addr, "error", err, "retry_in", backoff)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// joinOnce calls ClusterAdmin.Join on one member's peer address.
func (n *Node) joinOnce(ctx context.Context, addr string) (*raftpb.JoinResponse, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, joinAttemptTimeout)
	defer cancel()
	ctx = api.OutgoingContext(ctx, n.cfg.ID, n.cfg.ClusterID)
	return raftpb.NewClusterAdminClient(conn).Join(ctx, &raftpb.JoinRequest{
		Id:          n.cfg.ID,
		PeerAddress: n.PeerAddr(),
		Voter:       n.cfg.Voter,
		ClusterId:   n.cfg.ClusterID,
	})
}

// permanentJoinError reports whether retrying cannot help: a malformed
// request, an id or address taken by another node, or another cluster.
func permanentJoinError(err error) bool {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.AlreadyExists:
		return true
	case codes.FailedPrecondition:
		// A leader that moved is worth retrying; anything else (our own
		// ClusterAdmin's wrong cluster, or the transport's cluster check,
		// which carries no reason) is not.
		return api.ReasonOf(err) != api.ReasonNotLeader
	}
	return false
}

// afterJoin ends a rejoin after a Leave (see rejoin.go).
func (n *Node) afterJoin() {
	if n.rejoin {
		n.rejoined()
	}
}
