package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// errLeaseUnconfirmed: the periodic check could not confirm that the local
// node still leads with the same token.
var errLeaseUnconfirmed = errors.New("client: leadership not confirmed by the lease check")

// RunWhileLeader runs fn while the LOCAL node (Endpoints[0]) is the leader
// with a valid lease, and only then.
//
// It watches the local sidecar's leadership stream (WatchLeader on
// Endpoints[0] only: no other node can vouch for the local node's lease) and
// waits for an event saying is_self with a fencing token. It then runs fn
// with a child context and that token, and cancels the child context the
// moment
//   - an event says the local node no longer leads (is_self false), or names
//     another token,
//   - the stream breaks (fail safe: without the stream the client cannot
//     know that the node still leads),
//   - the lease check (Config.LeaseCheckInterval) gets no confirmation in
//     time, or
//   - ctx ends or the client is closed.
//
// The sidecar turns is_self false when its lease lapses: a leader cut off
// from its quorum says so within the lease (election's leaseLoop recomputes
// the lease every heartbeat interval and publishes the change), before any
// other node can be elected; so fn's context is cancelled within the lease,
// plus the time an event takes over loopback. That is a promise about
// timing on one machine, not a guarantee against pauses: fn may still be
// running some instructions after a new leader exists (a GC pause, a slow
// cancellation). Pass the fencing token to every downstream system fn
// writes to, and let those systems refuse a token lower than the highest
// they have seen; that, not the cancellation, is what makes a stale leader
// harmless.
//
// After fn returns, RunWhileLeader waits for the next leadership: fn runs at
// most once per leadership (token) unless it was cancelled by a broken
// stream or a failed check while the node still led, in which case it runs
// again once the reconnected stream confirms the same leadership. It returns
// ctx.Err() when ctx ends (ErrClosed when the client is closed), or fn's
// error when fn returns one that is not context.Canceled (fn's context is
// cancelled and waited for first). It never returns while fn runs.
func (c *Client) RunWhileLeader(ctx context.Context, fn func(ctx context.Context, token uint64) error) error {
	sctx, cancel := c.scope(ctx)
	defer cancel()
	r := &leaderRun{c: c, fn: fn}
	bo := newBackoff(c.cfg.RetryBackoff)
	ended := func() error {
		if c.isClosed() && ctx.Err() == nil {
			return ErrClosed
		}
		return ctx.Err()
	}
	for {
		began := time.Now()
		established, err := r.once(sctx)
		switch {
		case err != nil:
			return err
		case sctx.Err() != nil:
			return ended()
		case established && time.Since(began) >= c.cfg.RetryBackoff.Max:
			bo.reset()
		}
		if !bo.wait(sctx) {
			return ended()
		}
	}
}

// leaderRun is the state of one RunWhileLeader across reconnections.
type leaderRun struct {
	c  *Client
	fn func(ctx context.Context, token uint64) error
	// done is the token of the last leadership whose fn returned by itself:
	// fn is not run again for it.
	done uint64
}

// fatal reports an error of fn that ends RunWhileLeader.
func fatal(err error) bool { return err != nil && !errors.Is(err, context.Canceled) }

// running is one run of fn.
type running struct {
	token  uint64
	cancel context.CancelFunc
	result chan error    // fn's return value
	check  chan struct{} // closed when the lease check fails
	wg     sync.WaitGroup
}

// once opens one leadership stream on the local endpoint and follows it
// until it breaks or ctx ends, starting and cancelling fn as the events say.
// It returns a non-nil error only when fn returned a fatal one.
func (r *leaderRun) once(ctx context.Context) (established bool, _ error) {
	c := r.c
	addr := c.local()
	stream, first, cancelStream, err := openStream(c, ctx, addr, func(ctx context.Context, s heartbeatpb.CoordinatorClient) (grpc.ServerStreamingClient[heartbeatpb.LeaderEvent], error) {
		return s.WatchLeader(ctx, &heartbeatpb.WatchLeaderRequest{})
	})
	if err != nil {
		cancelStream()
		c.cfg.Logger.Debug("run while leader: local leadership watch failed", "endpoint", addr, "error", err)
		return false, nil
	}
	// The receiver is owned by this call: on return, quit ends a pending
	// hand-over and cancelStream a pending Recv, and the wait joins it.
	events := make(chan *heartbeatpb.LeaderEvent)
	broke := make(chan error, 1)
	quit := make(chan struct{})
	var recv sync.WaitGroup
	recv.Add(1)
	go func() {
		defer recv.Done()
		for {
			ev, err := stream.Recv()
			if err != nil {
				broke <- err
				return
			}
			select {
			case events <- ev:
			case <-quit:
				return
			}
		}
	}()
	defer func() {
		close(quit)
		cancelStream()
		recv.Wait()
	}()

	var run *running
	// stop cancels fn and waits for it; its error, if fatal, ends everything.
	stop := func(why string) error {
		if run == nil {
			return nil
		}
		c.cfg.Logger.Info("leadership lost or unconfirmed: cancelling fn", "token", run.token, "reason", why)
		run.cancel()
		err := <-run.result
		run.wg.Wait()
		run = nil
		if fatal(err) {
			return err
		}
		return nil
	}
	apply := func(ev *heartbeatpb.LeaderEvent) error {
		leads := ev.GetIsSelf() && ev.GetFencingToken() > 0
		if run != nil && (!leads || ev.GetFencingToken() != run.token) {
			why := "local node no longer leads"
			if leads {
				why = fmt.Sprintf("fencing token changed to %d", ev.GetFencingToken())
			}
			if err := stop(why); err != nil {
				return err
			}
		}
		if run == nil && leads && ev.GetFencingToken() != r.done {
			run = r.start(ctx, ev.GetFencingToken())
		}
		return nil
	}

	if err := apply(first); err != nil {
		return true, err
	}
	for {
		var result chan error
		var check chan struct{}
		if run != nil {
			result, check = run.result, run.check
		}
		select {
		case <-ctx.Done():
			return true, stop("context ended")
		case ev := <-events:
			if err := apply(ev); err != nil {
				return true, err
			}
		case err := <-broke:
			c.cfg.Logger.Debug("run while leader: leadership stream broke", "error", err)
			return true, stop(fmt.Sprintf("leadership stream broke: %v", err))
		case <-check:
			// The stream may be stuck: cancel fn and reconnect for a fresh state.
			return true, stop(errLeaseUnconfirmed.Error())
		case err := <-result:
			// fn returned by itself: not again for this leadership.
			run.cancel()
			run.wg.Wait()
			r.done, run = run.token, nil
			if fatal(err) {
				return true, err
			}
		}
	}
}

// start runs fn with token in a goroutine, and the lease check beside it.
func (r *leaderRun) start(ctx context.Context, token uint64) *running {
	rctx, cancel := context.WithCancel(ctx)
	run := &running{token: token, cancel: cancel, result: make(chan error, 1), check: make(chan struct{})}
	r.c.cfg.Logger.Debug("local node leads: running fn", "token", token)
	go func() { // joined by whoever reads run.result
		run.result <- r.fn(rctx, token)
	}()
	if every := r.c.cfg.LeaseCheckInterval; every > 0 {
		run.wg.Add(1)
		go func() {
			defer run.wg.Done()
			r.checkLoop(rctx, token, every, run.check)
		}()
	}
	return run
}

// checkLoop asks the local sidecar every interval whether it still leads
// with token; it closes failed and returns when an answer says no or does
// not come within the interval, and returns when ctx ends.
func (r *leaderRun) checkLoop(ctx context.Context, token uint64, every time.Duration, failed chan<- struct{}) {
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		if !r.confirm(ctx, token, every) {
			if ctx.Err() == nil {
				close(failed)
			}
			return
		}
	}
}

// confirm asks the local sidecar (one attempt, bounded by timeout) whether it
// leads with a valid lease and the same token.
func (r *leaderRun) confirm(ctx context.Context, token uint64, timeout time.Duration) bool {
	stub, _, err := r.c.stub(r.c.local())
	if err != nil {
		return false
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	s, err := stub.Status(cctx, &heartbeatpb.StatusRequest{})
	if err != nil {
		r.c.cfg.Logger.Debug("lease check failed", "error", err)
		return false
	}
	return s.GetIsLeader() && s.GetFencingToken() == token
}
