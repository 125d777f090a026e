package api

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// DefaultReadTimeout bounds the wait of a consistent read (the read index
// from the leader, then applying up to it) when the caller gives no sooner
// deadline.
const DefaultReadTimeout = 5 * time.Second

// read readies a read in mode. A consistent read first gets a read index
// (from this node's election when it leads, else from the leader; batched)
// and waits until this node has applied that far; it fails with Unavailable
// (no leader, not caught up in time) rather than answer from old state. A
// stale read answers at once. The ReadInfo says which it was, the revision
// applied when the wait ended, whether a leader is known and how long ago
// this node last heard from it. Read the state AFTER calling read.
func (c *Coordinator) read(ctx context.Context, mode heartbeatpb.Consistency) (*heartbeatpb.ReadInfo, error) {
	info := &heartbeatpb.ReadInfo{}
	switch mode {
	case heartbeatpb.Consistency_CONSISTENCY_STALE:
	case heartbeatpb.Consistency_CONSISTENCY_CONSISTENT, heartbeatpb.Consistency_CONSISTENCY_UNSPECIFIED:
		rctx, cancel := context.WithTimeout(ctx, c.cfg.ReadTimeout)
		defer cancel()
		idx, err := c.reads.index(rctx)
		if err == nil && c.cfg.Membership != nil {
			// Without the membership state there is nothing to apply: the
			// answer is "as of a leadership a quorum confirmed just now".
			err = c.cfg.Membership.WaitRevision(rctx, idx)
		}
		if err != nil {
			return nil, readStatus(ctx, err)
		}
		info.Consistent = true
	default:
		return nil, status.Errorf(codes.InvalidArgument, "unknown consistency %d", mode)
	}
	if c.cfg.Membership != nil {
		info.Revision = c.cfg.Membership.Revision()
	}
	l := c.cfg.Election.Leadership()
	info.KnownLeader, info.LeaderNodeId = l.LeaderID != "", l.LeaderID
	switch {
	case l.LeaderID == c.cfg.ID:
		info.SinceLeaderContact = durationpb.New(0)
	case c.cfg.Election.Raft() == nil:
		// never heard from a leader: unset
	default:
		if at := c.cfg.Election.Raft().LastContact(); !at.IsZero() {
			info.SinceLeaderContact = durationpb.New(time.Since(at).Truncate(time.Millisecond))
		}
	}
	return info, nil
}

// readStatus turns a failed consistent read into Unavailable (or the
// caller's own context error): never an old answer.
func readStatus(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return status.FromContextError(ctx.Err()).Err()
	}
	if s, ok := status.FromError(err); ok && s.Code() == codes.Unavailable {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return status.Error(codes.Unavailable, "consistent read: not caught up with the leader in time; retry, or ask for a stale read")
	}
	return status.Errorf(codes.Unavailable, "consistent read: %v", status.Convert(err).Message())
}
