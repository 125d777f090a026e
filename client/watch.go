package client

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// watchBuffer is the capacity of a watch channel. A slow reader holds up the
// watch's stream (the server then skips to the latest state for the latest-
// state streams, or the assignment stream falls behind and resyncs); it
// never holds up the server.
const watchBuffer = 16

// terminal reports a stream error that another attempt will not cure.
func terminal(err error) bool {
	switch status.Code(err) {
	case codes.Unimplemented, codes.InvalidArgument, codes.NotFound, codes.PermissionDenied, codes.Unauthenticated:
		return true
	}
	return false
}

// send delivers ev on out unless ctx ends first.
func send[T any](ctx context.Context, out chan<- T, ev T) bool {
	select {
	case out <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

// startWatch runs loop in a goroutine owned by the client that closes out
// when it returns; loop's ctx ends with ctx or Close.
func startWatch[T any](c *Client, ctx context.Context, loop func(context.Context, chan<- T)) <-chan T {
	out := make(chan T, watchBuffer)
	ctx, cancel := c.scope(ctx)
	if !c.spawn(func() {
		defer close(out)
		defer cancel()
		loop(ctx, out)
	}) {
		cancel()
		close(out)
	}
	return out
}

// openStream opens a server stream on addr with a context of its own (the
// caller must call the returned cancel) and receives its first message,
// which every Coordinator stream sends at once; no first message within
// CallTimeout counts as a failure.
func openStream[T any](c *Client, ctx context.Context, addr string,
	open func(context.Context, heartbeatpb.CoordinatorClient) (grpc.ServerStreamingClient[T], error),
) (grpc.ServerStreamingClient[T], *T, context.CancelFunc, error) {
	stub, _, err := c.stub(addr)
	if err != nil {
		return nil, nil, func() {}, err
	}
	sctx, cancel := context.WithCancel(ctx)
	timer := time.AfterFunc(c.cfg.CallTimeout, cancel)
	defer timer.Stop()
	stream, err := open(sctx, stub)
	if err != nil {
		return nil, nil, cancel, err
	}
	first, err := stream.Recv()
	if err != nil {
		return nil, nil, cancel, err
	}
	return stream, first, cancel, nil
}

// WatchLeader streams the leadership: the current state first, then every
// change, from the local sidecar (another endpoint while the local one is
// unreachable; each event names its Endpoint). When the stream breaks it
// sends a Disconnected event, reconnects (local endpoint first, then the
// others, with backoff) and sends the current state again with Reconnected
// set. A watch that fell over to another endpoint stays there until that
// stream breaks (IsSelf then speaks of that node: see Leader.Local). The
// channel is closed when ctx ends or the client is closed, or after an event
// with Err when the server cannot serve the watch at all.
//
// Read the channel promptly: while it is full the stream is not read, and
// the server then skips to the latest state (FellBehind).
func (c *Client) WatchLeader(ctx context.Context, opts ...ReadOption) <-chan LeaderEvent {
	o := readOptions(opts)
	return startWatch(c, ctx, func(ctx context.Context, out chan<- LeaderEvent) {
		c.watchLeader(ctx, o, out)
	})
}

func (c *Client) watchLeader(ctx context.Context, o readOpts, out chan<- LeaderEvent) {
	r := c.newReconnector()
	reconnected := false
	for ctx.Err() == nil {
		addr := r.addr()
		began := time.Now()
		established, err := c.leaderStream(ctx, o, addr, reconnected, out)
		if ctx.Err() != nil {
			return
		}
		if terminal(err) {
			send(ctx, out, LeaderEvent{Leader: Leader{Endpoint: addr, Local: addr == c.local()}, Err: err})
			return
		}
		if established {
			// A stream that worked broke: say so before reconnecting.
			c.cfg.Logger.Debug("leader watch broke; reconnecting", "endpoint", addr, "error", err)
			if !send(ctx, out, LeaderEvent{Leader: Leader{Endpoint: addr, Local: addr == c.local()}, Disconnected: true, Err: err}) {
				return
			}
			reconnected = true
		} else {
			c.cfg.Logger.Debug("leader watch: endpoint failed", "endpoint", addr, "error", err)
		}
		if !r.after(ctx, established, time.Since(began)) {
			return
		}
	}
}

// reconnector picks the endpoint of a watch's next stream: after a stream
// that worked broke, the local endpoint first (at once if the stream had
// lived a while, after a backoff pause if not, so that a server that breaks
// every stream at once is not hammered); after a failed attempt the next
// endpoint, pausing when every endpoint failed in turn.
type reconnector struct {
	c  *Client
	bo *backoffTimer
	i  int
}

func (c *Client) newReconnector() *reconnector {
	return &reconnector{c: c, bo: newBackoff(c.cfg.RetryBackoff)}
}

// addr is the endpoint to try next.
func (r *reconnector) addr() string { return r.c.cfg.Endpoints[r.i] }

// after moves on after a stream ended; false when ctx ended during a pause.
func (r *reconnector) after(ctx context.Context, established bool, lived time.Duration) bool {
	if established {
		r.i = 0
		if lived >= r.c.cfg.RetryBackoff.Max {
			r.bo.reset()
			return true
		}
		return r.bo.wait(ctx)
	}
	r.i = (r.i + 1) % len(r.c.cfg.Endpoints)
	if r.i == 0 {
		return r.bo.wait(ctx)
	}
	return true
}

// leaderStream runs one WatchLeader stream on addr until it breaks or ctx
// ends; established reports whether it opened (and sent its first event).
func (c *Client) leaderStream(ctx context.Context, o readOpts, addr string, reconnected bool, out chan<- LeaderEvent) (established bool, err error) {
	stream, first, cancel, err := openStream(c, ctx, addr, func(ctx context.Context, s heartbeatpb.CoordinatorClient) (grpc.ServerStreamingClient[heartbeatpb.WatchLeaderResponse], error) {
		return s.WatchLeader(ctx, &heartbeatpb.WatchLeaderRequest{Consistency: o.consistency()})
	})
	defer cancel()
	if err != nil {
		return false, err
	}
	ev := first
	for {
		if !send(ctx, out, c.leaderEventFromPB(ev, addr, reconnected && !established)) {
			return true, ctx.Err()
		}
		established = true
		if ev, err = stream.Recv(); err != nil {
			return true, err
		}
	}
}

// WatchMembers streams the full member list: first the current one, then
// the list again after every change (state, health, drain, priority,
// suffrage), from the local sidecar or, while it is unreachable, another
// endpoint. It is a latest-state stream: a slow reader gets the latest list
// (FellBehind). When the stream breaks it reconnects (local endpoint first)
// and sends the current list with Reconnected set. The channel is closed when
// ctx ends or the client is closed, or after an event with Err when the
// server cannot serve the watch (Unimplemented on an older server).
func (c *Client) WatchMembers(ctx context.Context, opts ...ReadOption) <-chan MembersEvent {
	o := readOptions(opts)
	return startWatch(c, ctx, func(ctx context.Context, out chan<- MembersEvent) {
		r := c.newReconnector()
		reconnected := false
		for ctx.Err() == nil {
			addr := r.addr()
			began := time.Now()
			established, err := c.membersStream(ctx, o, addr, reconnected, out)
			switch {
			case ctx.Err() != nil:
				return
			case terminal(err):
				send(ctx, out, MembersEvent{Endpoint: addr, Err: err})
				return
			case established:
				c.cfg.Logger.Debug("members watch broke; reconnecting", "endpoint", addr, "error", err)
				reconnected = true
			}
			if !r.after(ctx, established, time.Since(began)) {
				return
			}
		}
	})
}

func (c *Client) membersStream(ctx context.Context, o readOpts, addr string, reconnected bool, out chan<- MembersEvent) (established bool, err error) {
	stream, first, cancel, err := openStream(c, ctx, addr, func(ctx context.Context, s heartbeatpb.CoordinatorClient) (grpc.ServerStreamingClient[heartbeatpb.WatchMembersResponse], error) {
		return s.WatchMembers(ctx, &heartbeatpb.WatchMembersRequest{Consistency: o.consistency()})
	})
	defer cancel()
	if err != nil {
		return false, err
	}
	ev := first
	for {
		me := MembersEvent{
			Members: c.membersFromPB(ev.GetMembers()), Revision: ev.GetRevision(), FellBehind: ev.GetFellBehind(),
			Reconnected: reconnected && !established, Endpoint: addr,
		}
		if !send(ctx, out, me) {
			return true, ctx.Err()
		}
		established = true
		if ev, err = stream.Recv(); err != nil {
			return true, err
		}
	}
}
