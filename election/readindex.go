package election

import (
	"context"
	"errors"
	"time"

	"github.com/hashicorp/raft"

	"github.com/heartbeat-sidecar/heartbeat/internal/batch"
)

// ErrNotReadyForReads: this node leads but has not yet applied everything
// that earlier leaders committed (its first barrier of the term is still in
// flight). A read index from it now could miss an acknowledged write; retry.
var ErrNotReadyForReads = errors.New("election: leader not ready for consistent reads yet (applying its predecessors' entries)")

// readIndexTimeout bounds one leadership confirmation.
const readIndexTimeout = 2 * time.Second

// ReadIndex returns a revision (Config.Revision) that every write this
// cluster acknowledged before the call is at or below; a node that has
// applied up to it answers a read consistently (raft thesis §6.4; etcd's
// ReadIndex). Leader only (elsewhere a *NotLeaderError naming the leader).
//
// The leader has applied everything its predecessors committed once the
// first barrier of its term has completed (ErrNotReadyForReads before);
// every write acknowledged through it was applied on it before the
// acknowledgment. So its own applied revision, read once it has confirmed
// through a quorum (raft's VerifyLeader) that no newer leader exists, is the
// read index. Concurrent callers share one confirmation round: one quorum
// round trip for any number of reads. Without Config.Revision it returns 0
// once leadership is confirmed (there is no revision to wait for).
func (n *Node) ReadIndex(ctx context.Context) (uint64, error) {
	if err := n.leaderCheck(); err != nil {
		return 0, err
	}
	return n.reads.Do(ctx)
}

// confirmRead is one round of ReadIndex: check readiness, confirm
// leadership through a quorum, then read the applied revision.
func (n *Node) confirmRead(ctx context.Context) (uint64, error) {
	if err := n.leaderCheck(); err != nil {
		return 0, err
	}
	term := n.raft.CurrentTerm()
	cctx, cancel := context.WithTimeout(ctx, readIndexTimeout)
	defer cancel()
	if err := n.awaitReady(cctx, term); err != nil {
		return 0, err
	}
	n.readRounds.Add(1)
	if err := n.await(cctx, n.raft.VerifyLeader()); err != nil {
		if errors.Is(err, ErrLeadershipLost) {
			// A read changes nothing: deposed means not the leader.
			return 0, n.notLeader()
		}
		return 0, err
	}
	if n.raft.CurrentTerm() != term {
		return 0, n.notLeader()
	}
	return n.applied(), nil
}

// prepareReads runs, once per term in which this node leads, the barrier
// after which it has applied every entry its predecessors committed, and
// then marks the term ready for read indexes.
func (n *Node) prepareReads(term uint64) {
	n.spawnFuture(func() {
		for n.ctx.Err() == nil && n.raft.State() == raft.Leader && n.raft.CurrentTerm() == term {
			if err := n.raft.Barrier(readIndexTimeout).Error(); err == nil {
				if n.raft.CurrentTerm() == term {
					n.setReadyTerm(term)
				}
				return
			}
			if !n.sleep(n.cfg.HeartbeatTimeout / 5) {
				return
			}
		}
	})
}

// setReadyTerm records that term's first barrier completed and wakes the
// reads waiting for it.
func (n *Node) setReadyTerm(term uint64) {
	n.readyMu.Lock()
	defer n.readyMu.Unlock()
	n.readyTerm.Store(term)
	if n.readyC != nil {
		close(n.readyC)
		n.readyC = nil
	}
}

// awaitReady waits until the first barrier of term has completed on this
// node (a leader elected a moment ago is still applying its predecessors'
// entries), while it still leads in term: ErrNotReadyForReads when ctx ends
// first, a *NotLeaderError when it stops leading.
func (n *Node) awaitReady(ctx context.Context, term uint64) error {
	for {
		n.readyMu.Lock()
		if n.readyTerm.Load() == term {
			n.readyMu.Unlock()
			return nil
		}
		if n.readyC == nil {
			n.readyC = make(chan struct{})
		}
		ch := n.readyC
		n.readyMu.Unlock()
		// A lost leadership never completes the barrier: re-check it on
		// raft's own schedule, at most every heartbeat timeout / 5.
		t := time.NewTimer(n.cfg.HeartbeatTimeout / 5)
		select {
		case <-ch:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ErrNotReadyForReads
		case <-n.ctx.Done():
			t.Stop()
			return ErrShutdown
		}
		t.Stop()
		if err := n.leaderCheck(); err != nil {
			return err
		}
		if n.raft.CurrentTerm() != term {
			return n.notLeader()
		}
	}
}

// newReadBatcher builds the node's ReadIndex batcher (rounds run on the
// node's context).
func (n *Node) newReadBatcher() *batch.Batcher[uint64] {
	return batch.New(n.ctx, n.confirmRead)
}
