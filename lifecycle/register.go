package lifecycle

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/internal/retry"
	"github.com/heartbeat-sidecar/heartbeat/membership"
	mpb "github.com/heartbeat-sidecar/heartbeat/proto/membershippb"
)

// writePolicy paces the node's own membership writes (registration,
// drain, departure): they go through the leader and fail while none is
// known.
func (l *Local) writePolicy(what string) retry.Policy {
	return retry.Policy{
		Min: 50 * time.Millisecond, Max: time.Second, Attempt: 5 * time.Second,
		Retryable: selfWriteRetryable,
		OnRetry: func(attempt int, err error) {
			if attempt%20 == 0 {
				l.cfg.Logger.Warn("membership write still failing", "what", what, "attempt", attempt, "error", err)
			} else {
				l.cfg.Logger.Debug("membership write failed", "what", what, "attempt", attempt, "error", err)
			}
		},
	}
}

// selfWriteRetryable is retry.Retryable widened for the node's own writes,
// which must get through eventually: a state conflict (FailedPrecondition:
// say its peer address still held by a member the leader has not yet
// declared left) may be cleared by the leader's own decisions, so only the
// refusals no later state can cure end the retries (InvalidArgument,
// NotFound, PermissionDenied, Unimplemented), and anything else is tried
// again.
func selfWriteRetryable(err error) bool {
	if retry.Retryable(err) {
		return true
	}
	switch status.Code(err) {
	case codes.InvalidArgument, codes.NotFound, codes.PermissionDenied, codes.Unimplemented:
		return false
	}
	return true
}

// write commits cmd through the leader under writePolicy. When ctx ends
// first it returns ctx's error alone (a departure maps it to its code).
func (l *Local) write(ctx context.Context, what string, cmd func() (*mpb.Command, error)) error {
	err := retry.Do(ctx, l.writePolicy(what), func(actx context.Context) error {
		c, err := cmd()
		if err != nil {
			return err
		}
		_, err = l.commit.Commit(actx, c)
		return err
	})
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return ctx.Err()
	default:
		l.cfg.Logger.Warn("membership write refused", "what", what, "error", err)
	}
	return err
}

// Register commits UpsertMember for this node, retrying until it succeeds
// (once the node is in the raft configuration and a leader with the
// membership state is reachable), it is refused, or ctx ends. Without the
// membership state it does nothing.
func (l *Local) Register(ctx context.Context) {
	if l.state == nil {
		return
	}
	err := l.write(ctx, "register", func() (*mpb.Command, error) {
		spec, ok := l.selfSpec()
		if !ok {
			return nil, fmt.Errorf("not in the raft configuration yet: %w", retry.ErrTemporary)
		}
		return membership.UpsertMemberCmd(spec), nil
	})
	if err == nil {
		l.cfg.Logger.Debug("registered in the membership state")
	}
}

// selfSpec is this node's member record: its peer address exactly as the
// raft configuration holds it (the detector keys heartbeats by it), its
// dialable client and HTTP addresses, and its suffrage; false while it is
// not in the configuration (joining).
func (l *Local) selfSpec() (membership.MemberSpec, bool) {
	spec := membership.MemberSpec{ID: l.cfg.ID, ClientAddr: l.cfg.ClientAddr, HTTPAddr: l.cfg.HTTPAddr,
		LeaderPriority: l.cfg.LeaderPriority}
	ms, err := l.el.Members()
	if err != nil {
		return spec, false
	}
	for _, m := range ms {
		if m.ID == l.cfg.ID {
			spec.PeerAddr, spec.Voter = m.Address, m.Voter
			return spec, true
		}
	}
	return spec, false
}
