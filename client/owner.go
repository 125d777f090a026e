package client

import (
	"context"
	"fmt"
	"time"
)

// RunWhileOwner runs fn(ctx, resource, epoch) for every resource the LOCAL
// node (Endpoints[0]) owns, one goroutine each, while the node holds its
// ownership lease, and only then.
//
// Like RunWhileLeader it keeps a KeepAlive stream to the local sidecar; the
// answers carry the node's owned set (resource id and epoch) and how long
// its ownership lease has left, which renews the client's own lease from the
// moment the question was sent, less LeaseMargin. A resource's fn gets a
// child context that is cancelled the moment
//   - the resource leaves the owned set or its epoch changes (the sidecar
//     pushes the new set at once; the leader gives the resource to another
//     node only after this node's lease on it has run out),
//   - the client's ownership lease runs out without a renewal (a hung or
//     cut-off sidecar),
//   - the stream breaks (a killed sidecar), or
//   - ctx ends or the client is closed.
//
// Pass the epoch to whatever the resource guards, as its fencing token: the
// cancellation stops fn's context, not fn's code.
//
// fn runs at most once per (resource, epoch) unless it was cancelled while
// the node still owned the resource (the lease ran out, the stream broke):
// then it runs again once a fresh answer renews the lease. RunWhileOwner
// returns ctx.Err() when ctx ends (ErrClosed when the client is closed), or
// the first error of an fn that is not context.Canceled (every fn's context
// is cancelled and waited for first). It never returns while an fn runs.
func (c *Client) RunWhileOwner(ctx context.Context, fn func(ctx context.Context, resource string, epoch uint64) error) error {
	o := &ownerRun{c: c, fn: fn, done: map[string]uint64{}}
	return c.runLeased(ctx, o.once)
}

// ownerRun is the state of one RunWhileOwner across reconnections.
type ownerRun struct {
	c  *Client
	fn func(ctx context.Context, resource string, epoch uint64) error
	// done: resources whose fn returned by itself, at that epoch.
	done map[string]uint64
}

// ownedWork is one fn running for a resource.
type ownedWork struct {
	epoch     uint64
	cancel    context.CancelFunc
	cancelled bool // RunWhileOwner cancelled it: its return is not "done"
}

// ownedResult is what an fn returned.
type ownedResult struct {
	id    string
	epoch uint64
	err   error
}

// once follows one KeepAlive stream (see leaderRun.once).
func (o *ownerRun) once(ctx context.Context) (established bool, _ error) {
	c := o.c
	s, err := c.openLeaseSession(ctx, true)
	if err != nil {
		c.cfg.Logger.Debug("run while owner: keep-alive stream failed", "endpoint", c.local(), "error", err)
		return false, nil
	}
	defer s.stop()
	lease := &leaseTimer{c: c}
	defer lease.stop()

	owned := map[string]uint64{}
	runs := map[string]*ownedWork{}
	results := make(chan ownedResult)
	var firstErr error
	// finish handles what an fn returned.
	finish := func(r ownedResult) {
		if w, ok := runs[r.id]; ok && w.epoch == r.epoch {
			w.cancel()
			delete(runs, r.id)
			if !w.cancelled && owned[r.id] == r.epoch && r.err == nil {
				o.done[r.id] = r.epoch // returned by itself: not again at this epoch
			}
		}
		if fatal(r.err) && firstErr == nil {
			firstErr = r.err
		}
	}
	// cancel cancels the fn of id and waits for it.
	cancel := func(id, why string) {
		w, ok := runs[id]
		if !ok {
			return
		}
		c.cfg.Logger.Debug("ownership lost or unconfirmed: cancelling fn", "resource", id, "epoch", w.epoch, "reason", why)
		w.cancelled = true
		w.cancel()
		for {
			r := <-results
			finish(r)
			if r.id == id && r.epoch == w.epoch {
				return
			}
		}
	}
	cancelAll := func(why string) {
		for id := range runs {
			cancel(id, why)
		}
	}
	defer cancelAll("run while owner ended")
	startOwned := func() {
		if !lease.valid() {
			return
		}
		for id, epoch := range owned {
			if _, running := runs[id]; running || o.done[id] == epoch {
				continue
			}
			rctx, cf := context.WithCancel(ctx)
			runs[id] = &ownedWork{epoch: epoch, cancel: cf}
			go func(id string, epoch uint64) { // joined through results
				results <- ownedResult{id: id, epoch: epoch, err: o.fn(rctx, id, epoch)}
			}(id, epoch)
		}
	}

	for firstErr == nil {
		select {
		case <-ctx.Done():
			return established, nil
		case m := <-s.msgs:
			established = true
			if m.ownedChanged {
				owned = m.owned
				for id, w := range runs {
					if e, ok := owned[id]; !ok || e != w.epoch {
						cancel(id, fmt.Sprintf("owned at epoch %d now", e))
					}
				}
				for id, e := range o.done {
					if owned[id] != e {
						delete(o.done, id)
					}
				}
			}
			if !m.push {
				// A push never renews; the session asks again at once.
				if m.ownedUntil.IsZero() {
					lease.set(time.Time{})
					cancelAll("no ownership lease")
				} else if m.ownedUntil.After(lease.until) {
					lease.set(m.ownedUntil)
				}
			}
			startOwned()
		case err := <-s.broke:
			c.cfg.Logger.Debug("run while owner: keep-alive stream broke", "error", err)
			return established, nil
		case <-lease.C():
			lease.set(time.Time{})
			cancelAll("ownership lease ran out without a renewal")
		case r := <-results:
			finish(r)
		}
	}
	return true, firstErr
}
