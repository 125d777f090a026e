package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/pki"
	"github.com/heartbeat-sidecar/heartbeat/proto/raftpb"
)

// confirmDialTimeout is how long a Confirm handler gives its own Reachable probe of the
// target.
const confirmDialTimeout = 100 * time.Millisecond

// heldState remembers, per target, whether the latest held stream to it broke.
type heldState struct {
	mu      sync.Mutex
	gen     uint64
	streams map[raft.ServerAddress]heldStream
	open    map[raft.ServerAddress]int // held streams open now, per target
}

type heldStream struct {
	gen    uint64
	broken bool
}

// opened notes a newly opened held stream to target and returns its generation.
func (h *heldState) opened(target raft.ServerAddress) uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.streams == nil {
		h.streams = make(map[raft.ServerAddress]heldStream)
		h.open = make(map[raft.ServerAddress]int)
	}
	h.open[target]++
	h.gen++
	h.streams[target] = heldStream{gen: h.gen}
	return h.gen
}

// ended notes that a held stream to target, opened before, is no longer held.
func (h *heldState) ended(target raft.ServerAddress) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.open[target]--; h.open[target] <= 0 {
		delete(h.open, target)
	}
}

// isOpen reports whether a held stream to target is open now.
func (h *heldState) isOpen(target raft.ServerAddress) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.open[target] > 0
}

// broke notes that held stream gen to target broke, unless a newer one opened since.
func (h *heldState) broke(target raft.ServerAddress, gen uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s, ok := h.streams[target]; ok && s.gen == gen {
		h.streams[target] = heldStream{gen: gen, broken: true}
	}
}

// isBroken reports whether the latest held stream to target broke.
func (h *heldState) isBroken(target raft.ServerAddress) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.streams[target].broken
}

// Hold opens a held stream to target on the control connection and blocks until it
// ends. It returns nil when ctx ends, ErrGoodbye when target said goodbye, and an
// error wrapping both ErrPeerClosed and the gRPC error when the stream broke after it
// had opened (target's process died or its transport closed). A failure before the
// stream opened (target down, refused, wrong cluster) returns that error wrapped, not
// ErrPeerClosed. After Close it returns ErrTransportShutdown.
func (t *Transport) Hold(ctx context.Context, target raft.ServerAddress) error {
	pc, err := t.peer(target)
	if err != nil {
		return err
	}
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(t.closeCtx, cancel)
	defer stop()

	stream, err := pc.control.Hold(hctx, &raftpb.HoldRequest{FollowerId: string(t.cfg.ID)})
	if err != nil {
		return t.holdErr(ctx, target, err)
	}
	ev, err := stream.Recv()
	if err != nil {
		return t.holdErr(ctx, target, err)
	}
	gen := t.held.opened(target)
	defer t.held.ended(target)
	t.logger.Debug("holding stream", "target", string(target), "leader", ev.GetLeaderId())
	if ev.GetGoodbye() {
		return ErrGoodbye
	}
	for {
		ev, err := stream.Recv()
		if err == nil {
			if ev.GetGoodbye() {
				t.logger.Debug("held stream: goodbye", "target", string(target))
				return ErrGoodbye
			}
			continue
		}
		switch {
		case ctx.Err() != nil:
			return nil
		case t.closeCtx.Err() != nil:
			return ErrTransportShutdown
		}
		t.held.broke(target, gen)
		t.logger.Debug("held stream broke", "target", string(target), "error", err)
		if errors.Is(err, io.EOF) {
			err = status.Error(codes.Unavailable, "stream ended without goodbye")
		}
		return fmt.Errorf("transport: hold %s: %w: %w", target, ErrPeerClosed, err)
	}
}

// Holding reports whether a Hold to target is open at this moment (its stream
// opened and has not ended). Meant for observation and tests.
func (t *Transport) Holding(target raft.ServerAddress) bool { return t.held.isOpen(target) }

// holdErr classifies an error met before the held stream opened.
func (t *Transport) holdErr(ctx context.Context, target raft.ServerAddress, err error) error {
	switch {
	case ctx.Err() != nil:
		return nil //nolint:nilerr // the caller ended the hold: not a failure
	case t.closeCtx.Err() != nil:
		return ErrTransportShutdown
	}
	return t.callErr("Hold", target, err)
}

// ConfirmLost asks member via whether it has lost target too: true when via's latest
// held stream to target broke and has not reopened, or via's Reachable finds no live
// server at target within 50 ms. The call runs on the control connection within ctx
// (and at most RPCTimeout).
func (t *Transport) ConfirmLost(ctx context.Context, via, target raft.ServerAddress) (bool, error) {
	pc, err := t.peer(via)
	if err != nil {
		return false, err
	}
	cctx, cancel := context.WithTimeout(ctx, t.cfg.RPCTimeout)
	defer cancel()
	stop := context.AfterFunc(t.closeCtx, cancel)
	defer stop()
	out, err := pc.control.Confirm(cctx, &raftpb.ConfirmRequest{LeaderAddr: string(target)})
	if err != nil {
		return false, t.callErr("Confirm", via, err)
	}
	return out.GetLost(), nil
}

// TimeoutNowSelf hands this node's own raft a TimeoutNow through Consumer() and waits
// for its answer: raft becomes a candidate at once, skips pre-vote, and asks for votes
// as a leadership transfer. It blocks until raft answers, ctx ends or Close.
func (t *Transport) TimeoutNowSelf(ctx context.Context) error {
	if t.closeCtx.Err() != nil {
		return ErrTransportShutdown
	}
	t.noteTimeoutNow()
	cmd := &raft.TimeoutNowRequest{RPCHeader: raft.RPCHeader{
		ProtocolVersion: raft.ProtocolVersionMax,
		ID:              []byte(t.cfg.ID),
		Addr:            []byte(t.localAddr),
	}}
	r, err := t.dispatch(ctx, cmd, nil)
	if err != nil {
		if errors.Is(err, ErrTransportShutdown) {
			return err
		}
		return fmt.Errorf("transport: timeout-now self: %w", err)
	}
	if r.Error != nil {
		return fmt.Errorf("transport: timeout-now self: %w", r.Error)
	}
	return nil
}

// Goodbye makes every held stream this node serves send a goodbye and end, now and
// from then on (streams opened later get the goodbye right after opening). Call it
// when stopping on purpose, before Close, so followers do not take the stop for a
// crash. Idempotent.
func (t *Transport) Goodbye() {
	t.goodbyeOnce.Do(func() { close(t.goodbyeCh) })
}

// errHoldReplaced ends a served held stream when the same node opens another.
var errHoldReplaced = errors.New("transport: held stream replaced by a newer one from the same node")

// holders are the held streams this node serves: one per holding node.
type holders struct {
	mu  sync.Mutex
	gen uint64
	m   map[raft.ServerID]holder
}

type holder struct {
	gen    uint64
	cancel context.CancelCauseFunc
}

// take registers a held stream of node id, ending (errHoldReplaced) the
// one it held before; release unregisters it.
func (h *holders) take(parent context.Context, id raft.ServerID) (ctx context.Context, release func()) {
	ctx, cancel := context.WithCancelCause(parent)
	h.mu.Lock()
	if h.m == nil {
		h.m = make(map[raft.ServerID]holder)
	}
	if old, ok := h.m[id]; ok {
		old.cancel(errHoldReplaced)
	}
	h.gen++
	gen := h.gen
	h.m[id] = holder{gen: gen, cancel: cancel}
	h.mu.Unlock()
	return ctx, func() {
		h.mu.Lock()
		if cur, ok := h.m[id]; ok && cur.gen == gen {
			delete(h.m, id)
		}
		h.mu.Unlock()
		cancel(nil)
	}
}

// count is the number of held streams served now.
func (h *holders) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.m)
}

// checkHolder refuses a Hold that names no node, that names another node
// than the caller's certificate (with TLS), or whose node is not a voter
// (Config.IsVoter).
func (t *Transport) checkHolder(ctx context.Context, id raft.ServerID) error {
	if id == "" {
		return t.reject(ctx, rejectHold, codes.InvalidArgument, "Hold: follower_id is required")
	}
	if t.cfg.ServerTLS != nil {
		if cert, ok := pki.IdentityFromContext(ctx); !ok || cert.Name != string(id) {
			return t.reject(ctx, rejectIdentity, codes.PermissionDenied, "Hold: follower_id %q is not the caller's certificate's node", id)
		}
	}
	if t.cfg.IsVoter != nil && !t.cfg.IsVoter(id) {
		return t.reject(ctx, rejectHold, codes.FailedPrecondition, "Hold: %q is not a voter of this node's raft configuration", id)
	}
	return nil
}

// Hold serves a held stream: one event on open, then nothing until the caller leaves,
// Goodbye (a goodbye event) or Close (the stream ends without goodbye). Only a voter
// may hold one (Config.IsVoter), and one at a time: a newer Hold of the same node ends
// the older with codes.Aborted.
func (s *rpcServer) Hold(req *raftpb.HoldRequest, stream grpc.ServerStreamingServer[raftpb.HoldEvent]) error {
	t := s.t
	id := raft.ServerID(req.GetFollowerId())
	if err := t.checkHolder(stream.Context(), id); err != nil {
		return err
	}
	ctx, release := t.holders.take(stream.Context(), id)
	defer release()
	if err := stream.Send(&raftpb.HoldEvent{LeaderId: string(t.cfg.ID)}); err != nil {
		return err
	}
	goodbye := func() error {
		return stream.Send(&raftpb.HoldEvent{LeaderId: string(t.cfg.ID), Goodbye: true})
	}
	select {
	case <-ctx.Done():
		if errors.Is(context.Cause(ctx), errHoldReplaced) {
			return status.Error(codes.Aborted, errHoldReplaced.Error())
		}
		return nil
	case <-t.goodbyeCh:
		return goodbye()
	case <-t.closeCtx.Done():
		select {
		case <-t.goodbyeCh: // Goodbye then Close: the goodbye wins.
			return goodbye()
		default:
		}
		return status.Error(codes.Unavailable, "transport closed")
	}
}

// Confirm answers whether this node has lost the named leader too. The leader must be
// a server of this node's raft configuration (Config.IsMember): Confirm may dial it.
func (s *rpcServer) Confirm(ctx context.Context, req *raftpb.ConfirmRequest) (*raftpb.ConfirmResponse, error) {
	target := raft.ServerAddress(req.GetLeaderAddr())
	if target == "" {
		return nil, status.Error(codes.InvalidArgument, "leader_addr is required")
	}
	if err := s.t.checkConfirmTarget(ctx, target); err != nil {
		return nil, err
	}
	if s.t.held.isBroken(target) {
		return &raftpb.ConfirmResponse{Lost: true}, nil
	}
	// Answer before the asker gives up: dial for at most two thirds of the
	// time its deadline leaves (and confirmDialTimeout), so that a dead
	// target still yields lost=true in time rather than a late answer.
	budget := confirmDialTimeout
	if dl, ok := ctx.Deadline(); ok {
		budget = min(budget, time.Until(dl)*2/3)
	}
	dctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	return &raftpb.ConfirmResponse{Lost: s.t.Reachable(dctx, target) != nil}, nil
}
