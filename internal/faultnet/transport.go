package faultnet

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/heartbeat-sidecar/heartbeat/rpc/transport"
)

// Compile-time checks: the wrapper is a raft transport like the one it wraps.
var (
	_ raft.Transport   = (*Transport)(nil)
	_ raft.WithPreVote = (*Transport)(nil)
	_ raft.WithClose   = (*Transport)(nil)
)

// Transport wraps a *transport.Transport with the faults of its Network. It has the
// same method set; outgoing calls pass through the faults of the links from this
// node's address, the server side is the wrapped transport's. Acks are recorded by the
// wrapper itself, so an answer lost to a fault is never counted as an acknowledgment.
type Transport struct {
	net   *Network
	inner *transport.Transport
	self  raft.ServerAddress
	cfg   transport.Config

	acksMu sync.Mutex
	acks   map[raft.ServerAddress]transport.Ack

	closeOnce sync.Once
	closeCh   chan struct{}
	mu        sync.Mutex
	closed    bool
	pipelines map[*pipeline]struct{}
}

// Wrap returns tr with n's faults applied to its outgoing calls. Closing the wrapper
// closes tr.
func (n *Network) Wrap(tr *transport.Transport) *Transport {
	return &Transport{
		net:       n,
		inner:     tr,
		self:      tr.LocalAddr(),
		cfg:       tr.Config(),
		acks:      make(map[raft.ServerAddress]transport.Ack),
		closeCh:   make(chan struct{}),
		pipelines: make(map[*pipeline]struct{}),
	}
}

// Inner returns the wrapped transport.
func (w *Transport) Inner() *transport.Transport { return w.inner }

// Consumer returns the wrapped transport's Consumer.
func (w *Transport) Consumer() <-chan raft.RPC { return w.inner.Consumer() }

// LocalAddr returns the wrapped transport's address.
func (w *Transport) LocalAddr() raft.ServerAddress { return w.self }

// EncodePeer encodes addr as the wrapped transport does.
func (w *Transport) EncodePeer(id raft.ServerID, addr raft.ServerAddress) []byte {
	return w.inner.EncodePeer(id, addr)
}

// DecodePeer decodes an address encoded by EncodePeer.
func (w *Transport) DecodePeer(buf []byte) raft.ServerAddress { return w.inner.DecodePeer(buf) }

// SetHeartbeatHandler sets the wrapped transport's heartbeat handler.
func (w *Transport) SetHeartbeatHandler(cb func(raft.RPC)) { w.inner.SetHeartbeatHandler(cb) }

// Holding reports whether the wrapped transport holds a stream to target now (faults
// do not change it).
func (w *Transport) Holding(target raft.ServerAddress) bool { return w.inner.Holding(target) }

// Goodbye says goodbye on the wrapped transport's served held streams. Followers
// behind a cut link do not see it (their Hold stays blocked).
func (w *Transport) Goodbye() { w.inner.Goodbye() }

// TimeoutNowSelf hands the local raft a TimeoutNow; no link is involved.
func (w *Transport) TimeoutNowSelf(ctx context.Context) error { return w.inner.TimeoutNowSelf(ctx) }

// LastTimeoutNow is the wrapped transport's (see transport.Transport.LastTimeoutNow).
func (w *Transport) LastTimeoutNow() time.Time { return w.inner.LastTimeoutNow() }

// SetGrantHooks installs the wrapped transport's grant hooks: grants ride the
// heartbeats that pass the faults (see transport.Transport.SetGrantHooks).
func (w *Transport) SetGrantHooks(h transport.GrantHooks) { w.inner.SetGrantHooks(h) }

// Grants is the wrapped transport's (see transport.Transport.Grants).
func (w *Transport) Grants() map[raft.ServerAddress]time.Time { return w.inner.Grants() }

// HoldGrants passes through.
func (w *Transport) HoldGrants(addrs []raft.ServerAddress) (release func()) {
	return w.inner.HoldGrants(addrs)
}

// Acks returns a copy of the acknowledgments seen through the faults (see
// transport.Transport.Acks).
func (w *Transport) Acks() map[raft.ServerAddress]transport.Ack {
	w.acksMu.Lock()
	defer w.acksMu.Unlock()
	out := make(map[raft.ServerAddress]transport.Ack, len(w.acks))
	for k, v := range w.acks {
		out[k] = v
	}
	return out
}

func (w *Transport) recordAck(target raft.ServerAddress, req *raft.AppendEntriesRequest,
	resp *raft.AppendEntriesResponse, sentAt time.Time) {
	if resp.Term != req.Term {
		return
	}
	now := time.Now()
	w.acksMu.Lock()
	defer w.acksMu.Unlock()
	if prev, ok := w.acks[target]; ok && sentAt.Before(prev.SentAt) {
		return
	}
	w.acks[target] = transport.Ack{SentAt: sentAt, RepliedAt: now, Term: req.Term, RTT: now.Sub(sentAt)}
}

// Close closes the wrapper's pipelines, wakes calls blocked on faults and closes the
// wrapped transport.
func (w *Transport) Close() error {
	w.closeOnce.Do(func() {
		w.mu.Lock()
		w.closed = true
		pipes := make([]*pipeline, 0, len(w.pipelines))
		for p := range w.pipelines {
			pipes = append(pipes, p)
		}
		w.mu.Unlock()
		close(w.closeCh)
		for _, p := range pipes {
			_ = p.Close()
		}
	})
	return w.inner.Close()
}

// sleepUntil waits until t, ctx's end or Close; it reports whether t was reached.
func (w *Transport) sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	case <-w.closeCh:
		return false
	}
}

// stopped returns why a wait ended early.
func (w *Transport) stopped(ctx context.Context) error {
	select {
	case <-w.closeCh:
		return transport.ErrTransportShutdown
	default:
	}
	return ctx.Err()
}

// roundTrip runs call as a message from this node to target and back, with the faults
// of both directions and a deadline timeout after the start.
func (w *Transport) roundTrip(ctx context.Context, rpc string, target raft.ServerAddress,
	timeout time.Duration, call func() error) error {
	start := time.Now()
	deadline := start.Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	fail := func(cause error) error {
		if !w.sleepUntil(ctx, deadline) {
			return fmt.Errorf("faultnet: %s %s -> %s: %w: %w", rpc, w.self, target, cause, w.stopped(ctx))
		}
		return fmt.Errorf("faultnet: %s %s -> %s: %w", rpc, w.self, target, cause)
	}
	lost, delay := w.net.fate(w.self, target)
	switch {
	case lost:
		return fail(ErrLinkDown)
	case delay > 0:
		if !start.Add(delay).Before(deadline) {
			return fail(ErrDeadline)
		}
		if !w.sleepUntil(ctx, start.Add(delay)) {
			return fmt.Errorf("faultnet: %s: %w", rpc, w.stopped(ctx))
		}
	}
	if err := call(); err != nil {
		return err
	}
	lost, delay = w.net.fate(target, w.self)
	switch {
	case lost:
		return fail(ErrReplyLost)
	case delay > 0:
		if !time.Now().Add(delay).Before(deadline) {
			return fail(ErrDeadline)
		}
		if !w.sleepUntil(ctx, time.Now().Add(delay)) {
			return fmt.Errorf("faultnet: %s: %w", rpc, w.stopped(ctx))
		}
	}
	return nil
}

// AppendEntries sends through the link to target; heartbeats get HeartbeatTimeout,
// other appends RPCTimeout.
func (w *Transport) AppendEntries(id raft.ServerID, target raft.ServerAddress,
	args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	timeout := w.cfg.RPCTimeout
	if transport.IsHeartbeat(args) {
		timeout = w.cfg.HeartbeatTimeout
	}
	sentAt := time.Now()
	err := w.roundTrip(context.Background(), "AppendEntries", target, timeout, func() error {
		return w.inner.AppendEntries(id, target, args, resp)
	})
	if err == nil {
		w.recordAck(target, args, resp, sentAt)
	}
	return err
}

// RequestVote sends through the link to target.
func (w *Transport) RequestVote(id raft.ServerID, target raft.ServerAddress,
	args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	return w.roundTrip(context.Background(), "RequestVote", target, w.cfg.RPCTimeout, func() error {
		return w.inner.RequestVote(id, target, args, resp)
	})
}

// RequestPreVote sends through the link to target.
func (w *Transport) RequestPreVote(id raft.ServerID, target raft.ServerAddress,
	args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	return w.roundTrip(context.Background(), "RequestPreVote", target, w.cfg.RPCTimeout, func() error {
		return w.inner.RequestPreVote(id, target, args, resp)
	})
}

// TimeoutNow sends through the link to target.
func (w *Transport) TimeoutNow(id raft.ServerID, target raft.ServerAddress,
	args *raft.TimeoutNowRequest, resp *raft.TimeoutNowResponse) error {
	return w.roundTrip(context.Background(), "TimeoutNow", target, w.cfg.RPCTimeout, func() error {
		return w.inner.TimeoutNow(id, target, args, resp)
	})
}

// InstallSnapshot sends through the link to target; through a cut it fails after
// RPCTimeout without sending.
func (w *Transport) InstallSnapshot(id raft.ServerID, target raft.ServerAddress,
	args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	units := max(1, (args.Size+(1<<20)-1)>>20)
	return w.roundTrip(context.Background(), "InstallSnapshot", target, w.cfg.RPCTimeout*time.Duration(units), func() error {
		return w.inner.InstallSnapshot(id, target, args, resp, data)
	})
}

// Hold holds a stream to target unless the link is cut. Through a cut link (either
// direction, at the start or when the real stream ends) it blocks silently until ctx
// ends and returns nil: a partition closes nothing, so a stream that broke behind a
// cut is not reported. Drops and delays do not affect held streams.
func (w *Transport) Hold(ctx context.Context, target raft.ServerAddress) error {
	if w.net.down(w.self, target) {
		return w.blockHold(ctx)
	}
	err := w.inner.Hold(ctx, target)
	if err != nil && ctx.Err() == nil && w.net.down(w.self, target) {
		return w.blockHold(ctx)
	}
	return err
}

func (w *Transport) blockHold(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-w.closeCh:
		return transport.ErrTransportShutdown
	}
}

// Reachable dials target through the link: through a cut (either direction) it blocks
// until ctx ends and returns its error (wrapping ErrLinkDown). Drops and delays do not
// affect it.
func (w *Transport) Reachable(ctx context.Context, target raft.ServerAddress) error {
	if w.net.down(w.self, target) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("faultnet: reach %s -> %s: %w: %w", w.self, target, ErrLinkDown, ctx.Err())
		case <-w.closeCh:
			return transport.ErrTransportShutdown
		}
	}
	return w.inner.Reachable(ctx, target)
}

// ConfirmLost asks via through the link: through a cut it times out (ctx or
// RPCTimeout, whichever ends first). Links from via to target are not filtered: via
// answers from its real view.
func (w *Transport) ConfirmLost(ctx context.Context, via, target raft.ServerAddress) (bool, error) {
	var lost bool
	err := w.roundTrip(ctx, "Confirm", via, w.cfg.RPCTimeout, func() error {
		var err error
		lost, err = w.inner.ConfirmLost(ctx, via, target)
		return err
	})
	if err != nil {
		return false, err
	}
	return lost, nil
}
