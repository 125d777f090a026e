package election

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// corruptError says which file of dataDir is corrupt, what is wrong with
// it, and how to recover; it wraps ErrCorrupt.
func corruptError(dataDir, file, what string) error {
	return fmt.Errorf("%w: %s: %s; to recover, move the data dir %s away (keep it for inspection) and start the node again with the same flags: with an empty data dir it rejoins and the leader sends it the state (the other members must still have a quorum; README, \"Storage faults\")",
		ErrCorrupt, file, what, dataDir)
}

// openBolt opens raft.db and reads everything raft will read from it: the
// freelist and both buckets (bbolt's open), every log entry from the first
// index to the last (each decoded), the current term and the last vote. A
// corrupt file makes bbolt panic (an index out of range, an invalid page
// type or freelist, a fault on a page past the end of a truncated file);
// each is turned into an error wrapping ErrCorrupt that names the file, and
// so are entries that are missing or do not decode. Before bbolt maps the
// file, checkBoltFile checks its page structure (boltcheck.go). The cost is
// one read of the log at start: 18,432 entries of 1 KiB (the default
// TrailingLogs + SnapshotThreshold) took 0.17 s for the structure and
// 0.79 s in all on a loaded 2-core machine (TestOpenBoltCost).
func openBolt(dataDir string) (store *raftboltdb.BoltStore, err error) {
	path := filepath.Join(dataDir, boltFile)
	// A fault reading the mapped file (SIGBUS past the end of a truncated
	// file, SIGSEGV) panics instead of killing the process, on this
	// goroutine, for the duration of the open.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			if store != nil {
				closeQuietly(store)
			}
			store, err = nil, corruptError(dataDir, path, fmt.Sprintf("reading it failed: %v", p))
		}
	}()
	if st, serr := os.Stat(path); serr == nil && st.Size() > 0 {
		if err := checkBoltFile(path); errors.Is(err, errLocked) {
			return nil, fmt.Errorf("%w: %s is locked by another process or node with the same data dir", ErrDataDirLocked, dataDir)
		} else if err != nil {
			return nil, corruptError(dataDir, path, err.Error())
		}
	}
	store, err = raftboltdb.New(raftboltdb.Options{
		Path:        path,
		BoltOptions: &bbolt.Options{Timeout: boltOpenTimeout},
	})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("%w: %s is locked by another process or node with the same data dir", ErrDataDirLocked, dataDir)
		}
		if errors.Is(err, bolterrors.ErrInvalid) || errors.Is(err, bolterrors.ErrVersionMismatch) || errors.Is(err, bolterrors.ErrChecksum) ||
			strings.Contains(err.Error(), "file size too small") {
			return nil, corruptError(dataDir, path, err.Error())
		}
		return nil, fmt.Errorf("election: open %s: %w", boltFile, err)
	}
	if err := verifyBolt(store); err != nil {
		closeQuietly(store)
		return nil, corruptError(dataDir, path, err.Error())
	}
	return store, nil
}

// verifyBolt reads every log entry and the term and vote keys.
func verifyBolt(s *raftboltdb.BoltStore) error {
	first, err := s.FirstIndex()
	if err != nil {
		return fmt.Errorf("first index: %w", err)
	}
	last, err := s.LastIndex()
	if err != nil {
		return fmt.Errorf("last index: %w", err)
	}
	if first > last {
		return fmt.Errorf("first index %d after last index %d", first, last)
	}
	for i := first; i <= last && i > 0; i++ {
		var l raft.Log
		if err := s.GetLog(i, &l); err != nil {
			return fmt.Errorf("log entry %d (of %d..%d): %w", i, first, last, err)
		}
		if l.Index != i {
			return fmt.Errorf("log entry %d records index %d", i, l.Index)
		}
	}
	for _, k := range []string{"CurrentTerm", "LastVoteTerm"} {
		v, err := s.Get([]byte(k))
		if err != nil && err.Error() != "not found" {
			return fmt.Errorf("%s: %w", k, err)
		}
		if err == nil && len(v) != 8 {
			return fmt.Errorf("%s: %d bytes, want 8", k, len(v))
		}
	}
	return nil
}

// closeQuietly closes a store that failed its checks; closing a corrupt
// file may panic too.
func closeQuietly(s *raftboltdb.BoltStore) {
	defer func() { _ = recover() }()
	_ = s.Close()
}

// verifySnapshots opens every complete snapshot in the snapshot store, which
// reads its metadata and checks its state file against the CRC the metadata
// records. raft would skip a snapshot whose metadata it cannot read and
// start from an older one, or from the log alone, without the entries that
// snapshot had compacted away.
func verifySnapshots(dataDir string, snaps raft.SnapshotStore) error {
	dir := filepath.Join(dataDir, snapshotsDir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("election: read %s: %w", dir, err)
	}
	for _, e := range entries {
		if !e.IsDir() || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		_, rc, err := snaps.Open(e.Name())
		if err != nil {
			return corruptError(dataDir, filepath.Join(dir, e.Name()), err.Error())
		}
		_ = rc.Close()
	}
	return nil
}
