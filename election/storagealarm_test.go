package election_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
)

// testHeartbeat is the heartbeat and election timeout of the storage tests:
// long enough that a loaded machine (-race, big entries, fsyncs) does not
// depose a healthy leader by itself, which would move the term the tests
// watch.
const testHeartbeat = time.Second

// disks is a set of broken disks by node id, for election.SetStorageFault:
// a broken disk fails every write but raft's term and vote (a full disk:
// bolt fits those few bytes into pages it already has, as seen on a full
// tmpfs, while log entries need new pages).
type disks struct {
	mu     sync.Mutex
	broken map[string]bool
}

func (d *disks) set(id string, broken bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.broken == nil {
		d.broken = map[string]bool{}
	}
	d.broken[id] = broken
}

func (d *disks) fault(id string) func(op string) error {
	return func(op string) error {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.broken[id] && !strings.HasPrefix(op, "set ") {
			return fmt.Errorf("injected: %s: %w", op, syscall.ENOSPC)
		}
		return nil
	}
}

func startWithDisks(t *testing.T, d *disks) *testcluster.ElectionCluster {
	return testcluster.StartElections(t, 3, testcluster.ElectionOptions{
		FastFailover: true,
		Heartbeat:    testHeartbeat,
		Tweak:        func(cfg *election.Config) { election.SetStorageFault(cfg, d.fault(cfg.ID)) },
	})
}

func apply(t *testing.T, n *election.Node, data string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := n.Apply(ctx, []byte(data))
	return err
}

// terms returns every running node's raft term.
func terms(c *testcluster.ElectionCluster) []uint64 {
	var out []uint64
	for _, i := range c.Alive() {
		out = append(out, c.Node(i).Node.Raft().CurrentTerm())
	}
	return out
}

// TestStorageAlarmOneSickNode: the leader's disk fails. It steps down (raft
// does, on a failed append), raises the alarm (error, metric) and stands for
// no election; the two healthy nodes elect a leader once and the term then
// stays put while the sick node keeps failing the appends it is sent. Once
// writes work again the alarm clears and the node catches up.
func TestStorageAlarmOneSickNode(t *testing.T) {
	var d disks
	c := startWithDisks(t, &d)
	li := c.WaitLeader(15 * time.Second)
	sick := c.Node(li)
	if err := apply(t, sick.Node, "before"); err != nil {
		t.Fatalf("apply on a healthy leader: %v", err)
	}
	if err := sick.Node.StorageAlarm(); err != nil || c.Metric(li, "heartbeat_storage_alarm") != 0 {
		t.Fatalf("alarm before any failure: %v", err)
	}

	d.set(sick.ID, true)
	if err := apply(t, sick.Node, "lost"); err == nil {
		t.Fatal("apply on a leader whose disk fails: no error")
	}
	ni := c.WaitLeader(15 * time.Second)
	if ni == li {
		t.Fatalf("the sick node %s leads again", sick.ID)
	}
	if err := sick.Node.StorageAlarm(); !errors.Is(err, election.ErrStorage) || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("StorageAlarm = %v, want ErrStorage naming the failure", err)
	}
	if got := c.Metric(li, "heartbeat_storage_alarm"); got != 1 {
		t.Fatalf("heartbeat_storage_alarm = %v on the sick node", got)
	}
	term := c.Node(ni).Node.Leadership().Term
	// While the disk stays broken the leader keeps writing (the sick node
	// keeps failing them) and no node's term moves.
	deadline := time.Now().Add(6 * testHeartbeat)
	for k := 0; time.Now().Before(deadline); k++ {
		if err := apply(t, c.Node(ni).Node, fmt.Sprintf("w%d", k)); err != nil {
			t.Fatalf("apply on the healthy leader: %v", err)
		}
		for i, tm := range terms(c) {
			if tm != term {
				t.Fatalf("node %d's term moved %d -> %d while the sick disk stayed broken:%s", i, term, tm, c.Describe())
			}
		}
		if err := sick.Node.StorageAlarm(); err == nil {
			t.Fatal("the alarm cleared while the disk was still broken")
		}
	}
	if failures := c.Metric(li, "heartbeat_storage_write_failures_total"); failures < 2 {
		t.Fatalf("heartbeat_storage_write_failures_total = %v; the sick node was not sent the appends", failures)
	}

	d.set(sick.ID, false)
	if err := apply(t, c.Node(ni).Node, "after"); err != nil {
		t.Fatalf("apply after the repair: %v", err)
	}
	target := c.Node(ni).Node.Raft().AppliedIndex()
	// raft's leader backs off up to 10.24 s between retries to a follower
	// whose appends failed many times; a write per poll wakes replication.
	testwait.Eventually(t, 60*time.Second, "the alarm clears and the sick node catches up", func() (bool, string) {
		if err := sick.Node.StorageAlarm(); err != nil {
			return false, err.Error()
		}
		if got := sick.Node.Raft().AppliedIndex(); got < target {
			_ = apply(t, c.Node(ni).Node, "nudge")
			return false, fmt.Sprintf("applied %d < %d (last log %d, commit %d)", got, target, sick.Node.Raft().LastIndex(), sick.Node.Raft().CommitIndex())
		}
		return c.Metric(li, "heartbeat_storage_alarm") == 0, "alarm gauge still 1"
	})
	if got := c.Node(ni).Node.Leadership(); got.Term != term || got.LeaderID != c.Node(ni).ID {
		t.Fatalf("leadership changed across the repair: %+v, want term %d", got, term)
	}
}

// TestStorageAlarmAllSick: every node's disk fails (one disk under the
// whole cluster, as in the issue: term 2 -> 41 in 15 s). The leader steps
// down and no node stands again, so the term stays where it was (before
// the guard, each election's winner failed its first append, stepped down
// and the term climbed). Once writes work again, a leader is elected and
// writes succeed.
func TestStorageAlarmAllSick(t *testing.T) {
	var d disks
	c := startWithDisks(t, &d)
	li := c.WaitLeader(15 * time.Second)
	if err := apply(t, c.Node(li).Node, "before"); err != nil {
		t.Fatalf("apply: %v", err)
	}
	for i := 0; i < c.Len(); i++ {
		d.set(c.Node(i).ID, true)
	}
	if err := apply(t, c.Node(li).Node, "lost"); err == nil {
		t.Fatal("apply with every disk broken: no error")
	}
	term := c.Node(li).Node.Raft().CurrentTerm()
	// Ten election timeouts: a node standing would raise the term.
	deadline := time.Now().Add(6 * testHeartbeat)
	tick := time.NewTicker(testHeartbeat / 5)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		<-tick.C
		for i, tm := range terms(c) {
			if tm != term {
				t.Fatalf("node %d's term moved %d -> %d with every disk broken:%s", i, term, tm, c.Describe())
			}
		}
		if got := c.Leader(); got >= 0 && c.Node(got).Node.Raft().CurrentTerm() == term && got != li {
			t.Fatalf("node %d leads with a broken disk", got)
		}
	}

	for i := 0; i < c.Len(); i++ {
		d.set(c.Node(i).ID, false)
	}
	testwait.Eventually(t, 30*time.Second, "a leader that can write once the disks work", func() (bool, string) {
		ni := c.Leader()
		if ni < 0 {
			return false, c.Describe()
		}
		if err := apply(t, c.Node(ni).Node, "after"); err != nil {
			return false, err.Error()
		}
		for _, i := range c.Alive() {
			if err := c.Node(i).Node.StorageAlarm(); err != nil {
				return false, fmt.Sprintf("%s: %v", c.Node(i).ID, err)
			}
		}
		return true, ""
	})
}

// TestStorageAlarmSoleVoter: a one-node cluster asks no one for votes, so
// the transport's guard never sees its elections; its raft timeouts are
// stretched instead while the alarm is up. Its disk fails: it steps down and
// stays a follower in the same term (before: it won every election, failed
// its first append and stepped down, raising the term each time); once
// writes work again it leads again.
func TestStorageAlarmSoleVoter(t *testing.T) {
	var d disks
	c := testcluster.StartElections(t, 1, testcluster.ElectionOptions{
		Heartbeat: testHeartbeat,
		Tweak:     func(cfg *election.Config) { election.SetStorageFault(cfg, d.fault(cfg.ID)) },
	})
	c.WaitLeader(15 * time.Second)
	n := c.Node(0).Node
	d.set(c.Node(0).ID, true)
	if err := apply(t, n, "lost"); err == nil {
		t.Fatal("apply with a broken disk: no error")
	}
	term := n.Raft().CurrentTerm()
	deadline := time.Now().Add(6 * testHeartbeat)
	tick := time.NewTicker(testHeartbeat / 5)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		<-tick.C
		if got := n.Raft().CurrentTerm(); got != term {
			t.Fatalf("term moved %d -> %d with the disk broken:%s", term, got, c.Describe())
		}
	}
	if n.StorageAlarm() == nil {
		t.Fatal("no alarm")
	}
	d.set(c.Node(0).ID, false)
	testwait.Eventually(t, 30*time.Second, "the sole voter leads and writes again", func() (bool, string) {
		if err := apply(t, n, "after"); err != nil {
			return false, err.Error()
		}
		return n.StorageAlarm() == nil, "alarm still raised"
	})
}
