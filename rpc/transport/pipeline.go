package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"

	"github.com/heartbeat-sidecar/heartbeat/proto/raftpb"
)

// maxInflight bounds the pipelined appends awaiting an answer; AppendEntries blocks
// beyond it (back-pressure). raft itself keeps at most 128 in flight.
const maxInflight = 128

var _ raft.AppendPipeline = (*pipeline)(nil)

// pipeline is one AppendEntries pipeline: a bidi stream on the bulk connection, and a
// receiver goroutine that matches answers to requests in order.
type pipeline struct {
	t      *Transport
	target raft.ServerAddress
	stream grpc.BidiStreamingClient[raftpb.AppendEntriesRequest, raftpb.AppendEntriesResponse]
	cancel context.CancelFunc

	sendMu   sync.Mutex // serializes Send and the matching enqueue
	inflight chan *appendFuture
	doneCh   chan raft.AppendFuture

	closeOnce sync.Once
	closeCh   chan struct{}
	recvDone  chan struct{}
}

// AppendEntriesPipeline opens a pipeline to target on the bulk connection. Its
// AppendEntries sends at once and returns a future; completed futures arrive in order on
// its Consumer(). It must be closed; Close of the transport closes it too.
func (t *Transport) AppendEntriesPipeline(_ raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	pc, err := t.peer(target)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(t.closeCtx)
	stream, err := pc.bulk.AppendEntriesPipeline(ctx)
	if err != nil {
		cancel()
		return nil, t.callErr("AppendEntriesPipeline", target, err)
	}
	p := &pipeline{
		t:        t,
		target:   target,
		stream:   stream,
		cancel:   cancel,
		inflight: make(chan *appendFuture, maxInflight),
		doneCh:   make(chan raft.AppendFuture, maxInflight),
		closeCh:  make(chan struct{}),
		recvDone: make(chan struct{}),
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		cancel()
		return nil, ErrTransportShutdown
	}
	t.pipelines[p] = struct{}{}
	t.wg.Add(1)
	t.mu.Unlock()
	go func() {
		defer t.wg.Done()
		defer close(p.recvDone)
		p.receive()
	}()
	return p, nil
}

// AppendEntries sends args down the pipeline and returns its future at once. It blocks
// only while maxInflight appends await answers. resp is filled when the future
// completes without error.
func (p *pipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	f := &appendFuture{req: args, resp: resp, done: make(chan struct{})}
	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	select {
	case <-p.closeCh:
		return nil, ErrPipelineClosed
	default:
	}
	f.start = time.Now()
	if err := p.stream.Send(appendReqToProto(args)); err != nil && !errors.Is(err, io.EOF) {
		return nil, p.t.callErr("AppendEntriesPipeline", p.target, err)
	}
	// io.EOF: the stream has ended; the receiver learns its status from Recv and fails
	// this future (and every later one) with it.
	select {
	case p.inflight <- f:
		return f, nil
	case <-p.closeCh:
		return nil, ErrPipelineClosed
	}
}

// Consumer returns the channel of completed futures, in the order they were sent.
// The receiver blocks when nobody reads it (maxInflight buffered).
func (p *pipeline) Consumer() <-chan raft.AppendFuture { return p.doneCh }

// Close ends the stream, fails the appends still in flight and waits for the receiver.
func (p *pipeline) Close() error {
	p.closeOnce.Do(func() {
		close(p.closeCh)
		p.cancel()
		<-p.recvDone
		// An append racing with Close may have queued its future after the receiver
		// left; no append is running while sendMu is held.
		p.sendMu.Lock()
		p.drain(ErrPipelineClosed)
		p.sendMu.Unlock()
		p.t.mu.Lock()
		delete(p.t.pipelines, p)
		p.t.mu.Unlock()
	})
	return nil
}

// receive matches answers to futures in order. Each answer must arrive within
// RPCTimeout of the receiver starting to wait for it, or the stream is canceled. After
// an error, every later future fails with it.
func (p *pipeline) receive() {
	var failed error
	for {
		var f *appendFuture
		select {
		case f = <-p.inflight:
		case <-p.closeCh:
			p.drain(ErrPipelineClosed)
			return
		}
		if failed == nil {
			failed = p.receiveOne(f)
		} else {
			f.complete(failed)
		}
		select {
		case p.doneCh <- f:
		case <-p.closeCh:
			p.drain(ErrPipelineClosed)
			return
		}
	}
}

// receiveOne waits for the answer to f and completes f; it returns the stream's error
// if it failed.
func (p *pipeline) receiveOne(f *appendFuture) error {
	watchdog := time.AfterFunc(p.t.cfg.RPCTimeout, p.cancel)
	out, err := p.stream.Recv()
	watchdog.Stop()
	if err != nil {
		select {
		case <-p.closeCh:
			err = ErrPipelineClosed
		default:
			err = p.t.callErr("AppendEntriesPipeline", p.target, err)
		}
		f.complete(err)
		return err
	}
	if out.Error != "" {
		p.t.metrics.rpcErrors.WithLabelValues("AppendEntriesPipeline", string(p.target)).Inc()
		f.complete(fmt.Errorf("transport: AppendEntriesPipeline to %s: %w: %s", p.target, ErrRemote, out.Error))
		return nil
	}
	repliedAt := time.Now()
	appendRespFromProto(out, f.resp)
	if f.resp.Term == f.req.Term {
		p.t.acks.record(p.target, f.start, repliedAt, f.req.Term, f.resp.LastLog)
	}
	f.complete(nil)
	return nil
}

// drain fails the futures left in flight after Close.
func (p *pipeline) drain(err error) {
	for {
		select {
		case f := <-p.inflight:
			f.complete(err)
		default:
			return
		}
	}
}

var _ raft.AppendFuture = (*appendFuture)(nil)

// appendFuture is the future of one pipelined append.
type appendFuture struct {
	start time.Time
	req   *raft.AppendEntriesRequest
	resp  *raft.AppendEntriesResponse
	err   error
	done  chan struct{}
}

func (f *appendFuture) complete(err error) {
	f.err = err
	close(f.done)
}

// Error blocks until the append completes and returns its error.
func (f *appendFuture) Error() error {
	<-f.done
	return f.err
}

// Start returns when the append was sent.
func (f *appendFuture) Start() time.Time { return f.start }

// Request returns the append's request.
func (f *appendFuture) Request() *raft.AppendEntriesRequest { return f.req }

// Response returns the append's response; valid once Error returned nil.
func (f *appendFuture) Response() *raft.AppendEntriesResponse { return f.resp }
