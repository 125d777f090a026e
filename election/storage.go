package election

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/heartbeat-sidecar/heartbeat/internal/atomicfile"
)

// Files in the data dir.
const (
	identityFile = "cluster.json" // {"cluster_id":..., "node_id":...}
	boltFile     = "raft.db"      // raft log + stable store
	snapshotsDir = "snapshots"    // raft's file snapshot store
	// boltOpenTimeout bounds the wait for bolt's file lock: a second node on
	// the same data dir fails with ErrDataDirLocked instead of hanging.
	boltOpenTimeout = time.Second
)

// identity is what cluster.json records: which cluster and node own the dir.
type identity struct {
	ClusterID string `json:"cluster_id"`
	NodeID    string `json:"node_id"`
}

// stores is the node's storage in DataDir.
type stores struct {
	bolt    *raftboltdb.BoltStore
	snaps   *raft.FileSnapshotStore
	snapDir string // DataDir/snapshots
}

func (s *stores) close() error {
	if s == nil || s.bolt == nil {
		return nil
	}
	return s.bolt.Close()
}

// openStores checks the identity file (writing it on first use) and opens
// the bolt store and the file snapshot store.
func openStores(cfg Config, logger hclog.Logger) (*stores, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("election: create data dir: %w", err)
	}
	// The data dir and its files are private whatever the umask or an
	// older version made them (0750 and 0640 before): raft.db, cluster.json,
	// the left marker and the snapshots hold the whole cluster state.
	if err := privatize(cfg.DataDir); err != nil {
		return nil, err
	}
	path := filepath.Join(cfg.DataDir, identityFile)
	want := identity{ClusterID: cfg.ClusterID, NodeID: cfg.ID}
	have, found, err := readIdentity(path)
	if err != nil {
		return nil, err
	}
	if found && have != want {
		return nil, fmt.Errorf("%w: %s was written by cluster %q node %q, this node is cluster %q node %q; use another data dir or the right --cluster/--id",
			ErrClusterMismatch, cfg.DataDir, have.ClusterID, have.NodeID, want.ClusterID, want.NodeID)
	}

	bolt, err := openBolt(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, cfg.SnapshotRetain, logger.Named("snapshot"))
	if err == nil {
		err = privatizeSnapshots(filepath.Join(cfg.DataDir, snapshotsDir))
	}
	if err != nil {
		_ = bolt.Close()
		return nil, fmt.Errorf("election: open snapshot store: %w", err)
	}
	if err := verifySnapshots(cfg.DataDir, snaps); err != nil {
		_ = bolt.Close()
		return nil, err
	}
	if !found {
		if err := writeIdentity(path, want); err != nil {
			_ = bolt.Close()
			return nil, err
		}
	}
	return &stores{bolt: bolt, snaps: snaps, snapDir: filepath.Join(cfg.DataDir, snapshotsDir)}, nil
}

// privatizeSnapshots makes the snapshot directory and every snapshot in it
// private (0700 directories, 0600 files): raft's file snapshot store creates
// them 0755 and with the umask's file mode; new snapshots are made private
// as they are created (checkedSnapshots).
func privatizeSnapshots(dir string) error {
	if err := privatize(dir); err != nil {
		return err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("election: read %s: %w", dir, err)
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := privatize(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

func readIdentity(path string) (identity, bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return identity{}, false, nil
	}
	if err != nil {
		return identity{}, false, fmt.Errorf("election: read %s: %w", path, err)
	}
	var id identity
	if err := json.Unmarshal(b, &id); err != nil {
		return identity{}, false, corruptError(filepath.Dir(path), path, fmt.Sprintf("not the identity JSON: %v", err))
	}
	return id, true, nil
}

// writeIdentity writes the file atomically.
func writeIdentity(path string, id identity) error {
	b, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("election: write identity: %w", err)
	}
	return nil
}

// bootstrap writes the initial configuration when the stores are empty and
// cfg.Bootstrap lists this node. Every listed node doing so with the same
// list is safe: they all start from the same configuration entry at index 1.
// It reports whether it bootstrapped.
func bootstrap(cfg Config, rc *raft.Config, s *stores, tr raft.Transport) (bool, error) {
	has, err := raft.HasExistingState(s.bolt, s.bolt, s.snaps)
	if err != nil {
		return false, fmt.Errorf("election: check existing state: %w", err)
	}
	if has {
		return false, nil
	}
	var servers []raft.Server
	inList := false
	for _, p := range cfg.Bootstrap {
		suffrage := raft.Nonvoter
		if p.Voter {
			suffrage = raft.Voter
		}
		servers = append(servers, raft.Server{Suffrage: suffrage, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Address)})
		if p.ID == cfg.ID {
			inList = true
			if raft.ServerAddress(p.Address) != tr.LocalAddr() {
				return false, fmt.Errorf("%w: Bootstrap lists %s at %s but the transport's address is %s",
					ErrInvalidConfig, p.ID, p.Address, tr.LocalAddr())
			}
		}
	}
	if !inList {
		return false, nil
	}
	if err := raft.BootstrapCluster(rc, s.bolt, s.bolt, s.snaps, tr, raft.Configuration{Servers: servers}); err != nil {
		return false, fmt.Errorf("election: bootstrap: %w", err)
	}
	return true, nil
}

// ResetState deletes the raft log, the stable store and the snapshots under
// dataDir and keeps the identity file, so the node starts again with no
// raft state, as a new node would. Only for a node whose removal from the
// configuration is committed (it left): a member's log is part of the
// cluster's durability, and deleting it could lose committed entries.
func ResetState(dataDir string) error {
	for _, p := range []string{filepath.Join(dataDir, boltFile), filepath.Join(dataDir, snapshotsDir)} {
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("election: reset state: %w", err)
		}
	}
	return atomicfile.SyncDir(dataDir)
}
