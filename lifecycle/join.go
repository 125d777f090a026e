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

// promotionAsk is how often a learner that waits for its promotion asks
// the cluster again (a new leader does not know that it waits).
const promotionAsk = 3 * time.Second

// promotionPoll is how often a learner looks for itself as a voter in its
// own configuration.
const promotionPoll = 50 * time.Millisecond

// Join asks the Join addresses, in turn, to add this node, with
// exponential backoff (100ms up to JoinRetryMax) between rounds, until one
// succeeds, the node learns it is already a member, the cluster refuses for
// good, or ctx ends. A refusal goes to fail wrapped in ErrJoinRefused. A
// node that joins as a voter enters as a learner (a non-voter the leader
// promotes once it has caught up, see election.Node.Join): Join then waits
// until it is a voter, asking again every promotionAsk.
func (l *Local) Join(ctx context.Context) {
	bo := retry.NewBackoff(100*time.Millisecond, max(l.cfg.JoinRetryMax, 100*time.Millisecond))
	l.cfg.Logger.Info("joining cluster", "via", l.cfg.Join, "voter", l.cfg.Voter)
	for attempt := 1; ; attempt++ {
		for _, addr := range l.cfg.Join {
			if !l.cfg.Rejoin && l.IsMember() {
				l.cfg.Logger.Info("joined cluster (found self in the configuration)")
				l.afterJoin()
				l.awaitPromotion(ctx, true)
				return
			}
			resp, err := l.joinOnce(ctx, addr)
			if err == nil {
				l.cfg.Logger.Info("joined cluster", "via", addr, "leader", resp.GetLeaderId(), "index", resp.GetIndex())
				l.afterJoin()
				l.awaitPromotion(ctx, false)
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

// awaitPromotion waits, for a node that joins as a voter, until its own
// configuration lists it as a voter, asking the Join addresses to add it as
// a voter again every promotionAsk: the leader promotes a learner once it
// has caught up, and a leader elected meanwhile does not know it waits.
// It asks only once the node has seen itself in its configuration (the
// log reaches a learner after its join returns), and ends when the node is
// a voter, is no member any more, leaves, the cluster refuses for good
// (logged: the node stays a non-voter), or ctx ends.
// askNow: ask at once (the node found itself in the configuration after a
// restart, without a join that asked for it).
func (l *Local) awaitPromotion(ctx context.Context, askNow bool) {
	if !l.cfg.Voter {
		return
	}
	start := time.Now()
	poll := time.NewTicker(promotionPoll)
	defer poll.Stop()
	next := start.Add(promotionAsk)
	if askNow {
		next = start
	}
	seen := false // this node has seen itself in its configuration
	for i := 0; ; {
		voter, member := l.suffrage()
		switch {
		case l.leaving.Load():
			return // a Leave runs: asking again would add the node back
		case voter:
			l.cfg.Logger.Info("promoted to voter", "waited", time.Since(start).Round(time.Millisecond))
			return
		case member:
			seen = true
		case seen:
			return // removed meanwhile
		}
		if now := time.Now(); seen && !now.Before(next) {
			next = now.Add(promotionAsk)
			addr := l.cfg.Join[i%len(l.cfg.Join)]
			i++
			_, err := l.joinOnce(ctx, addr)
			if err != nil && ctx.Err() == nil && !joinRetryable(err) {
				l.cfg.Logger.Warn("the cluster refuses to promote this node; it stays a non-voter", "via", addr, "error", err)
				return
			}
			log := l.cfg.Logger.Debug
			if i == 1 {
				log = l.cfg.Logger.Info
			}
			log("waiting for promotion to voter (a learner until it has caught up)",
				"waited", time.Since(start).Round(time.Millisecond), "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
		}
	}
}

// suffrage reports whether this node is a voter, and a member at all, in
// the raft configuration it knows.
func (l *Local) suffrage() (voter, member bool) {
	ms, err := l.el.Members()
	if err != nil {
		return false, true
	}
	for _, m := range ms {
		if m.ID == l.cfg.ID {
			return m.Voter, true
		}
	}
	return false, false
}
