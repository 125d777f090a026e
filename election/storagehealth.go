package election

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// Storage alarm tuning.
const (
	// probeInterval is how often a node whose storage alarm is raised tries a
	// probe write (probeFile) to see whether writes succeed again.
	probeInterval = time.Second
	// probeMin and probeMax bound the probe write: at least 64 KiB, at most
	// 4 MiB, else the size of the write that failed.
	probeMin = 64 << 10
	probeMax = 4 << 20
	// probeFile is the probe's file in the data dir, removed after each try.
	probeFile = ".storage-probe"
)

// storageHealth is the node's storage alarm (see "Storage faults" in doc.go).
// Every write to the log store, the stable store and the snapshot store
// passes through it: a failed write raises the alarm, a successful log
// append, a completed snapshot or a successful probe clears it. Successful
// stable-store writes do not clear it: raft's term and vote are a few bytes
// that bolt fits into pages it already has while a full disk still refuses
// log entries. Safe for concurrent use.
type storageHealth struct {
	logger hclog.Logger
	dir    string                // the data dir, where the probe writes
	fault  func(op string) error // test hook: a failure injected before the real write
	change func()                // called after a raise or a clear (the node republishes)

	raised   atomic.Bool
	failures atomic.Uint64 // failed writes, ever
	mu       sync.Mutex
	op       string    // the write that raised the alarm
	err      error     // its error
	since    time.Time // when the alarm was raised
	size     int       // bytes of the latest failed write (probe size)

	standMu    sync.Mutex // one pre-stand probe at a time (raft asks its peers in parallel)
	standProbe time.Time  // when the latest pre-stand probe ran
}

// ErrStorage wraps the error that raised a node's storage alarm
// (Node.StorageAlarm): a write to the data dir failed (disk full, I/O error,
// read-only file system). The node stands for no election until a write
// succeeds again.
var ErrStorage error = &sentinel{msg: "election: storage alarm: writes to the data dir fail", retryable: true}

// write runs f, the write op of size bytes, and records its outcome; clears
// says whether its success proves that writes work again.
func (h *storageHealth) write(op string, size int, clears bool, f func() error) error {
	if h.fault != nil {
		if err := h.fault(op); err != nil {
			h.fail(op, size, err)
			return err
		}
	}
	if err := f(); err != nil {
		h.fail(op, size, err)
		return err
	}
	if clears {
		h.clear(op)
	}
	return nil
}

// fail records a failed write and raises the alarm if it was down: one log
// line per raise, not one per failed retry.
func (h *storageHealth) fail(op string, size int, err error) {
	h.failures.Add(1)
	h.mu.Lock()
	h.size = size
	if h.raised.Load() {
		h.mu.Unlock()
		return
	}
	h.op, h.err, h.since = op, err, time.Now()
	h.raised.Store(true)
	h.mu.Unlock()
	h.logger.Error("storage alarm raised: a write to the data dir failed; this node stands for no election until writes succeed again (free space or fix the disk)",
		"op", op, "data_dir", h.dir, "error", err)
	if h.change != nil {
		h.change()
	}
}

// clear lowers the alarm after a write that proves writes work again.
func (h *storageHealth) clear(op string) {
	if !h.raised.Load() {
		return
	}
	h.mu.Lock()
	if !h.raised.Load() {
		h.mu.Unlock()
		return
	}
	h.raised.Store(false)
	since := h.since
	h.mu.Unlock()
	h.logger.Info("storage alarm cleared: writes to the data dir succeed again", "op", op, "raised_for", time.Since(since).Round(time.Millisecond))
	if h.change != nil {
		h.change()
	}
}

// alarm returns nil while writes work, else an error wrapping ErrStorage
// that names the failed write, its error and since when.
func (h *storageHealth) alarm() error {
	if !h.raised.Load() {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return fmt.Errorf("%w: %s failed %s ago: %v", ErrStorage, h.op, time.Since(h.since).Round(time.Second), h.err)
}

// probe writes, syncs and removes a file in the data dir as large as the
// latest failed write (within probeMin..probeMax); its success clears the
// alarm. It needs no leader: a node alone (one-node cluster, or a cluster
// without quorum) recovers by it, a follower usually earlier by the leader's
// retried append.
func (h *storageHealth) probe() {
	h.mu.Lock()
	size := min(max(h.size, probeMin), probeMax)
	h.mu.Unlock()
	_ = h.write("probe", size, true, func() error {
		path := filepath.Join(h.dir, probeFile)
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			return fmt.Errorf("election: storage probe: %w", err)
		}
		_, err = f.Write(make([]byte, size))
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if rerr := os.Remove(path); err == nil && rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = rerr
		}
		if err != nil {
			return fmt.Errorf("election: storage probe: %w", err)
		}
		return nil
	})
}

// standWindow: the vote requests of one election round (sent in parallel,
// one per peer) share one pre-stand probe.
const standWindow = 100 * time.Millisecond

// mayStand reports whether the node may stand for election: the alarm is
// down and a probe write succeeds now. A node learns that its disk fails
// only when a write fails, and a follower may have written nothing for
// long (an idle cluster sends heartbeats only), so it proves it can write
// before it asks for votes; otherwise it would win, fail its first append
// as leader, step down, and raise the term once per node on the broken
// disk. The probe costs one small write and fsync per election round, as
// much as raft's own term write.
func (h *storageHealth) mayStand() bool {
	if h.raised.Load() {
		return false
	}
	h.standMu.Lock()
	defer h.standMu.Unlock()
	if time.Since(h.standProbe) >= standWindow {
		h.probe()
		h.standProbe = time.Now()
	}
	return !h.raised.Load()
}

// heldTimeout is raft's heartbeat and election timeout on a sole voter
// whose storage alarm is raised (holdElections).
const heldTimeout = time.Hour

// storageLoop probes the storage every probeInterval while the alarm is
// raised, and holds or releases a sole voter's elections when the alarm
// changes.
func (n *Node) storageLoop() {
	defer n.wg.Done()
	t := time.NewTicker(probeInterval)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.storageKick:
		case <-t.C:
			if n.health.raised.Load() {
				n.health.probe()
			}
		}
		n.holdElections()
	}
}

// holdElections stretches raft's timeouts to heldTimeout while this node is
// the only voter and its storage alarm is raised, and restores them when it
// clears. A sole voter asks no one for votes, so the transport's guard never
// sees its elections: it would win each one, fail its first append, step
// down and raise the term again, several times a second. raft's follower
// checks its timeout against the last contact, which a stepping-down
// leader sets to now, so the stretched timeout keeps it a follower. Not
// done with other voters: a follower that waits an hour also keeps
// believing in its leader and refuses the others' votes for that long.
func (n *Node) holdElections() {
	hold := n.health.raised.Load()
	if hold {
		voters := n.voters()
		hold = len(voters) == 1 && voters[0].ID == raft.ServerID(n.cfg.ID)
	}
	if hold == n.electionsHeld.Load() {
		return
	}
	n.electionsHeld.Store(hold)
	n.logger.Info("elections of this sole voter", "held", hold)
	n.retime(n.raft.State() == raft.Leader)
}

// StorageAlarm returns nil while this node's writes to its data dir succeed;
// while they fail, an error wrapping ErrStorage that names the failed write
// (raised by the first failure, cleared by the next successful log append,
// snapshot or probe). While it is raised the node stands for no election.
func (n *Node) StorageAlarm() error { return n.health.alarm() }

// mayStand reports whether this node may stand for election: not while its
// storage alarm is raised, nor when a probe write fails now.
func (n *Node) mayStand() bool { return n.health.mayStand() }

// logBytes is the payload size of a batch of log entries.
func logBytes(logs []*raft.Log) int {
	s := 0
	for _, l := range logs {
		s += len(l.Data) + len(l.Extensions) + 32
	}
	return s
}

// checkedLogs is the log store under the log cache: appends and deletions
// pass through the storage alarm.
type checkedLogs struct {
	raft.LogStore
	h *storageHealth
}

// StoreLog implements raft.LogStore.
func (s checkedLogs) StoreLog(l *raft.Log) error {
	return s.h.write("store log", logBytes([]*raft.Log{l}), true, func() error { return s.LogStore.StoreLog(l) })
}

// StoreLogs implements raft.LogStore.
func (s checkedLogs) StoreLogs(logs []*raft.Log) error {
	return s.h.write("store logs", logBytes(logs), true, func() error { return s.LogStore.StoreLogs(logs) })
}

// DeleteRange implements raft.LogStore. A deletion frees pages: its success
// proves nothing about room for new ones.
func (s checkedLogs) DeleteRange(lo, hi uint64) error {
	return s.h.write("delete logs", 0, false, func() error { return s.LogStore.DeleteRange(lo, hi) })
}

// checkedStable is the stable store (term, vote) behind the storage alarm.
type checkedStable struct {
	raft.StableStore
	h *storageHealth
}

// Set implements raft.StableStore.
func (s checkedStable) Set(k, v []byte) error {
	return s.h.write("set "+string(k), len(v), false, func() error { return s.StableStore.Set(k, v) })
}

// SetUint64 implements raft.StableStore.
func (s checkedStable) SetUint64(k []byte, v uint64) error {
	return s.h.write("set "+string(k), 8, false, func() error { return s.StableStore.SetUint64(k, v) })
}

// checkedSnapshots is the file snapshot store behind the storage alarm; it
// also makes every snapshot private (directory 0700, files 0600), which
// raft's store does not (0755 and the umask's file mode).
type checkedSnapshots struct {
	raft.SnapshotStore
	h   *storageHealth
	dir string // DataDir/snapshots
}

// Create implements raft.SnapshotStore.
func (s checkedSnapshots) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	var sink raft.SnapshotSink
	err := s.h.write("create snapshot", 0, false, func() error {
		var err error
		sink, err = s.SnapshotStore.Create(version, index, term, configuration, configurationIndex, trans)
		if err != nil {
			return err
		}
		if err := privatize(filepath.Join(s.dir, sink.ID()+".tmp")); err != nil {
			_ = sink.Cancel()
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &checkedSink{SnapshotSink: sink, h: s.h}, nil
}

// checkedSink records the outcome of a snapshot's writes.
type checkedSink struct {
	raft.SnapshotSink
	h *storageHealth
	n int
}

// Write implements io.Writer.
func (s *checkedSink) Write(p []byte) (int, error) {
	var n int
	err := s.h.write("write snapshot", len(p), false, func() error {
		var err error
		n, err = s.SnapshotSink.Write(p)
		return err
	})
	s.n += n
	return n, err
}

// Close implements io.Closer: a snapshot written in full clears the alarm.
func (s *checkedSink) Close() error {
	return s.h.write("close snapshot", s.n, true, s.SnapshotSink.Close)
}

var _ io.WriteCloser = (*checkedSink)(nil)

// privatize makes dir 0700 and every file directly in it 0600.
func privatize(dir string) error {
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("election: chmod %s: %w", dir, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("election: read %s: %w", dir, err)
	}
	for _, e := range entries {
		mode := os.FileMode(0o600)
		if e.IsDir() {
			mode = 0o700
		}
		if err := os.Chmod(filepath.Join(dir, e.Name()), mode); err != nil {
			return fmt.Errorf("election: chmod %s: %w", e.Name(), err)
		}
	}
	return nil
}
