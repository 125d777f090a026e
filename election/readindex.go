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
	if n.readyTerm.Load() != term {
		return 0, ErrNotReadyForReads
	}
	cctx, cancel := context.WithTimeout(ctx, readIndexTimeout)
	defer cancel()
	n.readRounds.Add(1)
	if err := n.await(cctx, n.raft.VerifyLeader()); err != nil {
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
					n.readyTerm.Store(term)
				}
				return
			}
			if !n.sleep(n.cfg.HeartbeatTimeout / 5) {
				return
			}
		}
	})
}

// newReadBatcher builds the node's ReadIndex batcher (rounds run on the
// node's context).
func (n *Node) newReadBatcher() *batch.Batcher[uint64] {
	return batch.New(n.ctx, n.confirmRead)
}
