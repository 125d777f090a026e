//go:build linux

package election_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
)

// mountTmpfs mounts a tmpfs of size bytes on a new directory under the
// test's temp dir and unmounts it when the test ends (after the cluster,
// whose cleanup registers later and so runs first). It skips the test when
// the process may not mount (not root, or a container without
// CAP_SYS_ADMIN): TestStorageAlarmOneSickNode and TestStorageAlarmAllSick
// cover the same guard with injected faults and always run.
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		t.Skipf("cannot mount a tmpfs (%v): the disk-full test needs root or CAP_SYS_ADMIN; the injected-fault tests cover the guard", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fill writes a file in dir until the file system is full.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return path
			}
			t.Fatalf("fill %s: %v", dir, err)
		}
	}
}

// TestDiskFull: data dirs on a small tmpfs that fills up. "one node": n1's
// disk is full; it stands for no election, the healthy two elect a leader
// once, no term moves while the disk stays full, and once space is freed
// the alarm clears and n1 catches up. "every node": all three data dirs on
// one full tmpfs (the run: term 2 -> 41 in 15 s); after the leader
// steps down no term moves, and freeing space brings a leader back.
func TestDiskFull(t *testing.T) {
	for _, tc := range []struct {
		name string
		sick []string // ids whose data dir is on the tmpfs
	}{
		{"one node", []string{"n1"}},
		{"every node", []string{"n1", "n2", "n3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mnt := mountTmpfs(t, 24<<20)
			onTmpfs := map[string]bool{}
			for _, id := range tc.sick {
				onTmpfs[id] = true
			}
			c := testcluster.StartElections(t, 3, testcluster.ElectionOptions{
				FastFailover: true,
				Heartbeat:    testHeartbeat,
				Tweak: func(cfg *election.Config) {
					if onTmpfs[cfg.ID] {
						cfg.DataDir = filepath.Join(mnt, cfg.ID)
					}
				},
			})
			li := c.WaitLeader(15 * time.Second)
			if err := apply(t, c.Node(li).Node, "before"); err != nil {
				t.Fatalf("apply: %v", err)
			}
			sick := func(i int) bool { return onTmpfs[c.Node(i).ID] }
			filler := fill(t, mnt)

			// Write big entries until every sick node has failed one.
			big := bytes.Repeat([]byte("x"), 256<<10)
			testwait.Eventually(t, 30*time.Second, "every node on the full disk raises its alarm", func() (bool, string) {
				if ni := c.Leader(); ni >= 0 {
					_ = apply(t, c.Node(ni).Node, string(big))
				}
				for i := 0; i < c.Len(); i++ {
					if sick(i) && c.Node(i).Node.StorageAlarm() == nil {
						return false, c.Node(i).ID + ": no alarm yet"
					}
				}
				return true, ""
			})
			for i := 0; i < c.Len(); i++ {
				if sick(i) {
					if err := c.Node(i).Node.StorageAlarm(); !errors.Is(err, election.ErrStorage) || c.Metric(i, "heartbeat_storage_alarm") != 1 {
						t.Fatalf("%s: alarm %v, gauge %v", c.Node(i).ID, err, c.Metric(i, "heartbeat_storage_alarm"))
					}
				}
			}
			healthy := len(tc.sick) < c.Len()
			var term uint64
			ni := -1
			if healthy {
				ni = c.WaitLeader(15 * time.Second)
				if sick(ni) {
					t.Fatalf("%s leads with a full disk", c.Node(ni).ID)
				}
				term = c.Node(ni).Node.Leadership().Term
			} else {
				// The leader that failed steps down; wait until raft says so.
				testwait.Eventually(t, 10*time.Second, "the leader on the full disk steps down", func() (bool, string) {
					return c.Node(li).Node.Raft().State().String() != "Leader", c.Describe()
				})
				term = c.Node(li).Node.Raft().CurrentTerm()
			}

			// Twelve election timeouts: every node's term stays put.
			deadline := time.Now().Add(6 * testHeartbeat)
			tick := time.NewTicker(testHeartbeat / 5)
			defer tick.Stop()
			for time.Now().Before(deadline) {
				<-tick.C
				if healthy {
					if err := apply(t, c.Node(ni).Node, "small"); err != nil {
						t.Fatalf("apply on the healthy leader: %v", err)
					}
				}
				for i, tm := range terms(c) {
					if tm != term {
						t.Fatalf("node %d's term moved %d -> %d while the disk was full:%s", i, term, tm, c.Describe())
					}
				}
			}

			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
			var target uint64
			testwait.Eventually(t, 30*time.Second, "a leader writes once space is freed", func() (bool, string) {
				ni := c.Leader()
				if ni < 0 {
					return false, c.Describe()
				}
				if err := apply(t, c.Node(ni).Node, "after"); err != nil {
					return false, err.Error()
				}
				target = c.Node(ni).Node.Raft().AppliedIndex()
				return true, ""
			})
			testwait.Eventually(t, 30*time.Second, "alarms clear and every node catches up", func() (bool, string) {
				for i := 0; i < c.Len(); i++ {
					n := c.Node(i).Node
					if err := n.StorageAlarm(); err != nil {
						return false, fmt.Sprintf("%s: %v", c.Node(i).ID, err)
					}
					if c.Metric(i, "heartbeat_storage_alarm") != 0 {
						return false, c.Node(i).ID + ": alarm gauge still 1"
					}
					if got := n.Raft().AppliedIndex(); got < target {
						return false, fmt.Sprintf("%s: applied %d < %d", c.Node(i).ID, got, target)
					}
				}
				return true, ""
			})
			if healthy {
				if got := c.Node(ni).Node.Leadership(); got.Term != term {
					t.Fatalf("term moved %d -> %d across the repair", term, got.Term)
				}
			}
		})
	}
}
