package election

import (
	"errors"
	"fmt"
)

// Sentinel errors. Errors returned by this package wrap one of these with %w
// (or, for ErrNotLeader, are a *NotLeaderError whose Is matches it); test them
// with errors.Is.
var (
	// ErrNotLeader: the operation must run on the leader and this node is not
	// it. The error is a *NotLeaderError that names the leader when one is
	// known, so a caller can retry there.
	ErrNotLeader = errors.New("election: not the leader")

	// ErrNoLeader: no leader is known right now (an election is running or the
	// cluster has no quorum). A *NotLeaderError without a leader matches it.
	ErrNoLeader = errors.New("election: no leader known")

	// ErrClusterMismatch: the data directory belongs to another cluster or to
	// another node id. The node refuses to start rather than mix two histories.
	ErrClusterMismatch = errors.New("election: data dir belongs to another cluster or node")

	// ErrDataDirLocked: another process (or another node in this process) has
	// the data directory's bolt file open.
	ErrDataDirLocked = errors.New("election: data dir is in use")

	// ErrIDInUse: Join was given an id that is already a member with a
	// different address.
	ErrIDInUse = errors.New("election: node id already in use with another address")

	// ErrAddressInUse: Join was given an address that already belongs to a
	// member with a different id.
	ErrAddressInUse = errors.New("election: address already in use by another node id")

	// ErrUnknownMember: the id named is not in the cluster configuration.
	ErrUnknownMember = errors.New("election: unknown member")

	// ErrNotVoter: the member named is not a voter (leadership can only go to
	// a voter).
	ErrNotVoter = errors.New("election: member is not a voter")

	// ErrTransferInProgress: a leadership transfer is running on this
	// leader (raft refuses writes and new transfers meanwhile); retry
	// shortly, or at the new leader.
	ErrTransferInProgress = errors.New("election: leadership transfer in progress")

	// ErrShutdown: the node has been shut down or closed.
	ErrShutdown = errors.New("election: node is shut down")

	// ErrInvalidConfig: Config.Validate rejected a value; the wrapped message
	// names the field.
	ErrInvalidConfig = errors.New("election: invalid config")
)

// NotLeaderError is returned by leader-only operations on a node that is not
// the leader. LeaderID and LeaderAddr name the leader this node currently
// follows; both are empty when no leader is known. errors.Is(err, ErrNotLeader)
// is true for it, and errors.Is(err, ErrNoLeader) too when no leader is known.
type NotLeaderError struct {
	LeaderID   string
	LeaderAddr string
}

// Error implements error.
func (e *NotLeaderError) Error() string {
	if e.LeaderID == "" && e.LeaderAddr == "" {
		return ErrNotLeader.Error() + " (no leader known)"
	}
	return fmt.Sprintf("%s (leader is %s at %s)", ErrNotLeader.Error(), e.LeaderID, e.LeaderAddr)
}

// Is reports whether target is ErrNotLeader, or ErrNoLeader when no leader
// is known.
func (e *NotLeaderError) Is(target error) bool {
	return target == ErrNotLeader || target == ErrNoLeader && e.LeaderID == "" && e.LeaderAddr == ""
}
