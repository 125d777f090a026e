package testcluster

import (
	"context"
	"fmt"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/heartbeat-sidecar/heartbeat/internal/faultnet"
	"github.com/heartbeat-sidecar/heartbeat/rpc/transport"
)

// Hook is the transport an ElectionCluster's node is given: its faultnet
// transport, except that a test can break the node's running Hold as a
// connection reset would (the peer stays alive) and make its redials
// (Reachable) fail. Faults of the network itself are the faultnet
// network's (ElectionCluster.Net).
type Hook struct {
	*faultnet.Transport

	mu      sync.Mutex
	breakCh chan struct{} // closed to break the running Hold; nil: none
	refuse  bool          // Reachable fails
}

// Hold runs the real Hold; BreakHold ends it with transport.ErrPeerClosed.
func (h *Hook) Hold(ctx context.Context, target raft.ServerAddress) error {
	h.mu.Lock()
	brk := make(chan struct{})
	h.breakCh = brk
	h.mu.Unlock()
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- h.Transport.Hold(hctx, target) }()
	select {
	case err := <-done:
		return err
	case <-brk:
		cancel()
		held := <-done // the real Hold ends with hctx
		return fmt.Errorf("test: connection reset (held stream: %v): %w", held, transport.ErrPeerClosed)
	}
}

// BreakHold breaks the running Hold, if any; it reports whether one ran.
func (h *Hook) BreakHold() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.breakCh == nil {
		return false
	}
	close(h.breakCh)
	h.breakCh = nil
	return true
}

// SetRefuse makes Reachable fail (true) or pass through (false).
func (h *Hook) SetRefuse(v bool) {
	h.mu.Lock()
	h.refuse = v
	h.mu.Unlock()
}

// Reachable fails while SetRefuse(true) holds, and is the real one
// otherwise.
func (h *Hook) Reachable(ctx context.Context, target raft.ServerAddress) error {
	h.mu.Lock()
	refuse := h.refuse
	h.mu.Unlock()
	if refuse {
		return fmt.Errorf("test: redial to %s refused", target)
	}
	return h.Transport.Reachable(ctx, target)
}
