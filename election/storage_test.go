package election_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
	"github.com/heartbeat-sidecar/heartbeat/rpc/transport"
)

// singleNode starts a one-node cluster in dir with the given identity.
func singleNode(t *testing.T, dir, cluster, id string) (*election.Node, *transport.Transport, error) {
	t.Helper()
	tcfg := transport.DefaultConfig()
	tcfg.ID, tcfg.BindAddr, tcfg.ClusterID, tcfg.Logger = raft.ServerID(id), "127.0.0.1:0", cluster, testLogger(t)
	tr, err := transport.New(tcfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := election.DefaultConfig()
	cfg.ID, cfg.ClusterID, cfg.DataDir = id, cluster, dir
	cfg.Bootstrap = []election.Peer{{ID: id, Address: string(tr.LocalAddr()), Voter: true}}
	cfg.Acks = func() map[raft.ServerAddress]election.Ack { return testcluster.ConvertAcks(tr.Acks()) }
	cfg.ErrPeerClosed, cfg.ErrGoodbye = transport.ErrPeerClosed, transport.ErrGoodbye
	cfg.Logger = testLogger(t)
	cfg.Registerer = prometheus.NewRegistry()
	n, err := election.New(cfg, tr, &testcluster.LogFSM{})
	if err != nil {
		_ = tr.Close()
		return nil, nil, err
	}
	return n, tr, nil
}

func TestDataDirOfAnotherCluster(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	n, tr, err := singleNode(t, dir, "alpha", "n1")
	if err != nil {
		t.Fatal(err)
	}
	// A single voter elects itself.
	testwait.Eventually(t, 10*time.Second, "the single voter to lead", func() (bool, string) { return n.Leadership().IsLeader, "" })
	_ = n.Close()
	_ = tr.Close()

	tests := []struct{ cluster, id string }{
		{"beta", "n1"},  // another cluster
		{"alpha", "n2"}, // another node id
	}
	for _, tc := range tests {
		_, _, err := singleNode(t, dir, tc.cluster, tc.id)
		if !errors.Is(err, election.ErrClusterMismatch) {
			t.Fatalf("open as %s/%s: %v, want election.ErrClusterMismatch", tc.cluster, tc.id, err)
		}
		for _, s := range []string{`"alpha"`, `"n1"`, `"` + tc.cluster + `"`, `"` + tc.id + `"`} {
			if !strings.Contains(err.Error(), s) {
				t.Fatalf("error %q does not name %s", err, s)
			}
		}
	}
	// The right identity still opens, keeps its state and does not
	// re-bootstrap (term stays above the bootstrap term).
	n, tr, err = singleNode(t, dir, "alpha", "n1")
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer tr.Close()
	defer n.Close()
	testwait.Eventually(t, 10*time.Second, "the reopened single voter to lead", func() (bool, string) { return n.Leadership().IsLeader, "" })
	if term := n.Leadership().Term; term < 3 {
		t.Fatalf("term %d after restart, want > the first run's term", term)
	}
}

func TestDataDirInUse(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	n, tr, err := singleNode(t, dir, "alpha", "n1")
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	defer n.Close()
	_, _, err = singleNode(t, dir, "alpha", "n1")
	if !errors.Is(err, election.ErrDataDirLocked) {
		t.Fatalf("second node on the same data dir: %v, want election.ErrDataDirLocked", err)
	}
}

func TestBootstrapAddressMismatch(t *testing.T) {
	tcfg := transport.DefaultConfig()
	tcfg.ID, tcfg.BindAddr, tcfg.ClusterID, tcfg.Logger = "n1", "127.0.0.1:0", "alpha", testLogger(t)
	tr, err := transport.New(tcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	cfg := election.DefaultConfig()
	cfg.ID, cfg.ClusterID, cfg.DataDir = "n1", "alpha", t.TempDir()
	cfg.Bootstrap = []election.Peer{{ID: "n1", Address: "127.0.0.1:1", Voter: true}}
	cfg.Acks = func() map[raft.ServerAddress]election.Ack { return nil }
	cfg.ErrPeerClosed, cfg.ErrGoodbye = transport.ErrPeerClosed, transport.ErrGoodbye
	cfg.Logger = testLogger(t)
	_, err = election.New(cfg, tr, &testcluster.LogFSM{})
	if !errors.Is(err, election.ErrInvalidConfig) || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("New with a wrong own address: %v, want election.ErrInvalidConfig naming it", err)
	}
}

// testLogger logs to the test's log at the harness's level.
func testLogger(t *testing.T) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Level: testcluster.LogLevel(), Output: testcluster.NewWriter(t)})
}

// TestFileModes: the data dir, the snapshot directories and every file in
// them are private (0700 / 0600) whatever the umask, raft's snapshot store
// (0755 directories) or an older version (0750 data dir) made them; a
// reopen fixes what an older version left.
func TestFileModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil { // as an older version or a user left it
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		files := 0
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			want := fs.FileMode(0o600)
			if d.IsDir() {
				want = 0o700
			} else {
				files++
			}
			if got := info.Mode().Perm(); got != want {
				t.Errorf("%s: %s has mode %#o, want %#o", when, path, got, want)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if files < 4 { // raft.db, cluster.json, a snapshot's state.bin and meta.json
			t.Fatalf("%s: only %d files under %s", when, files, dir)
		}
	}
	open := func() (*election.Node, *transport.Transport) {
		n, tr, err := singleNode(t, dir, "alpha", "n1")
		if err != nil {
			t.Fatal(err)
		}
		testwait.Eventually(t, 10*time.Second, "the single voter to lead", func() (bool, string) { return n.Leadership().IsLeader, "" })
		return n, tr
	}
	n, tr := open()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := n.Apply(ctx, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := n.Raft().Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	check("after a snapshot")
	_ = n.Close()
	_ = tr.Close()

	// Loosen everything as an older version left it; a reopen fixes it.
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.Chmod(path, 0o755)
		}
		return os.Chmod(path, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	n, tr = open()
	defer tr.Close()
	defer n.Close()
	check("after a reopen")
}
