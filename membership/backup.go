package membership

import (
	"fmt"

	"github.com/hashicorp/raft"
)

// BackupFormat names the encoding Backup's snapshot writes (the FSM's own
// snapshot format); a backup file records it.
const BackupFormat = "heartbeat-membership-v1"

// Backup is Snapshot for a backup: it also returns the revision the copy
// was taken at. Persist the snapshot into a sink (a raft.SnapshotSink over
// any writer), then Release it.
func (f *FSM) Backup() (uint64, raft.FSMSnapshot, error) {
	s, err := f.Snapshot()
	if err != nil {
		return 0, nil, err
	}
	fs, ok := s.(*fsmSnapshot)
	if !ok {
		return 0, nil, fmt.Errorf("membership: backup: unexpected snapshot type %T", s)
	}
	return fs.revision, fs, nil
}
