package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/heartbeat-sidecar/heartbeat/client"
	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
	"github.com/heartbeat-sidecar/heartbeat/membership"
)

// TestSnapshotSaveRestore: 'snapshot save' through a follower writes a
// backup of a 3-node cluster's state (many 64 KiB chunks); 'snapshot
// restore' seeds a new data dir whose raft snapshot is byte-equal to the
// backup (and the FSM re-encodes it to the same bytes); a node started on
// it alone elects itself at a higher term, lists the same resources and
// takes writes above the backup's revision. A damaged, truncated or empty
// backup is refused with a clear line, never a panic; a non-empty data dir
// is refused.
func TestSnapshotSaveRestore(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{Wait: cliWait})
	addr := c.Follower().ClientAddr()

	cl, err := client.New(client.Config{Endpoints: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// Enough state for many chunks: 3 batches of 300 labelled resources.
	for b := range 3 {
		var specs []client.ResourceSpec
		for i := range 300 {
			specs = append(specs, client.ResourceSpec{ID: fmt.Sprintf("res-%d-%03d", b, i), Weight: uint32(1 + i%7),
				Labels: map[string]string{"zone": fmt.Sprintf("z%d", i%3), "pad": strings.Repeat("x", 200)}})
		}
		if _, err := cl.Register(testcluster.Context(t), specs...); err != nil {
			t.Fatalf("register batch %d: %v", b, err)
		}
	}
	before := resourceSpecs(t, addr)

	dir := t.TempDir()
	file := filepath.Join(dir, "backup.hb")
	out := cliOK(t, "snapshot", "save", file, "--addr", addr, "--timeout", "20s")
	if !strings.HasPrefix(out, "saved "+file+": cluster heartbeat, revision ") {
		t.Fatalf("snapshot save: %q", out)
	}
	info, err := election.VerifyBackup(file)
	if err != nil {
		t.Fatal(err)
	}
	if info.Size < 3*(64<<10) || info.Revision == 0 || info.Term == 0 || info.Format != membership.BackupFormat {
		t.Errorf("backup info %+v: want several chunks, a revision, a term and the format", info)
	}
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("backup file mode: %v %v, want 0600", st.Mode(), err)
	}
	data := backupData(t, file)

	// Damaged copies: one byte flipped, cut short, emptied, a trailer cut.
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(raw)
	flipped[len(data)/2] ^= 0x40
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"flipped", flipped, "checksum mismatch"},
		{"truncated", raw[:len(raw)/2], "truncated"},
		{"trailer cut", raw[:len(raw)-3], "truncated"},
		{"empty", nil, "too short"},
		{"data cut", append(bytes.Clone(raw[:100]), raw[len(data):]...), "truncated or damaged"},
	} {
		p := filepath.Join(dir, tc.name)
		if err := os.WriteFile(p, tc.b, 0o600); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{
			{"snapshot", "inspect", p},
			{"snapshot", "restore", p, "--data-dir", filepath.Join(dir, "d-"+tc.name), "--node-id", "m1", "--peer-addr", "127.0.0.1:1"},
		} {
			code, _, errOut := cli(args...)
			if code != exitFailure || !strings.Contains(errOut, tc.want) || !strings.Contains(errOut, p) {
				t.Errorf("%s: heartbeat %s: exit %d %q, want 1 naming the file and %q", tc.name, strings.Join(args[:2], " "), code, errOut, tc.want)
			}
		}
		if _, err := os.Stat(filepath.Join(dir, "d-"+tc.name, "raft.db")); err == nil {
			t.Errorf("%s: restore of a bad backup left a raft.db", tc.name)
		}
	}

	// Restore into a new data dir, for a new cluster of one node.
	peer := testcluster.FreeAddrs(t, 1)[0]
	dataDir := filepath.Join(dir, "m1")
	restoreArgs := []string{"snapshot", "restore", file, "--data-dir", dataDir, "--node-id", "m1", "--peer-addr", peer, "--cluster-id", "restored"}
	if out := cliOK(t, restoreArgs...); !strings.HasPrefix(out, "restored "+file+" into "+dataDir) {
		t.Errorf("snapshot restore: %q", out)
	}
	if code, _, errOut := cli(restoreArgs...); code != exitFailure || !strings.Contains(errOut, "not empty") {
		t.Errorf("restore into a used data dir: exit %d %q, want 1 and 'not empty'", code, errOut)
	}
	if got := raftSnapshotData(t, dataDir); !bytes.Equal(got, data) {
		t.Errorf("restored raft snapshot: %d bytes, differs from the backup's %d", len(got), len(data))
	}
	if got := reencode(t, data); !bytes.Equal(got, data) {
		t.Errorf("the FSM re-encodes the backup to %d different bytes (backup %d)", len(got), len(data))
	}

	// The old cluster is gone; the restored node alone leads it.
	for _, n := range c.Live() {
		c.Kill(n.ID())
	}
	cfg := c.Config("m1", peer)
	cfg.DataDir, cfg.ClusterID = dataDir, "restored"
	c.StartConfig("m1", cfg)
	m1 := c.Leader()
	if s := m1.Status(); s.Term <= info.Term || s.ClusterID != "restored" {
		t.Errorf("restored node: term %d (backup term %d), cluster %q", s.Term, info.Term, s.ClusterID)
	}
	after := resourceSpecs(t, m1.ClientAddr())
	if after != before {
		t.Errorf("restored resources differ:\nbefore %.300s...\nafter  %.300s...", before, after)
	}
	out = cliOK(t, "resources", "put", "new-one", "--addr", m1.ClientAddr())
	var rev uint64
	if _, err := fmt.Sscanf(out, "registered new-one (revision %d)", &rev); err != nil || rev <= info.Revision {
		t.Errorf("write on the restored node: %q (%v), want a revision above %d", out, err, info.Revision)
	}
}

// resourceSpecs lists the resources at addr (consistent read) as one
// string of their ids, weights and labels (owners change with the cluster).
func resourceSpecs(t *testing.T, addr string) string {
	t.Helper()
	var rs []resourceView
	var b strings.Builder
	testwait.Eventually(t, cliWait, "resources listed", func() (bool, string) {
		code, out, errOut := cli("resources", "list", "--addr", addr, "--json")
		if code != exitOK {
			return false, errOut
		}
		rs = nil
		if err := json.Unmarshal([]byte(out), &rs); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	for _, r := range rs {
		fmt.Fprintf(&b, "%s/%d/%v;", r.ID, r.Weight, r.Labels)
	}
	return b.String()
}

// backupData returns a backup's snapshot data.
func backupData(t *testing.T, file string) []byte {
	t.Helper()
	rc, _, err := election.OpenBackupData(file)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// raftSnapshotData returns the data of the newest raft snapshot in dataDir.
func raftSnapshotData(t *testing.T, dataDir string) []byte {
	t.Helper()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dataDir, 1, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	metas, err := snaps.List()
	if err != nil || len(metas) != 1 {
		t.Fatalf("snapshots in %s: %d (%v), want 1", dataDir, len(metas), err)
	}
	_, rc, err := snaps.Open(metas[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// reencode restores data into a fresh FSM and encodes it again.
func reencode(t *testing.T, data []byte) []byte {
	t.Helper()
	fsm, err := membership.NewFSM(membership.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := fsm.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	_, snap, err := fsm.Backup()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	var sink bufferSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	return sink.Bytes()
}

// bufferSink is a raft.SnapshotSink in memory.
type bufferSink struct{ bytes.Buffer }

func (*bufferSink) ID() string    { return "test" }
func (*bufferSink) Cancel() error { return nil }
func (*bufferSink) Close() error  { return nil }
