package node

import (
	"fmt"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/heartbeat-sidecar/heartbeat/election"
)

// readiness decides whether a node can answer from the committed state: it
// knows a leader, and it has applied the log up to the commit index it knew
// when it learned of that leader. The target is fixed once per leadership
// (leader id and term), so steady writes never keep a node from being ready.
type readiness struct {
	mu       sync.Mutex
	leaderID string // leadership the target belongs to
	term     uint64
	target   uint64 // commit index when that leadership was first seen
}

// check returns whether the node is ready and one line per condition, in the
// style "[+]leader ok" / "[-]applied: 12 < 15".
func (r *readiness) check(l election.Leadership, rf *raft.Raft) (bool, []string) {
	if rf == nil || rf.State() == raft.Shutdown {
		return false, []string{"[-]node: shut down"}
	}
	var lines []string
	ready := true
	if l.LeaderID == "" {
		ready = false
		lines = append(lines, "[-]leader: no leader known")
	} else {
		lines = append(lines, fmt.Sprintf("[+]leader ok: %s (term %d)", l.LeaderID, l.Term))
	}
	commit, applied := rf.CommitIndex(), rf.AppliedIndex()
	r.mu.Lock()
	if l.LeaderID != "" && (l.LeaderID != r.leaderID || l.Term != r.term) {
		r.leaderID, r.term, r.target = l.LeaderID, l.Term, commit
	}
	target := r.target
	known := r.leaderID != ""
	r.mu.Unlock()
	switch {
	case !known:
		ready = false
		lines = append(lines, fmt.Sprintf("[-]applied: waiting for a leader (applied %d, commit %d)", applied, commit))
	case applied < target:
		ready = false
		lines = append(lines, fmt.Sprintf("[-]applied: %d < %d", applied, target))
	default:
		lines = append(lines, fmt.Sprintf("[+]applied ok: %d >= %d", applied, target))
	}
	return ready, lines
}
