package election

// Exports of internals for the external tests (package election_test), which
// run full clusters from internal/testcluster and so cannot be internal
// tests: testcluster imports node, which imports election.

// HoldSince is when n's running Hold began, in Unix nanoseconds; 0 when none
// runs.
func HoldSince(n *Node) int64 { return n.holdSince.Load() }

// SetNoClaimHoldoff turns the claim hold-off off in cfg (the planted
// violation of TestTransferClaimWaitsForOldLease).
func SetNoClaimHoldoff(cfg *Config, off bool) { cfg.noClaimHoldoff = off }

// SetTransferRunning marks n as running a TransferLeadership (true) or not:
// the one-at-a-time guard.
func SetTransferRunning(n *Node, v bool) { n.transferOne.Store(v) }

// SetStorageFault makes every write to the stores of a node started with cfg
// ask f first; an error from f fails the write as a broken disk would.
func SetStorageFault(cfg *Config, f func(op string) error) { cfg.storageFault = f }
