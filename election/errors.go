package election

import "fmt"

// Sentinel errors. Errors returned by this package wrap one of these with %w
// (or, for ErrNotLeader, are a *NotLeaderError whose Is matches it); test them
// with errors.Is. Each says whether retrying may help (a Retryable method,
// read by internal/retry's one rule): only ErrNotLeader, ErrNoLeader and
// ErrTransferInProgress do.
var (
	// ErrNotLeader: the operation must run on the leader and this node is not
	// it. The error is a *NotLeaderError that names the leader when one is
	// known, so a caller can retry there.
	ErrNotLeader error = &sentinel{msg: "election: not the leader", retryable: true}

	// ErrNoLeader: no leader is known right now (an election is running or the
	// cluster has no quorum). A *NotLeaderError without a leader matches it.
	ErrNoLeader error = &sentinel{msg: "election: no leader known", retryable: true}

	// ErrClusterMismatch: the data directory belongs to another cluster or to
	// another node id. The node refuses to start rather than mix two histories.
	ErrClusterMismatch error = &sentinel{msg: "election: data dir belongs to another cluster or node", retryable: false}

	// ErrDataDirLocked: another process (or another node in this process) has
	// the data directory's bolt file open.
	ErrDataDirLocked error = &sentinel{msg: "election: data dir is in use", retryable: false}

	// ErrCorrupt: a file in the data dir (raft.db, a snapshot, cluster.json)
	// cannot be read: the message names the file, what is wrong and how to
	// recover (move the data dir away and rejoin). The node refuses to start
	// rather than panic or start from part of its state.
	ErrCorrupt error = &sentinel{msg: "election: data dir is corrupt", retryable: false}

	// ErrIDInUse: Join was given an id that is already a member with a
	// different address.
	ErrIDInUse error = &sentinel{msg: "election: node id already in use with another address", retryable: false}

	// ErrAddressInUse: Join was given an address that already belongs to a
	// member with a different id.
	ErrAddressInUse error = &sentinel{msg: "election: address already in use by another node id", retryable: false}

	// ErrUnknownMember: the id named is not in the cluster configuration.
	ErrUnknownMember error = &sentinel{msg: "election: unknown member", retryable: false}

	// ErrNotVoter: the member named is not a voter (leadership can only go to
	// a voter).
	ErrNotVoter error = &sentinel{msg: "election: member is not a voter", retryable: false}

	// ErrCannotLead: TransferLeadership named a voter that the membership
	// state says cannot lead now (see Config.CanLead): not in the raft
	// configuration, dead, left, draining, or its application is
	// unhealthy. The message says which.
	ErrCannotLead error = &sentinel{msg: "election: member cannot lead", retryable: false}

	// ErrMemberGone: Config.CanLead's verdict on a member that is dead or
	// has left (it never counts as a voter that could take over).
	ErrMemberGone error = &sentinel{msg: "election: member is dead or left", retryable: false}

	// ErrNoOtherVoter: a step-down (TransferLeadership to "") found no
	// voter but this node that could take over.
	ErrNoOtherVoter error = &sentinel{msg: "election: no other voter can take over", retryable: false}

	// ErrTransferInProgress: a leadership transfer is running on this
	// leader (raft refuses writes and new transfers meanwhile); retry
	// shortly, or at the new leader.
	ErrTransferInProgress error = &sentinel{msg: "election: leadership transfer in progress", retryable: true}

	// ErrQuorumAtRisk: a configuration change (removing or demoting a
	// voter) was refused because the voters of the new
	// configuration that answer now could not reach its quorum: it would
	// stop the cluster. The message gives the counts. It passes once enough
	// voters answer again (or a dead voter is removed first).
	ErrQuorumAtRisk error = &sentinel{msg: "election: the change would leave fewer live voters than its quorum", retryable: false}

	// ErrLeadershipLost: this node led, appended the entry (a write or a
	// configuration change) and lost leadership before the entry
	// committed. The entry may have reached other members, and the next
	// leader may still commit it, or not: the outcome is unknown. Unlike
	// ErrNotLeader it is not retryable: a retry could apply a write twice,
	// after another client's write of the same key. Read the state to
	// learn what happened.
	ErrLeadershipLost error = &sentinel{msg: "election: leadership lost before the entry committed; it may still commit (outcome unknown)", retryable: false}

	// ErrShutdown: the node has been shut down or closed.
	ErrShutdown error = &sentinel{msg: "election: node is shut down", retryable: false}

	// ErrInvalidConfig: Config.Validate rejected a value; the wrapped message
	// names the field.
	ErrInvalidConfig error = &sentinel{msg: "election: invalid config", retryable: false}
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

// Retryable implements internal/retry's marker: the leader may be found (or
// elected) by the next attempt.
func (e *NotLeaderError) Retryable() bool { return true }

// sentinel is the type of this package's sentinel errors: a message and
// whether retrying may help.
type sentinel struct {
	msg       string
	retryable bool
}

// Error implements error.
func (e *sentinel) Error() string { return e.msg }

// Retryable reports whether the condition may pass by itself (see
// internal/retry.Retryable).
func (e *sentinel) Retryable() bool { return e.retryable }
