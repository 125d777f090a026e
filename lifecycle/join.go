package lifecycle

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/internal/retry"
	"github.com/heartbeat-sidecar/heartbeat/proto/raftpb"
	"github.com/heartbeat-sidecar/heartbeat/rpc/api"
)

// joinAttemptTimeout bounds one ClusterAdmin.Join call (a join waits for the
// configuration change to commit).
const joinAttemptTimeout = 10 * time.Second

// Join asks the Join addresses, in turn, to add this node, with
// exponential backoff (100ms up to JoinRetryMax) between rounds, until one
// succeeds, the node learns it is already a member, the cluster refuses for
// good, or ctx ends. A refusal goes to fail wrapped in ErrJoinRefused.
func (l *Local) Join(ctx context.Context) {
	bo := retry.NewBackoff(100*time.Millisecond, max(l.cfg.JoinRetryMax, 100*time.Millisecond))
	l.cfg.Logger.Info("joining cluster", "via", l.cfg.Join, "voter", l.cfg.Voter)
	for attempt := 1; ; attempt++ {
		for _, addr := range l.cfg.Join {
			if !l.cfg.Rejoin && l.IsMember() {
				l.cfg.Logger.Info("joined cluster (found self in the configuration)")
				l.afterJoin()
				return
			}
			resp, err := l.joinOnce(ctx, addr)
			if err == nil {
				l.cfg.Logger.Info("joined cluster", "via", addr, "leader", resp.GetLeaderId(), "index", resp.GetIndex())
				l.afterJoin()
				return
			}
			if ctx.Err() != nil {
				return
			}
			if !joinRetryable(err) {
				l.fail(fmt.Errorf("%w: via %s: %v", ErrJoinRefused, addr, err))
				return
			}
			l.cfg.Logger.Warn("join attempt failed", "attempt", attempt, "via", addr, "error", err)
		}
		if !retry.Sleep(ctx, bo.Next()) {
			return
		}
	}
}

// joinRetryable is retry.Retryable widened by what a join must ride out:
// the cluster's own refusals (a malformed request, an id or address taken,
// another cluster: InvalidArgument, AlreadyExists, FailedPrecondition other
// than a moved leader) are final, anything else is tried again — a raft
// configuration change already in flight, for one, answers Internal.
func joinRetryable(err error) bool {
	if retry.Retryable(err) {
		return true
	}
	switch status.Code(err) {
	case codes.InvalidArgument, codes.AlreadyExists, codes.FailedPrecondition:
		return false
	}
	return true
}

// joinOnce calls ClusterAdmin.Join on one member's peer address.
func (l *Local) joinOnce(ctx context.Context, addr string) (*raftpb.JoinResponse, error) {
	opts := l.cfg.DialOptions
	if opts == nil {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, joinAttemptTimeout)
	defer cancel()
	ctx = api.OutgoingContext(ctx, l.cfg.ID, l.cfg.ClusterID)
	return raftpb.NewClusterAdminClient(conn).Join(ctx, &raftpb.JoinRequest{
		Id:          l.cfg.ID,
		PeerAddress: l.cfg.PeerAddr,
		Voter:       l.cfg.Voter,
		ClusterId:   l.cfg.ClusterID,
	})
}

// afterJoin ends a rejoin after a Leave.
func (l *Local) afterJoin() {
	if l.cfg.Rejoin {
		l.rejoined()
	}
}
