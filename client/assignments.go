package client

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// WatchAssignments streams resource changes (registered, assigned, deleted)
// after fromRevision, in revision order, each exactly once; nodeID, when set,
// limits them to changes that give a resource to or take one from that
// member. fromRevision 0 means "from now". The usual pattern: list
// (Resources, or MyResources / Assignments for one node), then watch from the
// listing's Revision.
//
// The watch reads the local sidecar's change feed (another endpoint's while
// the local one is unreachable; every node applies the same log, so their
// feeds agree). When the stream breaks it reconnects (local endpoint first)
// and resumes where it left off: it asks again for the last revision it
// delivered events of, and skips the events of that revision it already
// delivered (a node emits a revision's events in the same order), so there
// is no gap and no duplicate even when the break fell inside a revision.
// When the server's feed no longer holds that revision (codes.OutOfRange) it
// lists again and sends one KindResync event with the full current set and
// its revision, then continues from there. The channel is closed when ctx
// ends or the client is closed, or after an event with Err when the watch
// cannot go on (Unimplemented, NotFound for an unknown node, ...).
//
// Read the channel promptly: while it is full the stream is not read; a
// reader far behind eventually gets a resync instead of the events it
// missed.
func (c *Client) WatchAssignments(ctx context.Context, nodeID string, fromRevision uint64, opts ...ReadOption) <-chan AssignmentEvent {
	o := readOptions(opts)
	return startWatch(c, ctx, func(ctx context.Context, out chan<- AssignmentEvent) {
		w := &assignWatch{c: c, node: nodeID, last: fromRevision, fromNow: fromRevision == 0, consistency: o.consistency()}
		w.run(ctx, out)
	})
}

// assignWatch is the resume state of one WatchAssignments.
type assignWatch struct {
	c    *Client
	node string
	// consistency of the stream's start (every reconnection too).
	consistency heartbeatpb.Consistency
	// last is the highest revision delivered (or the one the watch starts
	// after); atLast counts the events of revision last delivered so far (0:
	// the watch is known to be complete through last).
	last   uint64
	atLast int
	// fromNow: no revision yet; the first stream starts at the server's
	// current revision and its "start" message sets last.
	fromNow bool
}

func (w *assignWatch) run(ctx context.Context, out chan<- AssignmentEvent) {
	c := w.c
	r := c.newReconnector()
	for ctx.Err() == nil {
		addr := r.addr()
		began := time.Now()
		established, err := w.stream(ctx, addr, out)
		switch {
		case ctx.Err() != nil:
			return
		case status.Code(err) == codes.OutOfRange:
			c.cfg.Logger.Debug("assignment watch fell behind the change feed; listing again", "endpoint", addr, "revision", w.last, "error", err)
			if !w.resync(ctx, out) {
				return
			}
			established = true
		case terminal(err):
			send(ctx, out, AssignmentEvent{Err: err})
			return
		case established:
			c.cfg.Logger.Debug("assignment watch broke; resuming", "endpoint", addr, "revision", w.last, "error", err)
		default:
			c.cfg.Logger.Debug("assignment watch: endpoint failed", "endpoint", addr, "error", err)
		}
		if !r.after(ctx, established, time.Since(began)) {
			return
		}
	}
}

// stream runs one WatchAssignments stream on addr until it breaks or ctx
// ends; established reports whether it opened (its first message came).
func (w *assignWatch) stream(ctx context.Context, addr string, out chan<- AssignmentEvent) (established bool, err error) {
	from, skip := w.resumePoint()
	req := &heartbeatpb.WatchAssignmentsRequest{FromRevision: from, NodeId: w.node, Consistency: w.consistency}
	stream, first, cancel, err := openStream(w.c, ctx, addr, func(ctx context.Context, s heartbeatpb.CoordinatorClient) (grpc.ServerStreamingClient[heartbeatpb.WatchAssignmentsResponse], error) {
		return s.WatchAssignments(ctx, req)
	})
	defer cancel()
	if err != nil {
		return false, err
	}
	if first.GetKind() == heartbeatpb.ChangeKind_CHANGE_KIND_START && w.fromNow {
		w.fromNow, w.last, w.atLast = false, first.GetRevision(), 0
	}
	ev := first
	for {
		if !w.deliver(ctx, ev, &skip, out) {
			return true, ctx.Err()
		}
		if ev, err = stream.Recv(); err != nil {
			return true, err
		}
	}
}

// resumePoint is where the next stream starts: the revision to ask the
// changes after, and how many events of the first revision it sends to skip
// (already delivered).
func (w *assignWatch) resumePoint() (from uint64, skip int) {
	switch {
	case w.fromNow:
		return 0, 0
	case w.atLast > 0 && w.last > 1:
		// Ask for revision last again and skip what was delivered of it:
		// the break may have fallen inside it.
		return w.last - 1, w.atLast
	}
	return w.last, 0
}

// deliver sends ev unless it was delivered before; false when ctx ended.
func (w *assignWatch) deliver(ctx context.Context, ev *heartbeatpb.WatchAssignmentsResponse, skip *int, out chan<- AssignmentEvent) bool {
	rev := ev.GetRevision()
	switch {
	case ev.GetKind() == heartbeatpb.ChangeKind_CHANGE_KIND_START:
		return true
	case rev < w.last:
		// Older than what was delivered: a server bug; never deliver twice.
		w.c.cfg.Logger.Warn("assignment watch: event older than the last delivered, dropped", "revision", rev, "last", w.last)
		return true
	case rev == w.last && *skip > 0:
		*skip--
		return true
	}
	if *skip > 0 {
		w.c.cfg.Logger.Warn("assignment watch: fewer events of a revision on resume than delivered before", "revision", w.last, "missing", *skip)
		*skip = 0
	}
	ae := AssignmentEvent{
		Revision: rev, Kind: EventKind(heartbeatpb.Short(ev.GetKind())), ResourceID: ev.GetResourceId(),
		Owner: ev.GetOwnerNodeId(), PrevOwner: ev.GetPrevOwnerNodeId(), Epoch: ev.GetEpoch(),
	}
	if !send(ctx, out, ae) {
		return false
	}
	if rev == w.last {
		w.atLast++
	} else {
		w.last, w.atLast = rev, 1
	}
	return true
}

// resync lists the current set (of the watched node, or every resource) and
// sends it as a KindResync event; the watch then goes on after its revision.
// False when the watch must end (ctx ended, or the listing failed for good
// and an Err event was sent).
func (w *assignWatch) resync(ctx context.Context, out chan<- AssignmentEvent) bool {
	var l Listing
	var err error
	if w.node != "" {
		l, err = w.c.Assignments(ctx, w.node)
	} else {
		l, err = w.c.Resources(ctx)
	}
	if err != nil {
		if ctx.Err() == nil {
			send(ctx, out, AssignmentEvent{Err: err})
		}
		return false
	}
	if !send(ctx, out, AssignmentEvent{Revision: l.Revision, Kind: KindResync, Resources: l.Resources}) {
		return false
	}
	w.last, w.atLast, w.fromNow = l.Revision, 0, false
	return true
}
