package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/internal/atomicfile"
	"github.com/heartbeat-sidecar/heartbeat/proto/raftpb"
)

// leftFile marks, in the data dir, a node that left the cluster (Leave), so
// that when it is started again it joins as a new member instead of
// campaigning forever with a configuration that no longer holds it.
const leftFile = "left.json"

// Phases recorded in leftFile.
const (
	// phaseLeft: the removal from the raft configuration is committed; the
	// raft state in the data dir is stale and is discarded at the next start.
	phaseLeft = "left"
	// phaseRejoining: the node asks to join again at its next start, keeping
	// its raft state: after a Leave once the stale state is gone (a restart
	// in this phase keeps whatever state the join brought: the node may be a
	// member again), and at once after a removal while it ran (its state is
	// kept: it may have acknowledged entries, and raft repairs a returning
	// follower's log).
	phaseRejoining = "rejoining"
)

// leftMarker is the content of leftFile.
type leftMarker struct {
	Phase     string    `json:"phase"`
	ClusterID string    `json:"cluster_id"`
	LeftAt    time.Time `json:"left_at"`
}

func leftPath(dataDir string) string { return filepath.Join(dataDir, leftFile) }

func readLeftMarker(dataDir string) (leftMarker, bool, error) {
	b, err := os.ReadFile(leftPath(dataDir))
	if errors.Is(err, os.ErrNotExist) {
		return leftMarker{}, false, nil
	}
	if err != nil {
		return leftMarker{}, false, fmt.Errorf("node: read %s: %w", leftFile, err)
	}
	var m leftMarker
	if err := json.Unmarshal(b, &m); err != nil {
		return leftMarker{}, false, fmt.Errorf("node: %s is corrupt (%v); remove it to start this node as it was", leftPath(dataDir), err)
	}
	return m, true, nil
}

// writeLeftMarker writes the marker atomically.
func writeLeftMarker(dataDir string, m leftMarker) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(leftPath(dataDir), append(b, '\n'), 0o640); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	return nil
}

// prepareRejoin runs before the election opens the data dir. A node that
// left (marker phase "left") has its stale raft state discarded and moves
// to phase "rejoining"; in either phase the node must join, not bootstrap,
// and it reports so. The join addresses are cfg.Join, or else the other
// members of InitialCluster.
func (n *Node) prepareRejoin() (rejoin bool, err error) {
	m, found, err := readLeftMarker(n.cfg.DataDir)
	if err != nil || !found {
		return false, err
	}
	if m.Phase == phaseLeft {
		n.log.Info("this node left the cluster earlier: discarding its old raft state and joining again",
			"left_at", m.LeftAt)
		if err := election.ResetState(n.cfg.DataDir); err != nil {
			return false, fmt.Errorf("node: %w", err)
		}
		m.Phase = phaseRejoining
		if err := writeLeftMarker(n.cfg.DataDir, m); err != nil {
			return false, err
		}
	}
	if len(n.cfg.Join) == 0 {
		for _, p := range n.cfg.InitialCluster {
			if p.ID != n.cfg.ID {
				n.cfg.Join = append(n.cfg.Join, p.Address)
			}
		}
	}
	if len(n.cfg.Join) == 0 {
		return false, fmt.Errorf("%w: this node left its cluster and has no member to join again through (set Join or InitialCluster)", ErrInvalidConfig)
	}
	return true, nil
}

// rejoined removes the marker once the node is a member again.
func (n *Node) rejoined() {
	if err := os.Remove(leftPath(n.cfg.DataDir)); err != nil && !errors.Is(err, os.ErrNotExist) {
		n.log.Warn("could not remove the left marker (the next start joins again, harmlessly)", "error", err)
	}
}

// markLeftOnDisk records a committed departure, so a restart joins afresh.
func (n *Node) markLeftOnDisk() {
	m := leftMarker{Phase: phaseLeft, ClusterID: n.cfg.ClusterID, LeftAt: time.Now().UTC()}
	if err := writeLeftMarker(n.cfg.DataDir, m); err != nil {
		n.log.Warn("could not record the departure on disk: a restart of this node will not rejoin by itself", "error", err)
	}
}

// onRemoved handles the leader's notice that this node was removed from the
// configuration while it ran: it records a rejoin for its next start and
// stops the node (Run returns ErrRemoved). A node that is leaving on its own
// ignores it (Leave goes on and records its departure itself).
func (n *Node) onRemoved(notice *raftpb.RemovedRequest) error {
	if n.leaving.Load() {
		return nil
	}
	n.log.Warn("the leader removed this node from the cluster; stopping (start it again to rejoin)",
		"leader", notice.GetLeaderId(), "index", notice.GetIndex())
	m := leftMarker{Phase: phaseRejoining, ClusterID: n.cfg.ClusterID, LeftAt: time.Now().UTC()}
	if err := writeLeftMarker(n.cfg.DataDir, m); err != nil {
		n.log.Warn("could not record the removal on disk", "error", err)
	}
	n.fail(fmt.Errorf("%w by %s at index %d; start it again to rejoin", ErrRemoved, notice.GetLeaderId(), notice.GetIndex()))
	return nil
}
