package election

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// TestOpenBoltCost measures openBolt's checks on a realistic raft.db: the
// most entries a node keeps by default (TrailingLogs + SnapshotThreshold),
// 1 KiB each. It logs the time and fails only past a generous bound.
func TestOpenBoltCost(t *testing.T) {
	dir := t.TempDir()
	s, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, boltFile), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	const entries = DefaultTrailingLogs + DefaultSnapshotThreshold
	data := []byte(strings.Repeat("x", 1024))
	batch := make([]*raft.Log, 0, 512)
	for i := uint64(1); i <= entries; i++ {
		batch = append(batch, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: data})
		if len(batch) == cap(batch) || i == entries {
			if err := s.StoreLogs(batch); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := checkBoltFile(filepath.Join(dir, boltFile)); err != nil {
		t.Fatal(err)
	}
	structure := time.Since(start)
	s, err = openBolt(dir)
	if err != nil {
		t.Fatal(err)
	}
	total := time.Since(start)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("raft.db with %d entries of 1 KiB: structure check %v, structure + open + decoding every entry %v", entries, structure, total)
	if total > 20*time.Second {
		t.Fatalf("opening took %v", total)
	}
}
