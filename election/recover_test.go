package election_test

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
)

// TestRecoverCorruptBolt: Recover on a data dir whose raft.db has a damaged
// page returns an error naming the file, never panics (without the guard,
// bolt panics "invalid page type" in raftboltdb.New). Some damage makes
// bolt fault (SIGSEGV) instead, which no recover() catches: the check
// before the open (issue 13 item 4, election/storage.go) is for those.
func TestRecoverCorruptBolt(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cluster.json"), []byte(`{"cluster_id":"c","node_id":"n1"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "raft.db")
	st, err := raftboltdb.NewBoltStore(path)
	if err != nil {
		t.Fatal(err)
	}
	var logs []*raft.Log
	for i := uint64(1); i <= 500; i++ {
		logs = append(logs, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: make([]byte, 100)})
	}
	if err := st.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	_ = st.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Both meta pages name the root bucket's page; give those pages an
	// impossible page type.
	pageSize := int(binary.LittleEndian.Uint32(b[16+8:]))
	for m := range 2 {
		root := int(binary.LittleEndian.Uint64(b[m*pageSize+32:]))
		binary.LittleEndian.PutUint16(b[root*pageSize+8:], 0x40)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = election.Recover(election.RecoverConfig{DataDir: dir, ClusterID: "c",
		Voters: []election.Peer{{ID: "n1", Address: "127.0.0.1:1"}}}, &testcluster.LogFSM{})
	if !errors.Is(err, election.ErrDamagedDataDir) || !strings.Contains(err.Error(), path) {
		t.Errorf("Recover on a damaged raft.db: %v; want ErrDamagedDataDir naming %s", err, path)
	}
}
