package election

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Errors of the offline tools (Recover, RestoreBackup). Like the package's
// other sentinels, none is retryable: each is an operator's mistake that
// the message explains.
var (
	// ErrNoState: Recover was pointed at a data dir without raft state (no
	// log and no snapshot): there is nothing to recover, and recovering
	// "nothing" would quietly start an empty cluster.
	ErrNoState error = &sentinel{msg: "election: data dir has no raft state", retryable: false}

	// ErrDamagedDataDir: an offline tool found the data dir's raft.db
	// damaged (bolt panicked reading it); the message names the file. The
	// way back: wipe the data dir and rejoin the node (or restore a backup).
	ErrDamagedDataDir error = &sentinel{msg: "election: data dir is damaged", retryable: false}

	// ErrDataDirNotEmpty: RestoreBackup was pointed at a data dir that
	// already holds a node's files; it seeds new data dirs only.
	ErrDataDirNotEmpty error = &sentinel{msg: "election: data dir is not empty", retryable: false}
)

// RecoverConfig says which data dir Recover rewrites and with which
// configuration.
type RecoverConfig struct {
	// DataDir is the stopped node's data dir (raft.db, snapshots/,
	// cluster.json).
	DataDir string
	// ClusterID must be the cluster the data dir belongs to (cluster.json):
	// a guard against recovering another cluster's dir by mistake.
	ClusterID string
	// Voters is the new voter set: every survivor that will form the
	// recovered cluster, the same list (ids and peer addresses) on each of
	// them. It must name this data dir's node. Peer.Voter is ignored: every
	// server listed is a voter.
	Voters []Peer
	// Logger receives raft's messages while it replays the log; nil: none.
	Logger hclog.Logger
}

// RecoverResult describes what Recover wrote.
type RecoverResult struct {
	NodeID string // the node the data dir belongs to
	Index  uint64 // raft index of the recovery snapshot (the last entry replayed)
	Term   uint64 // raft term of that entry
}

// Recover rewrites the raft configuration of a stopped node's data dir to
// cfg.Voters, for a cluster that lost its quorum for good (hashicorp/raft's
// RecoverCluster, the way Consul's peers.json works). It replays the node's
// whole log into fsm (a fresh, empty FSM of the application), writes a
// snapshot of the result carrying the new configuration and compacts the
// log, so that the node starts with that configuration and forms a cluster
// with the other survivors given the same list.
//
// Hazards: entries the old cluster never committed but this node had
// logged are applied too; survivors may then disagree on the tail, and the
// one elected first wins it (its snapshot is installed on the others). Run
// it only on stopped nodes, on every survivor, with the same voter list.
//
// It refuses an empty or inconsistent voter list, a list without this
// node, a dir of another cluster (ErrClusterMismatch), a dir that a running
// node holds open (ErrDataDirLocked) and a dir without state (ErrNoState).
func Recover(cfg RecoverConfig, fsm raft.FSM) (res RecoverResult, err error) {
	// bolt panics on some damaged pages (slice bounds, asserts): one clear
	// error instead, naming the file.
	defer catchDamage(cfg.DataDir, &err)
	if fsm == nil {
		return RecoverResult{}, fmt.Errorf("%w: recover needs an FSM", ErrInvalidConfig)
	}
	conf, err := voterConfiguration(cfg.Voters)
	if err != nil {
		return RecoverResult{}, err
	}
	id, err := dirIdentity(cfg.DataDir, cfg.ClusterID)
	if err != nil {
		return RecoverResult{}, err
	}
	if !hasServer(conf, id.NodeID) {
		return RecoverResult{}, fmt.Errorf("%w: the voter list %s does not name this data dir's node %q",
			ErrInvalidConfig, describeServers(conf), id.NodeID)
	}
	st, err := openOffline(cfg.DataDir)
	if err != nil {
		return RecoverResult{}, err
	}
	defer func() { _ = st.close() }()

	has, err := raft.HasExistingState(st.bolt, st.bolt, st.snaps)
	if err != nil {
		return RecoverResult{}, fmt.Errorf("election: recover: check state: %w", err)
	}
	if !has {
		return RecoverResult{}, fmt.Errorf("%w: %s; nothing to recover", ErrNoState, cfg.DataDir)
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(id.NodeID)
	rc.Logger = cfg.Logger
	if rc.Logger == nil {
		rc.Logger = hclog.NewNullLogger()
	}
	// The snapshot store encodes the legacy peer list with the transport's
	// EncodePeer; an in-memory transport (no goroutines, no sockets) does
	// it the way ours does: the address as bytes.
	_, tr := raft.NewInmemTransport("")
	defer func() { _ = tr.Close() }()
	if err := raft.RecoverCluster(rc, fsm, st.bolt, st.bolt, st.snaps, tr, conf); err != nil {
		return RecoverResult{}, fmt.Errorf("election: recover %s: %w", cfg.DataDir, err)
	}
	res = RecoverResult{NodeID: id.NodeID}
	metas, err := st.snaps.List()
	if err != nil {
		return RecoverResult{}, fmt.Errorf("election: recover: list snapshots: %w", err)
	}
	if len(metas) > 0 {
		res.Index, res.Term = metas[0].Index, metas[0].Term
	}
	return res, nil
}

// catchDamage turns a panic of the storage code below it into an error
// wrapping ErrDamagedDataDir. Deferred by the offline tools only: their
// process exits afterwards, so nothing half-opened lives on.
func catchDamage(dataDir string, err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%w: %s: %v; wipe the data dir and rejoin the node, or restore a backup",
			ErrDamagedDataDir, filepath.Join(dataDir, boltFile), r)
	}
}

// voterConfiguration turns a voter list into a raft configuration: at
// least one voter, ids and addresses present and unique.
func voterConfiguration(voters []Peer) (raft.Configuration, error) {
	if len(voters) == 0 {
		return raft.Configuration{}, fmt.Errorf("%w: the voter set is empty", ErrInvalidConfig)
	}
	var conf raft.Configuration
	ids, addrs := map[string]bool{}, map[string]bool{}
	for _, p := range voters {
		switch {
		case p.ID == "" || p.Address == "":
			return raft.Configuration{}, fmt.Errorf("%w: voter %q at %q: id and address are required", ErrInvalidConfig, p.ID, p.Address)
		case ids[p.ID]:
			return raft.Configuration{}, fmt.Errorf("%w: voter %q is listed twice", ErrInvalidConfig, p.ID)
		case addrs[p.Address]:
			return raft.Configuration{}, fmt.Errorf("%w: address %q is listed twice", ErrInvalidConfig, p.Address)
		}
		ids[p.ID], addrs[p.Address] = true, true
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Address)})
	}
	return conf, nil
}

func hasServer(conf raft.Configuration, id string) bool {
	for _, s := range conf.Servers {
		if string(s.ID) == id {
			return true
		}
	}
	return false
}

func describeServers(conf raft.Configuration) string {
	parts := make([]string, 0, len(conf.Servers))
	for _, s := range conf.Servers {
		parts = append(parts, fmt.Sprintf("%s=%s", s.ID, s.Address))
	}
	return strings.Join(parts, ",")
}

// dirIdentity reads a data dir's identity file and checks that it belongs
// to clusterID.
func dirIdentity(dataDir, clusterID string) (identity, error) {
	if dataDir == "" || clusterID == "" {
		return identity{}, fmt.Errorf("%w: the data dir and the cluster id are required", ErrInvalidConfig)
	}
	id, found, err := readIdentity(filepath.Join(dataDir, identityFile))
	if err != nil {
		return identity{}, err
	}
	if !found {
		return identity{}, fmt.Errorf("%w: %s has no %s: not a node's data dir", ErrNoState, dataDir, identityFile)
	}
	if id.ClusterID != clusterID {
		return identity{}, fmt.Errorf("%w: %s belongs to cluster %q node %q, not cluster %q",
			ErrClusterMismatch, dataDir, id.ClusterID, id.NodeID, clusterID)
	}
	return id, nil
}

// openOffline opens an existing data dir's bolt file and snapshot store
// for a tool, never creating the bolt file; a running node's lock gives
// ErrDataDirLocked.
func openOffline(dataDir string) (*stores, error) {
	path := filepath.Join(dataDir, boltFile)
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s has no %s", ErrNoState, dataDir, boltFile)
		}
		return nil, fmt.Errorf("election: %w", err)
	}
	return openBoltAndSnaps(dataDir)
}

// openBoltAndSnaps opens (creating if missing) a data dir's bolt file and
// snapshot store with the node's lock timeout.
func openBoltAndSnaps(dataDir string) (*stores, error) {
	bolt, err := raftboltdb.New(raftboltdb.Options{
		Path:        filepath.Join(dataDir, boltFile),
		BoltOptions: &bbolt.Options{Timeout: boltOpenTimeout},
	})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("%w: %s is locked by a running node; stop it first", ErrDataDirLocked, dataDir)
		}
		return nil, fmt.Errorf("election: open %s: %w", filepath.Join(dataDir, boltFile), err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dataDir, DefaultSnapshotRetain, hclog.NewNullLogger())
	if err != nil {
		_ = bolt.Close()
		return nil, fmt.Errorf("election: open snapshot store: %w", err)
	}
	return &stores{bolt: bolt, snaps: snaps}, nil
}
