package client

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// RunWhileLeader runs fn while the LOCAL node (Endpoints[0]) is the leader
// with a valid lease, and only then.
//
// It keeps a KeepAlive stream to the local sidecar (no other node can vouch
// for the local node's lease) and asks it every KeepAliveInterval whether it
// leads and how long its leader lease has left. Each answer renews the
// client's own lease: from the moment the question was SENT, for the time
// the sidecar said was left, less LeaseMargin. That lease never outlasts the
// sidecar's, whatever happens between them: a sidecar that hangs (a paused
// process, a stuck machine) simply stops renewing it. fn runs with a child
// context and the fencing token once an answer says the node leads, and the
// child context is cancelled the moment
//   - the client's lease runs out without a renewal,
//   - an answer (or a push, which the sidecar sends at once) says the local
//     node no longer leads, or names another token,
//   - the stream breaks (a killed sidecar), or
//   - ctx ends or the client is closed.
//
// The sidecar claims leadership only while no other node can lead (see the
// README, "Leases"), so fn's context is cancelled before another node's
// RunWhileLeader can start its fn. What the client cannot do is stop fn's
// own code: a paused or slow application may still act after its context
// was cancelled. Pass the fencing token to every downstream system fn writes
// to, and let those systems refuse a token lower than the highest they have
// seen; that, not the cancellation, is what makes a stale leader harmless.
//
// After fn returns by itself, RunWhileLeader waits for the next leadership:
// fn runs at most once per leadership (token) unless it was cancelled while
// the node still led (the lease ran out, the stream broke), in which case it
// runs again once a fresh answer confirms the same leadership. It returns
// ctx.Err() when ctx ends (ErrClosed when the client is closed), or fn's
// error when fn returns one that is not context.Canceled (fn's context is
// cancelled and waited for first). It never returns while fn runs.
func (c *Client) RunWhileLeader(ctx context.Context, fn func(ctx context.Context, token uint64) error) error {
	r := &leaderRun{c: c, fn: fn}
	return c.runLeased(ctx, r.once)
}

// runLeased runs once (one lease stream) again and again, with backoff,
// until it returns an error or ctx ends.
func (c *Client) runLeased(ctx context.Context, once func(context.Context) (bool, error)) error {
	sctx, cancel := c.scope(ctx)
	defer cancel()
	bo := newBackoff(c.cfg.RetryBackoff)
	ended := func() error {
		if c.isClosed() && ctx.Err() == nil {
			return ErrClosed
		}
		return ctx.Err()
	}
	for {
		began := time.Now()
		established, err := once(sctx)
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
	result chan error // fn's return value
}

// once opens one KeepAlive stream to the local endpoint and follows it until
// it breaks or ctx ends, starting and cancelling fn as the answers and the
// lease timer say. It returns a non-nil error only when fn returned a fatal
// one.
func (r *leaderRun) once(ctx context.Context) (established bool, _ error) {
	c := r.c
	s, err := c.openLeaseSession(ctx, false)
	if err != nil {
		c.cfg.Logger.Debug("run while leader: keep-alive stream failed", "endpoint", c.local(), "error", err)
		return false, nil
	}
	defer s.stop()
	lease := &leaseTimer{c: c}
	defer lease.stop()

	var run *running
	// stop cancels fn and waits for it; its error, if fatal, ends everything.
	stop := func(why string) error {
		if run == nil {
			return nil
		}
		c.cfg.Logger.Info("leadership lost or unconfirmed: cancelling fn", "token", run.token, "reason", why)
		run.cancel()
		err := <-run.result
		run = nil
		if fatal(err) {
			return err
		}
		return nil
	}
	apply := func(m leaseMsg) error {
		leads := m.isLeader && m.token > 0
		if run != nil && (!leads || m.token != run.token) {
			why := "local node no longer leads"
			if leads {
				why = fmt.Sprintf("fencing token changed to %d", m.token)
			}
			lease.set(time.Time{})
			if err := stop(why); err != nil {
				return err
			}
		}
		if !leads || m.push {
			return nil // a push never renews; the session asks again at once
		}
		if m.leaderUntil.After(lease.until) || run == nil {
			lease.set(m.leaderUntil)
		}
		if run == nil && m.token != r.done && lease.valid() {
			run = r.start(ctx, m.token)
		}
		return nil
	}

	for {
		var result chan error
		if run != nil {
			result = run.result
		}
		select {
		case <-ctx.Done():
			return established, stop("context ended")
		case m := <-s.msgs:
			established = true
			if err := apply(m); err != nil {
				return true, err
			}
		case err := <-s.broke:
			c.cfg.Logger.Debug("run while leader: keep-alive stream broke", "error", err)
			return established, stop(fmt.Sprintf("keep-alive stream broke: %v", err))
		case <-lease.C():
			if err := stop("leader lease ran out without a renewal"); err != nil {
				return true, err
			}
		case err := <-result:
			// fn returned by itself: not again for this leadership.
			run.cancel()
			r.done, run = run.token, nil
			if fatal(err) {
				return true, err
			}
		}
	}
}

// start runs fn with token in a goroutine whose result the caller reads.
func (r *leaderRun) start(ctx context.Context, token uint64) *running {
	rctx, cancel := context.WithCancel(ctx)
	run := &running{token: token, cancel: cancel, result: make(chan error, 1)}
	r.c.cfg.Logger.Debug("local node leads: running fn", "token", token)
	go func() { // joined by whoever reads run.result
		run.result <- r.fn(rctx, token)
	}()
	return run
}
