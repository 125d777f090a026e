package api

// Exports of internals for the tests of package api_test, which are
// external so that they can run clusters from internal/testcluster (it
// imports node, which imports this package).
var (
	SameLeadership = sameLeadership
	Leadership     = leadership
	CommitStatus   = commitStatus
	TransferStatus = transferStatus
	MembersKey     = membersKey
)

// NotLeaderStatus is the FailedPrecondition NOT_LEADER answer naming the
// leader.
func NotLeaderStatus(id, addr string) error { return notLeaderStatus(id, addr) }
