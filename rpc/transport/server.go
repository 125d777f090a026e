package transport

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/proto/raftpb"
)

// errSnapshotAnswered closes the snapshot pipe once raft has answered, so a feeder
// still writing data that raft did not read gives up.
var errSnapshotAnswered = errors.New("transport: snapshot already answered")

// rpcServer serves RaftTransport for one Transport.
type rpcServer struct {
	raftpb.UnimplementedRaftTransportServer
	t *Transport
}

// dispatch hands cmd to Consumer() and waits for raft's answer. It gives up when ctx
// ends (ctx.Err()) or the transport closes (ErrTransportShutdown).
func (t *Transport) dispatch(ctx context.Context, cmd any, reader io.Reader) (raft.RPCResponse, error) {
	return t.dispatchOn(ctx, cmd, reader, make(chan raft.RPCResponse, 1))
}

// dispatchOn is dispatch with the answer channel supplied by the caller: empty, with
// room for one answer, and not used for anything else until this returns.
func (t *Transport) dispatchOn(ctx context.Context, cmd any, reader io.Reader, respCh chan raft.RPCResponse) (raft.RPCResponse, error) {
	rpc := raft.RPC{Command: cmd, Reader: reader, RespChan: respCh}
	select {
	case t.consumeCh <- rpc:
	case <-ctx.Done():
		return raft.RPCResponse{}, ctx.Err()
	case <-t.closeCtx.Done():
		return raft.RPCResponse{}, ErrTransportShutdown
	}
	return t.await(ctx, respCh)
}

// await waits for the answer to an RPC already handed over.
func (t *Transport) await(ctx context.Context, respCh <-chan raft.RPCResponse) (raft.RPCResponse, error) {
	select {
	case r := <-respCh:
		return r, nil
	case <-ctx.Done():
		return raft.RPCResponse{}, ctx.Err()
	case <-t.closeCtx.Done():
		return raft.RPCResponse{}, ErrTransportShutdown
	}
}

// toStatus turns a dispatch error into a gRPC status error.
func toStatus(err error) error {
	if errors.Is(err, ErrTransportShutdown) {
		return status.Error(codes.Unavailable, err.Error())
	}
	return status.FromContextError(err).Err()
}

// remoteStatus carries an error raft answered with back to the caller.
func remoteStatus(err error) error {
	return status.Error(codes.Aborted, err.Error())
}

// appendResult builds the wire answer to an AppendEntries from raft's answer.
func appendResult(r raft.RPCResponse) *raftpb.AppendEntriesResponse {
	out := &raftpb.AppendEntriesResponse{}
	appendResultInto(r, out, &raftpb.RPCHeader{})
	return out
}

// appendResultInto is appendResult into a reused message: every field of out (and of
// hdr, its header when raft answered) is overwritten.
func appendResultInto(r raft.RPCResponse, out *raftpb.AppendEntriesResponse, hdr *raftpb.RPCHeader) {
	if resp, ok := r.Response.(*raft.AppendEntriesResponse); ok && resp != nil {
		appendRespIntoProto(resp, out, hdr)
	} else {
		appendRespIntoProto(&raft.AppendEntriesResponse{}, out, hdr)
		out.Header = nil
		if r.Error == nil {
			out.Error = fmt.Sprintf("unexpected response type %T", r.Response)
		}
	}
	if r.Error != nil {
		out.Error = r.Error.Error()
	}
}

// serveAppend hands one AppendEntries to raft and waits for its answer on respCh
// (empty, room for one). A heartbeat (by IsHeartbeat, whichever RPC carried it) goes
// to the heartbeat handler when one is set, else through Consumer(); anything with
// entries goes through Consumer() even if sent as a heartbeat, since raft may only
// process those on its main loop.
func (t *Transport) serveAppend(ctx context.Context, cmd *raft.AppendEntriesRequest, respCh chan raft.RPCResponse) (raft.RPCResponse, error) {
	if IsHeartbeat(cmd) {
		if fn := t.heartbeatFn(); fn != nil {
			fn(raft.RPC{Command: cmd, RespChan: respCh})
			return t.await(ctx, respCh)
		}
	}
	return t.dispatchOn(ctx, cmd, nil, respCh)
}

// appendCmd converts an incoming AppendEntries (of any of the RPCs that carry one)
// and checks it: a malformed request or a term beyond the bound is refused.
func (t *Transport) appendCmd(ctx context.Context, rpc string, p *raftpb.AppendEntriesRequest) (*raft.AppendEntriesRequest, error) {
	cmd, err := appendReqFromProto(p)
	if err := t.checkMalformed(ctx, rpc, err); err != nil {
		return nil, err
	}
	if err := t.checkHeader(ctx, rpc, cmd.RPCHeader); err != nil {
		return nil, err
	}
	if err := t.checkTerm(ctx, rpc, cmd.Term); err != nil {
		return nil, err
	}
	return cmd, nil
}

// handleAppend serves the unary AppendEntries and Heartbeat RPCs (see serveAppend).
func (t *Transport) handleAppend(ctx context.Context, rpc string, p *raftpb.AppendEntriesRequest) (*raftpb.AppendEntriesResponse, error) {
	cmd, err := t.appendCmd(ctx, rpc, p)
	if err != nil {
		return nil, err
	}
	r, err := t.serveAppend(ctx, cmd, make(chan raft.RPCResponse, 1))
	if err != nil {
		return nil, toStatus(err)
	}
	return appendResult(r), nil
}

// AppendEntries serves a unary AppendEntries.
func (s *rpcServer) AppendEntries(ctx context.Context, p *raftpb.AppendEntriesRequest) (*raftpb.AppendEntriesResponse, error) {
	return s.t.handleAppend(ctx, "AppendEntries", p)
}

// Heartbeat serves a heartbeat sent as one unary RPC (see HeartbeatStream for the
// stream this transport's clients use).
func (s *rpcServer) Heartbeat(ctx context.Context, p *raftpb.AppendEntriesRequest) (*raftpb.AppendEntriesResponse, error) {
	return s.t.handleAppend(ctx, "Heartbeat", p)
}

// AppendEntriesPipeline serves one pipeline: it reads requests one by one, hands each
// to raft and answers it before reading the next, so answers keep the requests' order.
func (s *rpcServer) AppendEntriesPipeline(stream grpc.BidiStreamingServer[raftpb.AppendEntriesRequest, raftpb.AppendEntriesResponse]) error {
	ctx := stream.Context()
	for {
		p, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		cmd, err := s.t.appendCmd(ctx, "AppendEntriesPipeline", p)
		if err != nil {
			return err
		}
		r, err := s.t.dispatch(ctx, cmd, nil)
		if err != nil {
			return toStatus(err)
		}
		if err := stream.Send(appendResult(r)); err != nil {
			return err
		}
	}
}

// RequestVote serves a vote request.
func (s *rpcServer) RequestVote(ctx context.Context, p *raftpb.RequestVoteRequest) (*raftpb.RequestVoteResponse, error) {
	cmd, err := voteReqFromProto(p)
	if err := s.t.checkMalformed(ctx, "RequestVote", err); err != nil {
		return nil, err
	}
	if err := s.t.checkHeader(ctx, "RequestVote", cmd.RPCHeader); err != nil {
		return nil, err
	}
	if err := s.t.checkTerm(ctx, "RequestVote", cmd.Term); err != nil {
		return nil, err
	}
	r, err := s.t.dispatch(ctx, cmd, nil)
	if err != nil {
		return nil, toStatus(err)
	}
	if r.Error != nil {
		return nil, remoteStatus(r.Error)
	}
	resp, ok := r.Response.(*raft.RequestVoteResponse)
	if !ok || resp == nil {
		return nil, status.Errorf(codes.Internal, "unexpected response type %T", r.Response)
	}
	return voteRespToProto(resp), nil
}

// RequestPreVote serves a pre-vote request.
func (s *rpcServer) RequestPreVote(ctx context.Context, p *raftpb.RequestPreVoteRequest) (*raftpb.RequestPreVoteResponse, error) {
	cmd, err := preVoteReqFromProto(p)
	if err := s.t.checkMalformed(ctx, "RequestPreVote", err); err != nil {
		return nil, err
	}
	if err := s.t.checkHeader(ctx, "RequestPreVote", cmd.RPCHeader); err != nil {
		return nil, err
	}
	if err := s.t.checkTerm(ctx, "RequestPreVote", cmd.Term); err != nil {
		return nil, err
	}
	r, err := s.t.dispatch(ctx, cmd, nil)
	if err != nil {
		return nil, toStatus(err)
	}
	if r.Error != nil {
		return nil, remoteStatus(r.Error)
	}
	resp, ok := r.Response.(*raft.RequestPreVoteResponse)
	if !ok || resp == nil {
		return nil, status.Errorf(codes.Internal, "unexpected response type %T", r.Response)
	}
	return preVoteRespToProto(resp), nil
}

// TimeoutNow serves a leadership-transfer request.
func (s *rpcServer) TimeoutNow(ctx context.Context, p *raftpb.TimeoutNowRequest) (*raftpb.TimeoutNowResponse, error) {
	// TimeoutNow carries no term: raft raises its own by one.
	cmd, err := timeoutNowReqFromProto(p)
	if err := s.t.checkMalformed(ctx, "TimeoutNow", err); err != nil {
		return nil, err
	}
	if err := s.t.checkHeader(ctx, "TimeoutNow", cmd.RPCHeader); err != nil {
		return nil, err
	}
	s.t.noteTimeoutNow()
	r, err := s.t.dispatch(ctx, cmd, nil)
	if err != nil {
		return nil, toStatus(err)
	}
	if r.Error != nil {
		return nil, remoteStatus(r.Error)
	}
	resp, ok := r.Response.(*raft.TimeoutNowResponse)
	if !ok || resp == nil {
		return nil, status.Errorf(codes.Internal, "unexpected response type %T", r.Response)
	}
	return timeoutNowRespToProto(resp), nil
}

// InstallSnapshot serves a snapshot stream. The first message carries the request; the
// data that follows is fed to raft's RPC.Reader through a pipe, limited to the
// request's Size, while raft reads it.
func (s *rpcServer) InstallSnapshot(stream grpc.ClientStreamingServer[raftpb.InstallSnapshotChunk, raftpb.InstallSnapshotResponse]) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	preq := first.GetRequest()
	if preq == nil {
		return status.Error(codes.InvalidArgument, "first InstallSnapshot message must carry the request")
	}
	cmd, err := snapReqFromProto(preq)
	if err := s.t.checkMalformed(stream.Context(), "InstallSnapshot", err); err != nil {
		return err
	}
	if err := s.t.checkHeader(stream.Context(), "InstallSnapshot", cmd.RPCHeader); err != nil {
		return err
	}
	if err := s.t.checkTerm(stream.Context(), "InstallSnapshot", cmd.Term); err != nil {
		return err
	}
	pr, pw := io.Pipe()
	fed := make(chan struct{})
	go func() { // owned by this handler, which waits for it below
		defer close(fed)
		feedSnapshot(stream, pw)
	}()
	r, err := s.t.dispatch(stream.Context(), cmd, io.LimitReader(pr, cmd.Size))
	_ = pr.CloseWithError(errSnapshotAnswered)
	<-fed
	if err != nil {
		return toStatus(err)
	}
	if r.Error != nil {
		return remoteStatus(r.Error)
	}
	resp, ok := r.Response.(*raft.InstallSnapshotResponse)
	if !ok || resp == nil {
		return status.Errorf(codes.Internal, "unexpected response type %T", r.Response)
	}
	return stream.SendAndClose(snapRespToProto(resp))
}

// feedSnapshot copies the data messages of stream into pw until the client ends the
// stream (pw is closed: EOF for the reader), the stream fails (the reader gets the
// error) or the reader is closed.
func feedSnapshot(stream grpc.ClientStreamingServer[raftpb.InstallSnapshotChunk, raftpb.InstallSnapshotResponse], pw *io.PipeWriter) {
	for {
		c, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			_ = pw.Close()
			return
		}
		if err != nil {
			_ = pw.CloseWithError(err)
			return
		}
		if d := c.GetData(); len(d) > 0 {
			if _, err := pw.Write(d); err != nil {
				return
			}
		}
	}
}
