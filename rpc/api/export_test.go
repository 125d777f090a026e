package api

// Exports of internals for the tests of package api_test, which are
// external so that they can run clusters from internal/testcluster (it
// imports node, which imports this package).
var (
	SameLeadership = sameLeadership
	Leadership     = leadership
	CommitStatus   = commitStatus
	Retryable      = retryable
	MembersKey     = membersKey
)

// SetTransferring marks c as running a leadership transfer (true) or not,
// as StepDown and TransferLeadership do while they run.
func SetTransferring(c *Coordinator, v bool) { c.transferring.Store(v) }
