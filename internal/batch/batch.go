// Package batch groups concurrent callers behind one round of work: the
// consistent reads of a node share one leadership confirmation (on the
// leader) or one read-index request to the leader (on a follower) instead of
// paying one each.
//
// A caller joins the next round that STARTS after it arrived, never one
// already running: a round's answer is only good for callers that were
// waiting before it began (a read index fetched before a read began may miss
// a write that completed before the read began).
package batch

import (
	"context"
	"sync"
)

// Batcher runs do in rounds for the callers of Do. Safe for concurrent use;
// the zero value is not usable: create it with New.
type Batcher[T any] struct {
	do      func(ctx context.Context) (T, error)
	mu      sync.Mutex
	running bool
	waiting []chan result[T]
	base    context.Context
}

type result[T any] struct {
	v   T
	err error
}

// New returns a batcher whose rounds call do with base (a round is shared,
// so it is not bound to any one caller's context; base should end when the
// owner stops).
func New[T any](base context.Context, do func(ctx context.Context) (T, error)) *Batcher[T] {
	return &Batcher[T]{do: do, base: base}
}

// Do waits for the result of the next round that starts after the call, or
// for ctx to end.
func (b *Batcher[T]) Do(ctx context.Context) (T, error) {
	ch := make(chan result[T], 1)
	b.mu.Lock()
	b.waiting = append(b.waiting, ch)
	if !b.running {
		b.running = true
		go b.rounds() // ends when no caller is left waiting
	}
	b.mu.Unlock()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// rounds runs rounds while callers wait, each for the callers that arrived
// before it started.
func (b *Batcher[T]) rounds() {
	for {
		b.mu.Lock()
		batch := b.waiting
		b.waiting = nil
		if len(batch) == 0 {
			b.running = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		v, err := b.do(b.base)
		for _, ch := range batch {
			ch <- result[T]{v, err}
		}
	}
}
