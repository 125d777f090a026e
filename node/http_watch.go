package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/membership"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
	"github.com/heartbeat-sidecar/heartbeat/rpc/api"
)

// The watches are served as server-sent events (text/event-stream): each
// message is an "event:" line (leader, members, start, registered, assigned,
// deleted, lease), an "id:" line where the message has a revision, and one
// "data:" line of JSON. A stream that ends for a reason other than the client going
// away ends with an "error" event whose data is {"error", "code"} (the HTTP
// status the error would have had). A comment line is sent every
// sseKeepAlive so that proxies keep an idle stream open.
//
// A slow reader never holds up the node: leader and member events come from
// the Coordinator's watches, which keep only the latest state for a reader
// that lags (fell_behind), and assignment events from the membership change
// feed, a bounded ring the stream reads at its own pace. A write the client
// does not take within sseWriteTimeout ends the stream. When the node stops,
// open streams end (the Coordinator closes its watches; the node's
// background context ends the rest), so they do not hold up Shutdown.

// sseKeepAlive is the interval of the keep-alive comment on an idle stream.
// A variable so that tests can shorten it.
var sseKeepAlive = 15 * time.Second

// sseWriteTimeout bounds one write (event plus flush) to a client: a client
// that takes nothing for this long loses its stream. A variable so that
// tests can lengthen it.
var sseWriteTimeout = 10 * time.Second

// sseFinalWrite bounds the last write of a stream the node ends (its
// "error" event), when the node stops.
const sseFinalWrite = 500 * time.Millisecond

// MembersInfo is the data of a /v1/watch/members event: the full member
// list at one revision.
type MembersInfo struct {
	Revision   uint64   `json:"revision"` // of the membership state (0 without membership)
	FellBehind bool     `json:"fell_behind"`
	Members    []Member `json:"members"`
	// Read says how fresh the first list of a watch is (absent after it).
	Read *ReadInfo `json:"read,omitempty"`
}

// AssignmentEvent is the data of a /v1/watch/assignments event: one
// resource change.
type AssignmentEvent struct {
	Revision   uint64 `json:"revision"`
	Kind       string `json:"kind"` // start, registered, assigned, deleted
	ResourceID string `json:"resource_id,omitempty"`
	Owner      string `json:"owner,omitempty"`      // after the change ("" unassigned)
	PrevOwner  string `json:"prev_owner,omitempty"` // before it
	Epoch      uint64 `json:"epoch,omitempty"`      // assigned: the new epoch
	// LeaseRemainingMs is set, on a watch of this node, on the last event
	// of each batch that brings the stream up to date with this node's
	// state: how long this node's ownership lease has left, measured when
	// the event was built. Absent (0) it renews nothing and revokes nothing.
	LeaseRemainingMs int64 `json:"lease_remaining_ms,omitempty"`
}

// LeaseEvent is the data of a /v1/watch/assignments "lease" event, sent on
// a watch of this node every leaseEventEvery: the stream has sent every
// change up to Revision (those the watch selects), and this node may work
// on the resources it owns at that revision for LeaseRemainingMs more,
// measured when the event was built. 0: the node holds no ownership lease;
// stop all work.
type LeaseEvent struct {
	LeaseRemainingMs int64  `json:"lease_remaining_ms"`
	Revision         uint64 `json:"revision"`
}

// leaseEventEvery is how often a watch of this node's assignments sends a
// "lease" event: the rate at which the leader renews ownership leases (its
// heartbeat interval by default).
const leaseEventEvery = 50 * time.Millisecond

// sseEvent is one message of a stream.
type sseEvent struct {
	name string // the event: field
	id   string // the id: field; "" for none
	data any    // encoded as one line of JSON
}

// watchRoutes adds the server-sent-event watches.
func (n *Node) watchRoutes(routes map[string]route) {
	routes["/v1/watch/leader"] = route{http.MethodGet: n.handleWatchLeader}
	routes["/v1/watch/members"] = route{http.MethodGet: n.handleWatchMembers}
	if n.mfsm != nil {
		routes["/v1/watch/assignments"] = route{http.MethodGet: n.handleWatchAssignments}
	}
}

// handleWatchLeader: GET /v1/watch/leader streams "leader" events (data:
// LeaderInfo), the current leadership first, on the Coordinator's
// WatchLeader.
func (n *Node) handleWatchLeader(w http.ResponseWriter, r *http.Request) {
	mode, err := readMode(r)
	if err != nil {
		writeStatusError(w, err)
		return
	}
	n.serveSSE(w, r, func(ctx context.Context, out chan<- sseEvent) error {
		s := &streamAdapter[heartbeatpb.WatchLeaderResponse]{ctx: ctx, out: out, convert: func(ev *heartbeatpb.WatchLeaderResponse) sseEvent {
			return sseEvent{name: "leader", data: LeaderInfoFromProto(ev.GetLeadership(), ev.GetFellBehind(), ev.GetRead())}
		}}
		return n.coord.WatchLeader(&heartbeatpb.WatchLeaderRequest{Consistency: mode}, s)
	})
}

// handleWatchMembers: GET /v1/watch/members streams "members" events (data:
// MembersInfo, id: its revision), the full list first and again after each
// change, on the Coordinator's WatchMembers.
func (n *Node) handleWatchMembers(w http.ResponseWriter, r *http.Request) {
	mode, err := readMode(r)
	if err != nil {
		writeStatusError(w, err)
		return
	}
	n.serveSSE(w, r, func(ctx context.Context, out chan<- sseEvent) error {
		s := &streamAdapter[heartbeatpb.WatchMembersResponse]{ctx: ctx, out: out, convert: func(ev *heartbeatpb.WatchMembersResponse) sseEvent {
			e := sseEvent{name: "members", data: MembersInfo{Revision: ev.GetRevision(), FellBehind: ev.GetFellBehind(),
				Members: MembersFromProto(ev.GetMembers()), Read: readInfoFromProto(ev.GetRead())}}
			if ev.GetRevision() > 0 {
				e.id = strconv.FormatUint(ev.GetRevision(), 10)
			}
			return e
		}}
		return n.coord.WatchMembers(&heartbeatpb.WatchMembersRequest{Consistency: mode}, s)
	})
}

// handleWatchAssignments: GET /v1/watch/assignments?from=REV&node=ID
// streams the resource changes after revision REV (the Last-Event-ID
// header, when a reconnecting client sends it, wins over from; neither: the
// current revision), limited to those that give a resource to or take one
// from member ID when node is set. The first event, "start", carries the
// revision the stream starts after; then one event per change, named by its
// kind. The id: field is set on the last event of each revision only, so a
// client that resumes from its Last-Event-ID never misses the rest of a
// revision it saw part of. A revision the change feed no longer holds
// answers 400 (or, once streaming, an "error" event with code 400): list
// again and resume from the listing's revision.
//
// A watch of this node (node empty or this node's id) also carries this
// node's ownership lease: a "lease" event (LeaseEvent) as soon as the
// stream is up to date and every leaseEventEvery after, and
// lease_remaining_ms on the last event of a batch that brings it up to
// date (see feedAssignments).
func (n *Node) handleWatchAssignments(w http.ResponseWriter, r *http.Request) {
	from, err := watchFrom(r)
	if err != nil {
		writeStatusError(w, err)
		return
	}
	// The stream starts from a state at least as new as every write
	// acknowledged before the call (unless stale), never ahead of it.
	info, err := n.readyRead(r)
	if err != nil {
		writeStatusError(w, err)
		return
	}
	setReadHeaders(w, info)
	nodeID := r.URL.Query().Get("node")
	var known bool
	var rev uint64
	n.mfsm.Read(func(s *membership.State) {
		rev = s.Revision()
		_, known = s.Member(nodeID)
	})
	if nodeID != "" && !known {
		writeStatusError(w, status.Errorf(codes.NotFound, "watch assignments: %q is not a member", nodeID))
		return
	}
	if from == 0 {
		from = rev
	} else if from > rev {
		writeStatusError(w, status.Errorf(codes.OutOfRange, "watch assignments: revision %d is ahead of this node's %d (of a consistent read); list the resources and watch from the listing's revision", from, rev))
		return
	}
	if _, err := n.mfsm.Changes(from, 1); err != nil {
		writeStatusError(w, feedStatus(err))
		return
	}
	lease := nodeID == "" || nodeID == n.cfg.ID
	n.serveSSE(w, r, func(ctx context.Context, out chan<- sseEvent) error {
		return n.feedAssignments(ctx, from, nodeID, lease, out)
	})
}

// watchFrom reads the revision to resume after: Last-Event-ID, else the
// from parameter, else 0.
func watchFrom(r *http.Request) (uint64, error) {
	raw, what := r.Header.Get("Last-Event-ID"), "Last-Event-ID"
	if raw == "" {
		raw, what = r.URL.Query().Get("from"), "from"
	}
	if raw == "" {
		return 0, nil
	}
	v, err := strconv.ParseUint(raw, 10, 64)
	if err != nil {
		return 0, status.Errorf(codes.InvalidArgument, "%s %q: want a revision (an unsigned integer)", what, raw)
	}
	return v, nil
}

// feedStatus maps an error of the change feed to a status error.
func feedStatus(err error) error {
	if errors.Is(err, membership.ErrCompacted) {
		return status.Errorf(codes.OutOfRange, "watch assignments: %v; list the resources again and resume from the listing's revision", err)
	}
	return status.Error(codes.Internal, err.Error())
}

// feedAssignments sends the "start" event and then the resource changes
// after from (of member nodeID, when set) until ctx ends or the feed fails.
//
// With lease set it also carries this node's ownership lease. The lease is
// read first and the change feed after it, as KeepAlive reads the lease
// before the owned set: a lease is good for the owned set of any state
// applied after it was read, so it is only sent once the stream has sent
// every change of such a state. That is, on a "lease" event when a read of
// the feed, made after the lease was read, found nothing more to send; and
// on the last event of a batch that was not cut short (fewer than
// DefaultChangesMax events: the feed had nothing after it). The remaining
// time is measured when the event is built.
func (n *Node) feedAssignments(ctx context.Context, from uint64, nodeID string, lease bool, out chan<- sseEvent) error {
	id := strconv.FormatUint(from, 10)
	if !send(ctx, out, sseEvent{name: "start", id: id, data: AssignmentEvent{Revision: from, Kind: "start"}}) {
		return nil
	}
	var tick <-chan time.Time
	if lease {
		t := time.NewTicker(leaseEventEvery)
		defer t.Stop()
		tick = t.C
	}
	cursor := from
	leaseDue := lease // one at once, as soon as the stream is up to date
	for {
		var until time.Time
		if lease {
			until = n.el.OwnershipLease() // before the feed: see above
		}
		rev, changed := n.mfsm.Changed()
		evs, err := n.mfsm.Changes(cursor, membership.DefaultChangesMax)
		if err != nil {
			return feedStatus(err)
		}
		// complete: the read was not cut short, so the stream is up to
		// date once this batch is sent: every change up to rev (read after
		// the lease) and up to cursor.
		complete := len(evs) < membership.DefaultChangesMax
		if len(evs) > 0 {
			cursor = evs[len(evs)-1].Revision
			var batch []AssignmentEvent
			for _, e := range evs {
				if a, ok := assignmentFrom(e); ok && (nodeID == "" || a.Owner == nodeID || a.PrevOwner == nodeID) {
					batch = append(batch, a)
				}
			}
			for i, a := range batch {
				last := i == len(batch)-1
				if last && lease && complete {
					a.LeaseRemainingMs = api.Remaining(until).Milliseconds()
				}
				ev := sseEvent{name: a.Kind, data: a}
				if last || batch[i+1].Revision != a.Revision {
					ev.id = strconv.FormatUint(a.Revision, 10)
				}
				if !send(ctx, out, ev) {
					return nil
				}
			}
		}
		if !complete {
			continue
		}
		if leaseDue {
			leaseDue = false
			le := LeaseEvent{LeaseRemainingMs: api.Remaining(until).Milliseconds(), Revision: max(rev, cursor)}
			if !send(ctx, out, sseEvent{name: "lease", data: le}) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-tick:
			leaseDue = true
		}
	}
}

// assignmentFrom converts a resource event of the change feed; ok is false
// for member events.
func assignmentFrom(e membership.Event) (AssignmentEvent, bool) {
	a := AssignmentEvent{Revision: e.Revision, ResourceID: e.ResourceID, Owner: e.Owner, PrevOwner: e.PrevOwner}
	switch e.Kind {
	case membership.EventResource:
		a.Kind = "registered"
	case membership.EventAssigned:
		a.Kind, a.Epoch = "assigned", e.Epoch
	case membership.EventResourceDeleted:
		a.Kind = "deleted"
	default:
		return a, false
	}
	return a, true
}

// send hands ev to the writer; false once ctx ended.
func send(ctx context.Context, out chan<- sseEvent, ev sseEvent) bool {
	select {
	case out <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

// serveSSE runs produce in a goroutine of its own and writes what it sends
// as server-sent events, until the client goes away, the node stops, or
// produce returns (its error, if any, is the stream's last event). An error
// before the first event is answered as a plain JSON error with its HTTP
// status instead. produce must return once ctx ends; serveSSE returns only
// after it has.
func (n *Node) serveSSE(w http.ResponseWriter, r *http.Request, produce func(ctx context.Context, out chan<- sseEvent) error) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stopOnStop := context.AfterFunc(n.bgCtx, cancel) // the node stops: end the stream
	defer stopOnStop()

	out := make(chan sseEvent)
	errc := make(chan error, 1)
	go func() { errc <- produce(ctx, out) }()
	producerDone := false
	defer func() {
		cancel()
		if !producerDone {
			<-errc //nolint:errcheck // the producer's error was already reported to the stream
		}
	}()

	// Hold the response until the first event or error, so that an error
	// that comes at once (Unimplemented, Unavailable) has its HTTP status.
	var first sseEvent
	select {
	case first = <-out:
	case err := <-errc:
		producerDone = true
		if err == nil {
			err = status.Error(codes.Unavailable, "watch ended before its first event")
		}
		if r.Context().Err() == nil {
			writeStatusError(w, err)
		}
		return
	case <-ctx.Done():
		if r.Context().Err() == nil {
			writeStatusError(w, status.Error(codes.Unavailable, "node shutting down"))
		}
		return
	}

	sw := newSSEWriter(w)
	defer sw.finish()
	stopCut := context.AfterFunc(r.Context(), sw.cut) // the client went away: fail a blocked write at once
	defer stopCut()
	stopFinal := context.AfterFunc(n.bgCtx, sw.finalWrite)
	defer stopFinal()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "close") // the stream's end ends the connection: no deadline outlives it
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if err := sw.event(first); err != nil {
		return
	}
	keepAlive := time.NewTicker(sseKeepAlive)
	defer keepAlive.Stop()
	for {
		select {
		case ev := <-out:
			if err := sw.event(ev); err != nil {
				return
			}
		case <-keepAlive.C:
			if err := sw.comment("keep-alive"); err != nil {
				return
			}
		case err := <-errc:
			producerDone = true
			if err == nil && n.bgCtx.Err() != nil {
				err = status.Error(codes.Unavailable, "node shutting down")
			}
			if err != nil && r.Context().Err() == nil {
				s := status.Convert(err)
				_ = sw.event(sseEvent{name: "error", data: map[string]any{"error": s.Message(), "code": httpCode(s.Code())}})
			}
			return
		case <-ctx.Done():
			if r.Context().Err() == nil {
				_ = sw.event(sseEvent{name: "error", data: map[string]any{"error": "node shutting down", "code": http.StatusServiceUnavailable}})
			}
			return
		}
	}
}

// streamAdapter serves a Coordinator watch in process: it is the
// grpc.ServerStreamingServer the watch sends on, and hands each message,
// converted, to serveSSE's writer. Send blocks while the writer is busy; the
// Coordinator's watches drop intermediate states meanwhile rather than
// block the node.
type streamAdapter[T any] struct {
	ctx     context.Context
	out     chan<- sseEvent
	convert func(*T) sseEvent
}

// Send hands m to the writer, or fails once the stream's context ended.
func (s *streamAdapter[T]) Send(m *T) error {
	if !send(s.ctx, s.out, s.convert(m)) {
		return s.ctx.Err()
	}
	return nil
}

// Context is the stream's context: it ends when the client goes away or
// the node stops.
func (s *streamAdapter[T]) Context() context.Context { return s.ctx }

// SetHeader does nothing: HTTP has no gRPC header metadata.
func (s *streamAdapter[T]) SetHeader(metadata.MD) error { return nil }

// SendHeader does nothing: HTTP has no gRPC header metadata.
func (s *streamAdapter[T]) SendHeader(metadata.MD) error { return nil }

// SetTrailer does nothing: HTTP has no gRPC trailer metadata.
func (s *streamAdapter[T]) SetTrailer(metadata.MD) {}

// SendMsg sends m, which must be a *T.
func (s *streamAdapter[T]) SendMsg(m any) error {
	t, ok := m.(*T)
	if !ok {
		return status.Errorf(codes.Internal, "watch stream: message of type %T", m)
	}
	return s.Send(t)
}

// RecvMsg fails: a server-streaming watch receives nothing after its request.
func (s *streamAdapter[T]) RecvMsg(any) error {
	return status.Error(codes.Internal, "watch stream: nothing to receive")
}

// sseWriter writes events to one response with a deadline on each write.
// cut and finalWrite may run concurrently with a write (from
// context.AfterFunc): they only move the connection's write deadline, which
// net.Conn allows, under mu so that a write cannot push it back out.
type sseWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController

	mu    sync.Mutex
	limit time.Time // once set, no deadline goes past it
	done  bool      // finish ran: leave the connection alone
}

func newSSEWriter(w http.ResponseWriter) *sseWriter {
	return &sseWriter{w: w, rc: http.NewResponseController(w)}
}

// deadline sets the write deadline to now+d, capped by the limit.
func (s *sseWriter) deadline(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := time.Now().Add(d)
	if !s.limit.IsZero() && t.After(s.limit) {
		t = s.limit
	}
	_ = s.rc.SetWriteDeadline(t)
}

// cap lowers the limit to t and applies it at once.
func (s *sseWriter) cap(t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return
	}
	if s.limit.IsZero() || t.Before(s.limit) {
		s.limit = t
	}
	_ = s.rc.SetWriteDeadline(s.limit)
}

// cut fails any write, blocked or future, at once.
func (s *sseWriter) cut() { s.cap(time.Now()) }

// finalWrite leaves sseFinalWrite for the last event of a stream the node
// ends.
func (s *sseWriter) finalWrite() { s.cap(time.Now().Add(sseFinalWrite)) }

// finish marks the response done: cut and finalWrite do nothing after it.
// The server's end of the response (the chunked terminator) gets
// sseFinalWrite, or what is left of an earlier limit.
func (s *sseWriter) finish() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done = true
	if s.limit.IsZero() {
		_ = s.rc.SetWriteDeadline(time.Now().Add(sseFinalWrite))
	}
}

// event writes one event and flushes it.
func (s *sseWriter) event(ev sseEvent) error {
	data, err := json.Marshal(ev.data) // one line: JSON strings escape newlines
	if err != nil {
		return err
	}
	var b []byte
	b = fmt.Appendf(b, "event: %s\n", ev.name)
	if ev.id != "" {
		b = fmt.Appendf(b, "id: %s\n", ev.id)
	}
	b = fmt.Appendf(b, "data: %s\n\n", data)
	return s.write(b)
}

// comment writes a comment line (ignored by clients) and flushes it.
func (s *sseWriter) comment(text string) error {
	return s.write([]byte(": " + text + "\n\n"))
}

func (s *sseWriter) write(b []byte) error {
	s.deadline(sseWriteTimeout)
	if _, err := s.w.Write(b); err != nil {
		return err
	}
	return s.rc.Flush()
}
