package transport

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/raft"

	"github.com/heartbeat-sidecar/heartbeat/proto/raftpb"
)

// snapshotTimeoutUnit is the snapshot size granted one RPCTimeout of transfer time.
const snapshotTimeoutUnit = 1 << 20

// AppendEntries sends one AppendEntries to target and fills resp. A heartbeat (see
// IsHeartbeat) goes on target's heartbeat stream on the control connection and must be
// answered within HeartbeatTimeout, so it never queues behind bulk traffic; anything
// else goes as a unary call on the bulk connection with a deadline of RPCTimeout. An
// acknowledged request (resp.Term == args.Term) is recorded in Acks, with the time
// taken before it was sent.
func (t *Transport) AppendEntries(_ raft.ServerID, target raft.ServerAddress,
	args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	pc, err := t.peer(target)
	if err != nil {
		return err
	}
	if IsHeartbeat(args) {
		return t.heartbeat(pc, target, args, resp)
	}
	ctx, cancel := t.callCtx(t.cfg.RPCTimeout)
	defer cancel()
	req := appendReqToProto(args)
	sentAt := time.Now()
	out, err := pc.bulk.AppendEntries(ctx, req)
	repliedAt := time.Now()
	if err != nil {
		return t.callErr("AppendEntries", target, err)
	}
	return t.finishAppend("AppendEntries", target, args, resp, out, sentAt, repliedAt, nil)
}

// RequestVote sends a RequestVote to target on the control connection, with a deadline
// of RPCTimeout, and fills resp.
func (t *Transport) RequestVote(_ raft.ServerID, target raft.ServerAddress,
	args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	pc, err := t.peer(target)
	if err != nil {
		return err
	}
	ctx, cancel := t.callCtx(t.cfg.RPCTimeout)
	defer cancel()
	out, err := pc.control.RequestVote(ctx, voteReqToProto(args))
	if err != nil {
		return t.callErr("RequestVote", target, err)
	}
	voteRespFromProto(out, resp)
	return nil
}

// RequestPreVote sends a RequestPreVote to target on the control connection, with a
// deadline of RPCTimeout, and fills resp.
func (t *Transport) RequestPreVote(_ raft.ServerID, target raft.ServerAddress,
	args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	pc, err := t.peer(target)
	if err != nil {
		return err
	}
	ctx, cancel := t.callCtx(t.cfg.RPCTimeout)
	defer cancel()
	out, err := pc.control.RequestPreVote(ctx, preVoteReqToProto(args))
	if err != nil {
		return t.callErr("RequestPreVote", target, err)
	}
	preVoteRespFromProto(out, resp)
	return nil
}

// TimeoutNow sends a TimeoutNow (leadership transfer) to target on the control
// connection, with a deadline of RPCTimeout, and fills resp.
func (t *Transport) TimeoutNow(_ raft.ServerID, target raft.ServerAddress,
	args *raft.TimeoutNowRequest, resp *raft.TimeoutNowResponse) error {
	pc, err := t.peer(target)
	if err != nil {
		return err
	}
	ctx, cancel := t.callCtx(t.cfg.RPCTimeout)
	defer cancel()
	out, err := pc.control.TimeoutNow(ctx, timeoutNowReqToProto(args))
	if err != nil {
		return t.callErr("TimeoutNow", target, err)
	}
	timeoutNowRespFromProto(out, resp)
	return nil
}

// InstallSnapshot streams args and then everything data yields, in SnapshotChunkSize
// pieces, to target on the bulk connection, and fills resp. The deadline is RPCTimeout
// per MiB of args.Size (at least one RPCTimeout); data is read until EOF.
func (t *Transport) InstallSnapshot(_ raft.ServerID, target raft.ServerAddress,
	args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	pc, err := t.peer(target)
	if err != nil {
		return err
	}
	units := max(1, (args.Size+snapshotTimeoutUnit-1)/snapshotTimeoutUnit)
	ctx, cancel := t.callCtx(t.cfg.RPCTimeout * time.Duration(units))
	defer cancel()
	stream, err := pc.bulk.InstallSnapshot(ctx)
	if err != nil {
		return t.callErr("InstallSnapshot", target, err)
	}
	// finish ends the stream and returns the server's answer or its error; after a
	// failed Send it is the way to learn the real status.
	finish := func() error {
		out, err := stream.CloseAndRecv()
		if err != nil {
			return t.callErr("InstallSnapshot", target, err)
		}
		snapRespFromProto(out, resp)
		return nil
	}
	first := &raftpb.InstallSnapshotChunk{Kind: &raftpb.InstallSnapshotChunk_Request{Request: snapReqToProto(args)}}
	if err := stream.Send(first); err != nil {
		return finish()
	}
	var sent int64
	defer func() { t.metrics.snapshotBytesSent.Add(float64(sent)) }()
	for {
		// A fresh buffer per chunk: gRPC may hold a sent message after Send returns.
		buf := make([]byte, t.cfg.SnapshotChunkSize)
		n, rerr := io.ReadFull(data, buf)
		if n > 0 {
			chunk := &raftpb.InstallSnapshotChunk{Kind: &raftpb.InstallSnapshotChunk_Data{Data: buf[:n]}}
			if err := stream.Send(chunk); err != nil {
				if ferr := finish(); ferr != nil {
					return ferr
				}
				return t.callErr("InstallSnapshot", target, err)
			}
			sent += int64(n)
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			t.metrics.rpcErrors.WithLabelValues("InstallSnapshot", string(target)).Inc()
			return fmt.Errorf("transport: InstallSnapshot to %s: read snapshot: %w", target, rerr)
		}
	}
	return finish()
}
