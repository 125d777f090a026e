package lifecycle

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/internal/atomicfile"
)

// MarkerFile marks, in the data dir, a node that left the cluster (Leave),
// so that when it is started again it joins as a new member instead of
// campaigning forever with a configuration that no longer holds it.
const MarkerFile = "left.json"

// Phases recorded in MarkerFile.
const (
	// PhaseLeft: the removal from the raft configuration is committed; the
	// raft state in the data dir is stale and is discarded at the next start.
	PhaseLeft = "left"
	// PhaseRejoining: the node asks to join again at its next start, keeping
	// its raft state: after a Leave once the stale state is gone (a restart
	// in this phase keeps whatever state the join brought: the node may be a
	// member again), and at once after a removal while it ran (its state is
	// kept: it may have acknowledged entries, and raft repairs a returning
	// follower's log).
	PhaseRejoining = "rejoining"
)

// Marker is the content of MarkerFile.
type Marker struct {
	Phase     string    `json:"phase"`
	ClusterID string    `json:"cluster_id"`
	LeftAt    time.Time `json:"left_at"`
}

// MarkerPath is MarkerFile in dataDir.
func MarkerPath(dataDir string) string { return filepath.Join(dataDir, MarkerFile) }

// ReadMarker reads the marker; false when there is none.
func ReadMarker(dataDir string) (Marker, bool, error) {
	b, err := os.ReadFile(MarkerPath(dataDir))
	if errors.Is(err, os.ErrNotExist) {
		return Marker{}, false, nil
	}
	if err != nil {
		return Marker{}, false, fmt.Errorf("node: read %s: %w", MarkerFile, err)
	}
	var m Marker
	if err := json.Unmarshal(b, &m); err != nil {
		return Marker{}, false, fmt.Errorf("node: %s is corrupt (%v); remove it to start this node as it was", MarkerPath(dataDir), err)
	}
	return m, true, nil
}

// WriteMarker writes the marker atomically.
func WriteMarker(dataDir string, m Marker) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(MarkerPath(dataDir), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	return nil
}

// PrepareRejoin runs before the election opens the data dir. A node that
// left (marker phase "left") has its stale raft state discarded and moves
// to phase "rejoining"; in either phase the node must join, not bootstrap,
// and it reports so with the addresses to join through: join, or else the
// other members of initial. Without a marker it returns join unchanged and
// false. A node that left with nobody to join through is ErrInvalidConfig.
func PrepareRejoin(dataDir, id string, join []string, initial []election.Peer, log hclog.Logger) ([]string, bool, error) {
	m, found, err := ReadMarker(dataDir)
	if err != nil || !found {
		return join, false, err
	}
	if m.Phase == PhaseLeft {
		log.Info("this node left the cluster earlier: discarding its old raft state and joining again",
			"left_at", m.LeftAt)
		if err := election.ResetState(dataDir); err != nil {
			return join, false, fmt.Errorf("node: %w", err)
		}
		m.Phase = PhaseRejoining
		if err := WriteMarker(dataDir, m); err != nil {
			return join, false, err
		}
	}
	if len(join) == 0 {
		for _, p := range initial {
			if p.ID != id {
				join = append(join, p.Address)
			}
		}
	}
	if len(join) == 0 {
		return join, false, fmt.Errorf("%w: this node left its cluster and has no member to join again through (set Join or InitialCluster)", ErrInvalidConfig)
	}
	return join, true, nil
}

// rejoined removes the marker once the node is a member again.
func (l *Local) rejoined() {
	if err := os.Remove(MarkerPath(l.cfg.DataDir)); err != nil && !errors.Is(err, os.ErrNotExist) {
		l.cfg.Logger.Warn("could not remove the left marker (the next start joins again, harmlessly)", "error", err)
	}
}

// markLeftOnDisk records a committed departure, so a restart joins afresh.
func (l *Local) markLeftOnDisk() {
	m := Marker{Phase: PhaseLeft, ClusterID: l.cfg.ClusterID, LeftAt: time.Now().UTC()}
	if err := WriteMarker(l.cfg.DataDir, m); err != nil {
		l.cfg.Logger.Warn("could not record the departure on disk: a restart of this node will not rejoin by itself", "error", err)
	}
}
