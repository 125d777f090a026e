package node

import (
	"encoding/binary"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// countingFSM is the placeholder state machine until the membership layer
// replaces it: it counts the command entries applied and snapshots that
// count, which is enough to prove the log is replayed and restored.
type countingFSM struct {
	applied atomic.Uint64
}

var _ raft.FSM = (*countingFSM)(nil)

// Apply counts one entry and returns the new count.
func (f *countingFSM) Apply(*raft.Log) any {
	return f.applied.Add(1)
}

// Snapshot captures the count; Persist writes it as 8 big-endian bytes.
func (f *countingFSM) Snapshot() (raft.FSMSnapshot, error) {
	return countSnapshot(f.applied.Load()), nil
}

// Restore replaces the count with the one in the snapshot.
func (f *countingFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var buf [8]byte
	if _, err := io.ReadFull(rc, buf[:]); err != nil {
		return fmt.Errorf("node: restore counting fsm: %w", err)
	}
	f.applied.Store(binary.BigEndian.Uint64(buf[:]))
	return nil
}

type countSnapshot uint64

func (s countSnapshot) Persist(sink raft.SnapshotSink) error {
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], uint64(s))
	if _, err := sink.Write(buf[:]); err != nil {
		sink.Cancel()
		return fmt.Errorf("node: persist counting fsm: %w", err)
	}
	return sink.Close()
}

func (countSnapshot) Release() {}
