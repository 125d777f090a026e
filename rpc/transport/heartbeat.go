package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/proto/raftpb"
)

// Heartbeats travel on one long-lived HeartbeatStream per peer, on the control
// connection, instead of one unary RPC each: a unary call costs a new HTTP/2 stream
// (HEADERS both ways, metadata encoded and checked, a context with a deadline, a
// server goroutine), which made a heartbeat about three times as expensive as on
// raft's own TCP transport. On the stream a heartbeat is one DATA frame each way.

// hbStream is the heartbeat stream to one peer. The first heartbeat opens it, and the
// next heartbeat after any failure reopens it. One heartbeat is on it at a time (mu):
// raft sends a peer's heartbeats from one goroutine, and the mutex keeps other callers
// in line. A heartbeat that overruns HeartbeatTimeout or fails tears the stream down,
// so a late answer can never be taken for the next request's. Between heartbeats the
// stream costs nothing: no goroutine of ours, no timer armed.
type hbStream struct {
	mu     sync.Mutex
	stream grpc.BidiStreamingClient[raftpb.AppendEntriesRequest, raftpb.AppendEntriesResponse]
	cancel context.CancelFunc
	// watchdog cancels the stream when a heartbeat is not answered within
	// HeartbeatTimeout; armed only while a heartbeat is in flight.
	watchdog *time.Timer
	// answered: the current stream has carried an answer, so the next
	// heartbeat on it may carry an ownership grant (see grant.go).
	answered bool
	// unary: the peer does not serve HeartbeatStream (an older version); heartbeats to
	// it go as unary Heartbeat RPCs from then on.
	unary bool

	// Reused for every heartbeat: gRPC encodes a message before Send returns (no stats
	// handler or binary log is installed that could read it later) and decoding
	// replaces every field, so nothing of one heartbeat leaks into the next.
	req    raftpb.AppendEntriesRequest
	reqHdr raftpb.RPCHeader
	resp   raftpb.AppendEntriesResponse
}

// teardown cancels the stream (gRPC resets it) and forgets it.
func (h *hbStream) teardown() {
	if h.watchdog != nil {
		h.watchdog.Stop()
	}
	if h.cancel != nil {
		h.cancel()
	}
	h.stream, h.cancel, h.watchdog = nil, nil, nil
	h.answered = false
}

// heartbeat sends args to target on its heartbeat stream and fills resp with the
// answer, which must come within HeartbeatTimeout (opening the stream included).
func (t *Transport) heartbeat(pc *peerConns, target raft.ServerAddress,
	args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	h := &pc.hb
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.unary {
		return t.heartbeatUnary(pc, target, args, resp)
	}
	sentAt := time.Now()
	if h.stream == nil {
		ctx, cancel := context.WithCancel(t.closeCtx)
		h.watchdog = time.AfterFunc(t.cfg.HeartbeatTimeout, cancel)
		h.cancel = cancel
		stream, err := pc.control.HeartbeatStream(ctx)
		if err != nil {
			expired := !h.watchdog.Stop()
			h.teardown()
			return t.heartbeatErr(target, err, expired)
		}
		h.stream = stream
	} else {
		h.watchdog.Reset(t.cfg.HeartbeatTimeout)
	}
	appendReqIntoProto(args, &h.req, &h.reqHdr)
	h.req.Grant, h.req.GrantRevision = false, 0
	if h.answered {
		if src := t.hooks().Source; src != nil {
			if rev, ok := src(); ok {
				h.req.Grant, h.req.GrantRevision = true, rev
				t.grants.record(target, time.Now())
			}
		}
	}
	err := h.stream.Send(&h.req)
	if err == nil || errors.Is(err, io.EOF) {
		// io.EOF: the stream ended; RecvMsg returns its status.
		if rerr := h.stream.RecvMsg(&h.resp); rerr != nil || err == nil {
			err = rerr
		}
	}
	repliedAt := time.Now()
	expired := !h.watchdog.Stop()
	if err != nil || expired {
		// An answer that beat the watchdog by a hair still counts; the stream is
		// canceled either way.
		h.teardown()
	} else {
		h.answered = true
	}
	if err != nil {
		if status.Code(err) == codes.Unimplemented && t.closeCtx.Err() == nil {
			t.logger.Info("peer serves no heartbeat stream; using unary heartbeats", "target", string(target))
			h.unary = true
			return t.heartbeatUnary(pc, target, args, resp)
		}
		return t.heartbeatErr(target, err, expired)
	}
	return t.finishAppend("Heartbeat", target, args, resp, &h.resp, sentAt, repliedAt, pc.rtt)
}

// heartbeatErr wraps the error of a heartbeat on the stream; expired: the watchdog
// canceled it.
func (t *Transport) heartbeatErr(target raft.ServerAddress, err error, expired bool) error {
	if expired && t.closeCtx.Err() == nil {
		err = status.Errorf(codes.DeadlineExceeded, "no heartbeat answer within %v: %v", t.cfg.HeartbeatTimeout, err)
	}
	return t.callErr("Heartbeat", target, err)
}

// heartbeatUnary sends args as one unary Heartbeat RPC, the way heartbeats went before
// the stream; used for peers that do not serve the stream.
func (t *Transport) heartbeatUnary(pc *peerConns, target raft.ServerAddress,
	args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	ctx, cancel := t.callCtx(t.cfg.HeartbeatTimeout)
	defer cancel()
	req := appendReqToProto(args)
	sentAt := time.Now()
	out, err := pc.control.Heartbeat(ctx, req)
	repliedAt := time.Now()
	if err != nil {
		return t.callErr("Heartbeat", target, err)
	}
	return t.finishAppend("Heartbeat", target, args, resp, out, sentAt, repliedAt, pc.rtt)
}

// finishAppend turns the answer out to args into resp, observes the RTT on rtt (if not
// nil) and records an ack when the answer has the request's term.
func (t *Transport) finishAppend(name string, target raft.ServerAddress, args *raft.AppendEntriesRequest,
	resp *raft.AppendEntriesResponse, out *raftpb.AppendEntriesResponse, sentAt, repliedAt time.Time,
	rtt prometheus.Observer) error {
	if out.Error != "" {
		t.metrics.rpcErrors.WithLabelValues(name, string(target)).Inc()
		return fmt.Errorf("transport: %s to %s: %w: %s", name, target, ErrRemote, out.Error)
	}
	appendRespFromProto(out, resp)
	if rtt != nil {
		rtt.Observe(repliedAt.Sub(sentAt).Seconds())
	}
	if resp.Term == args.Term {
		t.acks.record(target, sentAt, repliedAt, args.Term, resp.LastLog)
	}
	return nil
}

// HeartbeatStream serves one sender's heartbeat stream: it reads the requests in
// order, hands each to the heartbeat handler (or Consumer(), see serveAppend) and
// answers it before reading the next. A request marked as an ownership grant, that
// raft accepted, after an earlier answer on this stream, goes to the grant hook
// with the time of that answer as its anchor (see grant.go). The cluster check ran
// once when it opened. It ends when the sender leaves, the stream breaks, or the
// transport closes.
func (s *rpcServer) HeartbeatStream(stream grpc.BidiStreamingServer[raftpb.AppendEntriesRequest, raftpb.AppendEntriesResponse]) error {
	t := s.t
	t.hbStreams.Add(1)
	ctx := stream.Context()
	// Reused for every heartbeat of the stream (see hbStream). The raft request is
	// fresh each time: raft's handlers may keep it.
	var (
		req    raftpb.AppendEntriesRequest
		out    raftpb.AppendEntriesResponse
		outHdr raftpb.RPCHeader
		respCh = make(chan raft.RPCResponse, 1)
		// lastAnswer is when the previous answer on this stream was sent (taken
		// before the send); zero before the first.
		lastAnswer time.Time
	)
	for {
		if err := stream.RecvMsg(&req); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		cmd, err := t.appendCmd(ctx, "HeartbeatStream", &req)
		if err != nil {
			return err
		}
		r, err := t.serveAppend(ctx, cmd, respCh)
		if err != nil {
			return toStatus(err)
		}
		if req.Grant && !lastAnswer.IsZero() {
			if resp, ok := r.Response.(*raft.AppendEntriesResponse); ok && r.Error == nil && resp.Term == cmd.Term {
				if recv := t.hooks().Receive; recv != nil {
					recv(Grant{Leader: t.DecodePeer(cmd.Leader), Term: cmd.Term, Anchor: lastAnswer, Revision: req.GrantRevision})
				}
			}
		}
		appendResultInto(r, &out, &outHdr)
		lastAnswer = time.Now()
		if err := stream.Send(&out); err != nil {
			return err
		}
	}
}
