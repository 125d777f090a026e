package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// A server-streaming route is served as server-sent events
// (text/event-stream): it opens the RPC's stream on Config.Conn — the same
// implementation a gRPC client watches — and writes each message as an
// "event:" line (SSE.Event, or the message's SSE.EventField), an "id:" line
// where the route has SSE.IDField, and one "data:" line of protojson. A
// stream that ends for another reason than the client going away ends with
// an "error" event whose data is an ErrorBody. A comment line is sent every
// Config.SSEKeepAlive so that proxies keep an idle stream open. An error
// before the first message (a bad request, no leader) is an ordinary JSON
// error answer with its HTTP status.
//
// A slow reader never holds up the node: the gRPC watches keep only the
// latest state for a reader that lags (fell_behind) or end the stream when
// it falls out of the change feed, and a write the client does not take
// within Config.SSEWriteTimeout ends the stream.

// sseFinalWrite bounds the last write of a stream the node ends (its
// "error" event) and the end of the response.
const sseFinalWrite = 500 * time.Millisecond

// stream answers a route of a server-streaming RPC.
func (g *gateway) stream(rt Route, in, out protoreflect.MessageType) http.Handler {
	desc := &grpc.StreamDesc{StreamName: rt.RPC, ServerStreams: true}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := g.authorize(r, rt.RPC); err != nil {
			writeError(w, err)
			return
		}
		req := in.New().Interface()
		if err := bind(rt, w, r, req, g.bodyLimits()); err != nil {
			writeError(w, err)
			return
		}
		if r.Method == http.MethodHead { // the headers of a stream, without opening one
			w.Header().Set("Content-Type", "text/event-stream")
			w.Header().Set("Cache-Control", "no-cache")
			w.WriteHeader(http.StatusOK)
			return
		}
		cctx, err := g.withCredentials(r)
		if err != nil {
			writeError(w, err)
			return
		}
		ctx, cancel := context.WithCancel(cctx)
		defer cancel()
		stopping := make(chan struct{}) // closed when the node stops
		if g.cfg.Context != nil {
			stop := context.AfterFunc(g.cfg.Context, func() { close(stopping); cancel() })
			defer stop()
		}
		cs, err := g.cfg.Conn.NewStream(ctx, desc, rt.RPC)
		if err == nil {
			err = cs.SendMsg(req)
		}
		if err == nil {
			err = cs.CloseSend()
		}
		if err != nil {
			writeError(w, err)
			return
		}
		msgs := make(chan proto.Message)
		errc := make(chan error, 1)
		go func() { errc <- receive(ctx, cs, out, msgs) }()
		received := false
		defer func() {
			cancel()
			if !received {
				<-errc //nolint:errcheck // the receiver's end: the stream already ended or was answered
			}
		}()
		s := sseStream{g: g, rt: rt, w: w, r: r, stopping: stopping}
		received = s.serve(msgs, errc)
	})
}

// receive hands the stream's messages to msgs until it ends (its error;
// io.EOF for a clean end) or ctx ends.
func receive(ctx context.Context, cs grpc.ClientStream, out protoreflect.MessageType, msgs chan<- proto.Message) error {
	for {
		m := out.New().Interface()
		if err := cs.RecvMsg(m); err != nil {
			return err
		}
		select {
		case msgs <- m:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// sseStream is one open stream.
type sseStream struct {
	g        *gateway
	rt       Route
	w        http.ResponseWriter
	r        *http.Request
	stopping <-chan struct{}

	first   bool   // the first event was written
	pending uint64 // WholeRevisions: the revision whose id is not sent yet
	havePnd bool
}

// serve writes the stream; it reports whether it took the receiver's
// error (so the caller need not wait for it).
func (s *sseStream) serve(msgs <-chan proto.Message, errc <-chan error) bool {
	var firstMsg proto.Message
	// Hold the response until the first message or error, so that an
	// error that comes at once (a bad revision, no leader) has its HTTP
	// status.
	select {
	case firstMsg = <-msgs:
	case err := <-errc:
		if errors.Is(err, io.EOF) {
			err = status.Error(codes.Unavailable, "watch ended before its first event")
		}
		if s.r.Context().Err() == nil {
			writeError(s.w, s.stopErr(err))
		}
		return true
	case <-s.stopping:
		writeError(s.w, status.Error(codes.Unavailable, "node shutting down"))
		return false
	}

	sw := newSSEWriter(s.w, s.g.cfg.SSEWriteTimeout)
	defer sw.finish()
	stopCut := context.AfterFunc(s.r.Context(), sw.cut) // the client went away: fail a blocked write at once
	defer stopCut()
	if s.g.cfg.Context != nil {
		stopFinal := context.AfterFunc(s.g.cfg.Context, sw.finalWrite)
		defer stopFinal()
	}

	h := s.w.Header()
	setReadHeaders(h, firstMsg)
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "close") // the stream's end ends the connection: no deadline outlives it
	h.Set("X-Accel-Buffering", "no")
	s.w.WriteHeader(http.StatusOK)
	if err := s.message(sw, firstMsg); err != nil {
		return false
	}
	keepAlive := time.NewTicker(s.g.cfg.SSEKeepAlive)
	defer keepAlive.Stop()
	for {
		select {
		case m := <-msgs:
			if err := s.message(sw, m); err != nil {
				return false
			}
		case <-keepAlive.C:
			if err := sw.write([]byte(": keep-alive\n\n")); err != nil {
				return false
			}
		case err := <-errc:
			err = s.stopErr(err)
			if errors.Is(err, io.EOF) || s.r.Context().Err() != nil {
				return true // a clean end, or the client went away
			}
			_ = sw.event("error", "", errorJSON(err))
			return true
		case <-s.stopping:
			_ = sw.event("error", "", errorJSON(status.Error(codes.Unavailable, "node shutting down")))
			return false
		}
	}
}

// stopErr turns the end of a stream the node's stop cut into Unavailable.
func (s *sseStream) stopErr(err error) error {
	select {
	case <-s.stopping:
		return status.Error(codes.Unavailable, "node shutting down")
	default:
		return err
	}
}

// message writes one message as an event, with its id as the route says.
func (s *sseStream) message(sw *sseWriter, m proto.Message) error {
	spec := s.rt.SSE
	pm := m.ProtoReflect()
	name := spec.Event
	if spec.EventField != "" {
		fd := pm.Descriptor().Fields().ByName(protoreflect.Name(spec.EventField))
		if v := scalarString(pm.Get(fd), fd); v != "" {
			name = v
		}
	}
	var id string
	if spec.IDField != "" {
		rev := pm.Get(pm.Descriptor().Fields().ByName(protoreflect.Name(spec.IDField))).Uint()
		switch {
		case !spec.WholeRevisions:
			if rev > 0 {
				id = strconv.FormatUint(rev, 10)
			}
		case !s.first:
			id = strconv.FormatUint(rev, 10) // "start": complete by itself
		default:
			if s.havePnd && rev != s.pending {
				// The pending revision is complete: mark it.
				if err := sw.write(fmt.Appendf(nil, "id: %d\n\n", s.pending)); err != nil {
					return err
				}
			}
			s.pending, s.havePnd = rev, true
		}
	}
	s.first = true
	data, err := eventJSON.Marshal(m)
	if err != nil {
		return err
	}
	return sw.event(name, id, data)
}

// errorJSON is the data of a stream's "error" event.
func errorJSON(err error) []byte {
	b, _ := json.Marshal(errorBody(err))
	return b
}

// sseWriter writes events to one response with a deadline on each write.
// cut and finalWrite may run concurrently with a write (from
// context.AfterFunc): they only move the connection's write deadline, which
// net.Conn allows, under mu so that a write cannot push it back out.
type sseWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration

	mu    sync.Mutex
	limit time.Time // once set, no deadline goes past it
	done  bool      // finish ran: leave the connection alone
}

func newSSEWriter(w http.ResponseWriter, timeout time.Duration) *sseWriter {
	return &sseWriter{w: w, rc: http.NewResponseController(w), timeout: timeout}
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

// capAt lowers the limit to t and applies it at once.
func (s *sseWriter) capAt(t time.Time) {
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
func (s *sseWriter) cut() { s.capAt(time.Now()) }

// finalWrite leaves sseFinalWrite for the last event of a stream the node
// ends.
func (s *sseWriter) finalWrite() { s.capAt(time.Now().Add(sseFinalWrite)) }

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

// event writes one event (data is one line: JSON escapes newlines) and
// flushes it.
func (s *sseWriter) event(name, id string, data []byte) error {
	var b []byte
	b = fmt.Appendf(b, "event: %s\n", name)
	if id != "" {
		b = fmt.Appendf(b, "id: %s\n", id)
	}
	b = fmt.Appendf(b, "data: %s\n\n", data)
	return s.write(b)
}

// write writes b within the write timeout and flushes it.
func (s *sseWriter) write(b []byte) error {
	s.deadline(s.timeout)
	if _, err := s.w.Write(b); err != nil {
		return err
	}
	return s.rc.Flush()
}
