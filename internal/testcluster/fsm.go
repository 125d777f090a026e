package testcluster

import (
	"encoding/json"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// LogFSM is the state machine an ElectionCluster gives its nodes unless
// told otherwise: it records every applied entry's data, and snapshots and
// restores that list. Its methods are safe for concurrent use.
type LogFSM struct {
	mu      sync.Mutex
	entries []string
	delay   atomic.Int64 // nanoseconds each Apply takes
}

// SetDelay makes every later Apply take d (to let raft's FSM queue fill).
func (f *LogFSM) SetDelay(d time.Duration) { f.delay.Store(int64(d)) }

// Apply records l's data and returns the number of entries so far.
func (f *LogFSM) Apply(l *raft.Log) any {
	if d := f.delay.Load(); d > 0 {
		time.Sleep(time.Duration(d))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries = append(f.entries, string(l.Data))
	return len(f.entries)
}

// Entries returns a copy of the data applied so far, in order.
func (f *LogFSM) Entries() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.entries...)
}

// Snapshot captures the entries.
func (f *LogFSM) Snapshot() (raft.FSMSnapshot, error) {
	return &logSnapshot{entries: f.Entries()}, nil
}

// Restore replaces the entries with a snapshot's.
func (f *LogFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var entries []string
	if err := json.NewDecoder(rc).Decode(&entries); err != nil {
		return err
	}
	f.mu.Lock()
	f.entries = entries
	f.mu.Unlock()
	return nil
}

type logSnapshot struct{ entries []string }

func (s *logSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode(s.entries); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *logSnapshot) Release() {}
