package faultnet

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/heartbeat-sidecar/heartbeat/rpc/transport"
)

// maxInflight bounds the appends a wrapped pipeline keeps in flight.
const maxInflight = 128

// pipeline wraps a real pipeline: appends through a cut link fail (an error future
// after RPCTimeout) without being sent; others go through the real pipeline and their
// answers pass the reverse link's faults. Futures complete in send order.
type pipeline struct {
	w        *Transport
	target   raft.ServerAddress
	inner    raft.AppendPipeline
	sendMu   sync.Mutex
	inflight chan *future
	consumer chan raft.AppendFuture

	ctx       context.Context // canceled by Close
	cancel    context.CancelFunc
	closeOnce sync.Once
	closeCh   chan struct{}
	done      chan struct{}
}

// AppendEntriesPipeline opens a real pipeline to target and wraps it. Opening is not
// filtered (a cut shows on the appends).
func (w *Transport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	inner, err := w.inner.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &pipeline{
		ctx:      ctx,
		cancel:   cancel,
		w:        w,
		target:   target,
		inner:    inner,
		inflight: make(chan *future, maxInflight),
		consumer: make(chan raft.AppendFuture, maxInflight),
		closeCh:  make(chan struct{}),
		done:     make(chan struct{}),
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		cancel()
		_ = inner.Close()
		return nil, transport.ErrTransportShutdown
	}
	w.pipelines[p] = struct{}{}
	w.mu.Unlock()
	go func() { // owned by the pipeline: Close waits for it
		defer close(p.done)
		p.deliver()
	}()
	return p, nil
}

// AppendEntries sends args unless the link is cut (or the message dropped), after the
// link's delay, and returns its future at once.
func (p *pipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	f := &future{start: time.Now(), req: args, resp: resp, done: make(chan struct{})}
	lost, delay := p.w.net.fate(p.w.self, p.target)
	if lost {
		f.lost = true
	} else {
		if delay > 0 && !p.sleep(delay) {
			return nil, transport.ErrPipelineClosed
		}
		inner, err := p.inner.AppendEntries(args, resp)
		if err != nil {
			return nil, err
		}
		f.inner = inner
	}
	select {
	case p.inflight <- f:
		return f, nil
	case <-p.closeCh:
		return nil, transport.ErrPipelineClosed
	}
}

func (p *pipeline) sleep(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-p.closeCh:
		return false
	}
}

// Consumer returns completed futures in send order.
func (p *pipeline) Consumer() <-chan raft.AppendFuture { return p.consumer }

// Close closes the real pipeline, fails what is in flight and waits for the delivery
// goroutine.
func (p *pipeline) Close() error {
	p.closeOnce.Do(func() {
		close(p.closeCh)
		p.cancel()
		_ = p.inner.Close()
		<-p.done
		p.sendMu.Lock()
		p.failPending()
		p.sendMu.Unlock()
		p.w.mu.Lock()
		delete(p.w.pipelines, p)
		p.w.mu.Unlock()
	})
	return nil
}

func (p *pipeline) failPending() {
	for {
		select {
		case f := <-p.inflight:
			f.complete(transport.ErrPipelineClosed)
		default:
			return
		}
	}
}

// deliver completes futures in order: a lost one after RPCTimeout, a sent one when the
// real pipeline's matching future completes and the reply has passed the reverse link.
func (p *pipeline) deliver() {
	for {
		var f *future
		select {
		case f = <-p.inflight:
		case <-p.closeCh:
			return
		}
		err := p.await(p.ctx, f)
		if err == nil {
			p.w.recordAck(p.target, f.req, f.resp, f.start)
		}
		f.complete(err)
		select {
		case p.consumer <- f:
		case <-p.closeCh:
			return
		}
	}
}

func (p *pipeline) await(ctx context.Context, f *future) error {
	deadline := f.start.Add(p.w.cfg.RPCTimeout)
	lostErr := func(cause error) error {
		if !p.w.sleepUntil(ctx, deadline) {
			return transport.ErrPipelineClosed
		}
		return fmt.Errorf("faultnet: pipelined append %s -> %s: %w", p.w.self, p.target, cause)
	}
	if f.lost {
		return lostErr(ErrLinkDown)
	}
	select {
	case done := <-p.inner.Consumer():
		if err := done.Error(); err != nil {
			return err
		}
	case <-p.closeCh:
		return transport.ErrPipelineClosed
	}
	lost, delay := p.w.net.fate(p.target, p.w.self)
	switch {
	case lost:
		return lostErr(ErrReplyLost)
	case delay > 0:
		if !p.w.sleepUntil(ctx, time.Now().Add(delay)) {
			return transport.ErrPipelineClosed
		}
	}
	return nil
}

// future is a wrapped pipeline append.
type future struct {
	start time.Time
	req   *raft.AppendEntriesRequest
	resp  *raft.AppendEntriesResponse
	lost  bool
	inner raft.AppendFuture
	err   error
	done  chan struct{}
}

func (f *future) complete(err error) {
	f.err = err
	close(f.done)
}

// Error blocks until the append completes.
func (f *future) Error() error {
	<-f.done
	return f.err
}

// Start returns when the append was made.
func (f *future) Start() time.Time { return f.start }

// Request returns the append's request.
func (f *future) Request() *raft.AppendEntriesRequest { return f.req }

// Response returns the append's response; valid once Error returned nil.
func (f *future) Response() *raft.AppendEntriesResponse { return f.resp }
