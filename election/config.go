package election

import (
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// Default timings, kept in one place and chosen from the benchmark
// (go run ./bench/cmd/hbbench; README "Timing defaults"). On a 5-node
// loopback cluster of this 2-core machine, 250 ms / 50 ms gave silent
// failover 432 / 569 ms (p50 / p99), crash failover 51 / 75 ms, no election
// in 10 minutes with both cores burnt, and an idle leader at 4.85 % of a core
// (raft on its TCP transport at its 1 s defaults: 4.50 %); 300 / 60 ms was
// 614 / 727 ms silent at 4.30 %, 500 / 50 ms 815 / 974 ms at 4.80 %: idle
// cost barely follows the heartbeat rate once heartbeats ride one stream, so
// the faster silent failover is bought cheaply. CommitTimeout is long
// (raft sends every follower an AppendEntries each CommitTimeout even when
// idle); writes nudge the commit index out at once instead (Apply).
const (
	DefaultHeartbeatTimeout   = 250 * time.Millisecond
	DefaultElectionTimeout    = 250 * time.Millisecond
	DefaultLeaderLeaseTimeout = 250 * time.Millisecond
	DefaultCommitTimeout      = 500 * time.Millisecond
	DefaultLeaseDuration      = 200 * time.Millisecond
	DefaultHeartbeatInterval  = 50 * time.Millisecond
	DefaultLeaseDriftMargin   = 20 * time.Millisecond
	DefaultFailoverRankStep   = 150 * time.Millisecond
	DefaultRedialTimeout      = 20 * time.Millisecond
	DefaultConfirmTimeout     = 150 * time.Millisecond
	DefaultSnapshotInterval   = 120 * time.Second
	DefaultSnapshotThreshold  = 8192
	DefaultTrailingLogs       = 10240
	DefaultSnapshotRetain     = 2
)

// Peer is one member of the static initial cluster.
type Peer struct {
	ID      string // raft server id
	Address string // peer (raft transport) address, host:port
	Voter   bool   // false: joins as a non-voter
}

// Config configures a Node. Start from DefaultConfig, set the identity,
// DataDir, Bootstrap and the transport hooks (Acks, ErrPeerClosed,
// ErrGoodbye), then New validates it.
type Config struct {
	// ID is this node's raft server id; it must be unique in the cluster and
	// stable across restarts (the data dir records it).
	ID string
	// ClusterID names the cluster; the data dir records it and refuses to be
	// opened for another cluster.
	ClusterID string
	// DataDir holds raft.db (log and stable store), snapshots/ and
	// cluster.json (identity). Created if missing.
	DataDir string
	// Bootstrap is the static initial cluster, given identically to every
	// node. A node with no state that finds itself in the list bootstraps
	// raft with the whole list; a node not in it waits to be joined. Ignored
	// once the data dir has state. Empty: never bootstrap (join only).
	Bootstrap []Peer

	// HeartbeatTimeout: a follower that hears nothing from the leader for
	// this long (randomised up to 2x) starts a (pre-)election. Lower is
	// faster silent failover and more false elections under load.
	HeartbeatTimeout time.Duration
	// HeartbeatInterval is the leader's heartbeat period: raft sends one to
	// each follower every HeartbeatInterval to 2x HeartbeatInterval. Stock
	// raft ties it to the timeout (HeartbeatTimeout/10); Heartbeat sets it
	// apart by reloading the raft config when the node's role changes (the
	// leader runs raft with HeartbeatTimeout = 10 x HeartbeatInterval, the
	// followers with HeartbeatTimeout), because heartbeats are most of an
	// idle cluster's CPU. 2 x HeartbeatInterval must stay <= HeartbeatTimeout/2
	// so a late heartbeat is not taken for a dead leader. 0: HeartbeatTimeout/10.
	HeartbeatInterval time.Duration
	// ElectionTimeout: a candidate's wait before a new election round.
	// Must be >= HeartbeatTimeout.
	ElectionTimeout time.Duration
	// LeaderLeaseTimeout: raft's own step-down timer; a leader that cannot
	// reach a quorum for this long becomes a follower. <= HeartbeatTimeout.
	LeaderLeaseTimeout time.Duration
	// CommitTimeout: raft's max wait before a heartbeat-borne commit.
	CommitTimeout time.Duration
	// LeaseDuration: length of the leader lease measured from the send time
	// of the heartbeat a quorum acknowledged. Must be <= HeartbeatTimeout so
	// that no other leader can be elected (by a normal vote) inside a lease.
	LeaseDuration time.Duration
	// LeaseDriftMargin is subtracted from every lease for clock-rate drift
	// between nodes and scheduling delay. Must be < LeaseDuration.
	LeaseDriftMargin time.Duration
	// OwnershipLease is how long a member may work on its resources after
	// the heartbeat answer a grant is anchored on (less LeaseDriftMargin),
	// and so how long the leader waits after a member's last grant before
	// it gives the member's resources to another (see OwnershipLease). It
	// must stay below the failure-detection time (a member is declared dead
	// no sooner than 300 ms after its last answer, by default) so that a
	// dead member's resources move as fast as before, and well above twice
	// the heartbeat interval so that it never lapses between grants. 0: the
	// heartbeat timeout (250 ms by default).
	OwnershipLease time.Duration

	// FastFailover enables crash detection through a stream held to the
	// leader: a follower that sees it closed by the peer, cannot redial and
	// has a second member confirm, stands for election at once (TimeoutNow).
	FastFailover bool
	// FailoverRankStep is the delay per rank between followers standing after
	// a leader crash. Rank = the number of voters with a lower id that may
	// still be alive (the lowest live voter has rank 0 and stands at once).
	// Only a rank-0 node whose own election failed (a stale log) leaves
	// work for the next; the step must exceed one election's round trip
	// under load, or two nodes stand in one term.
	FailoverRankStep time.Duration
	// RedialTimeout bounds the redial that tells a crash (refused) from a
	// broken connection to a live leader.
	RedialTimeout time.Duration
	// ConfirmTimeout bounds the ConfirmLost queries to the other members.
	ConfirmTimeout time.Duration

	// SnapshotInterval, SnapshotThreshold and TrailingLogs are raft's
	// snapshot settings; SnapshotRetain is how many snapshots stay on disk.
	SnapshotInterval  time.Duration
	SnapshotThreshold uint64
	TrailingLogs      uint64
	SnapshotRetain    int

	// Acks returns the transport's per-peer acknowledgement records
	// (converted from its own type). The lease is computed from it; required.
	// It is called from the lease loop every HeartbeatTimeout/10 on the
	// leader and must not block.
	Acks func() map[raft.ServerAddress]Ack
	// Revision returns the membership revision this node has applied (the
	// raft index of the last command its state machine applied). It turns on
	// the ownership lease (see OwnershipLease): grants are extended only once
	// the node has applied the granting leader's revision. Nil: no ownership
	// leases. Called on heartbeat paths: it must be cheap and never block.
	Revision func() uint64
	// CanLead tells TransferLeadership what the replicated membership state
	// knows about a voter, beyond the raft configuration: nil when it may
	// lead; an error wrapping ErrUnknownMember when the state has no record
	// of it (raft alone decides then); one wrapping ErrMemberGone when it
	// is dead or has left; any other error when it is alive but unfit
	// (draining, its application unhealthy). Nil: the raft configuration
	// alone decides. Called on the caller's goroutine; must not block.
	CanLead func(id string) error
	// noClaimHoldoff turns the claim hold-off off (see Node.claimHoldoff):
	// only tests set it, to plant the overlap the hold-off prevents.
	noClaimHoldoff bool
	// storageFault, when set, is asked before every write to the stores
	// (op names it: "store logs", "set CurrentTerm", "write snapshot",
	// "probe", ...); an error fails that write as the disk would. Only tests
	// set it (SetStorageFault).
	storageFault func(op string) error
	// ErrPeerClosed and ErrGoodbye are the transport's sentinel errors of
	// Hold (a stream closed by the peer, a graceful goodbye), compared with
	// errors.Is. Required when FastFailover is on.
	ErrPeerClosed error
	ErrGoodbye    error

	// Logger is the base logger (its format and level are the caller's); the
	// node adds "node" and "term" to every line, raft's own lines included.
	// Nil: hclog's default logger.
	Logger hclog.Logger
	// Registerer receives the node's metrics; nil: no metrics registered.
	// They are unregistered on Shutdown/Close, so a node restarted in the
	// same process may reuse it.
	Registerer prometheus.Registerer
}

// DefaultConfig returns the default timings and settings; identity, DataDir,
// Bootstrap and the transport hooks are left for the caller.
func DefaultConfig() Config {
	return Config{
		HeartbeatTimeout:   DefaultHeartbeatTimeout,
		HeartbeatInterval:  DefaultHeartbeatInterval,
		ElectionTimeout:    DefaultElectionTimeout,
		LeaderLeaseTimeout: DefaultLeaderLeaseTimeout,
		CommitTimeout:      DefaultCommitTimeout,
		LeaseDuration:      DefaultLeaseDuration,
		LeaseDriftMargin:   DefaultLeaseDriftMargin,
		FastFailover:       true,
		FailoverRankStep:   DefaultFailoverRankStep,
		RedialTimeout:      DefaultRedialTimeout,
		ConfirmTimeout:     DefaultConfirmTimeout,
		SnapshotInterval:   DefaultSnapshotInterval,
		SnapshotThreshold:  DefaultSnapshotThreshold,
		TrailingLogs:       DefaultTrailingLogs,
		SnapshotRetain:     DefaultSnapshotRetain,
	}
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
}

// Validate checks the config: identity present, timings consistent (the
// lease rules and raft's own rules), the bootstrap list well formed. The
// error wraps ErrInvalidConfig and names the field.
func (c Config) Validate() error {
	switch {
	case c.ID == "":
		return invalid("ID is empty")
	case c.ClusterID == "":
		return invalid("ClusterID is empty")
	case c.DataDir == "":
		return invalid("DataDir is empty")
	case c.Acks == nil:
		return invalid("Acks is nil (the lease needs the transport's ack records)")
	case c.FastFailover && (c.ErrPeerClosed == nil || c.ErrGoodbye == nil):
		return invalid("FastFailover needs ErrPeerClosed and ErrGoodbye (the transport's Hold errors)")
	case c.LeaseDuration <= 0:
		return invalid("LeaseDuration %s must be > 0", c.LeaseDuration)
	case c.HeartbeatInterval < 0 || 4*c.HeartbeatInterval > c.HeartbeatTimeout:
		return invalid("HeartbeatInterval (%s) must be >= 0 and <= HeartbeatTimeout/4 (%s): heartbeats come up to 2x the interval apart", c.HeartbeatInterval, c.HeartbeatTimeout/4)
	case c.LeaderLeaseTimeout < 4*c.heartbeatInterval():
		return invalid("LeaderLeaseTimeout (%s) must be >= 4 x the heartbeat interval (%s): heartbeats come up to 2x the interval apart, and a leader that misses its quorum for LeaderLeaseTimeout steps down", c.LeaderLeaseTimeout, c.heartbeatInterval())
	case c.LeaseDuration < 3*c.heartbeatInterval():
		return invalid("LeaseDuration (%s) must be >= 3 x the heartbeat interval (%s), or the lease lapses between heartbeats", c.LeaseDuration, c.heartbeatInterval())
	case c.LeaseDuration > c.HeartbeatTimeout:
		return invalid("LeaseDuration (%s) must be <= HeartbeatTimeout (%s): a longer lease could overlap the next leader", c.LeaseDuration, c.HeartbeatTimeout)
	case c.OwnershipLease < 0 || (c.OwnershipLease > 0 && c.OwnershipLease < 3*c.heartbeatInterval()):
		return invalid("OwnershipLease (%s) must be 0 (the heartbeat timeout) or >= 3 x the heartbeat interval (%s), or it lapses between grants", c.OwnershipLease, c.heartbeatInterval())
	case c.LeaseDriftMargin < 0 || c.LeaseDriftMargin >= c.LeaseDuration:
		return invalid("LeaseDriftMargin (%s) must be >= 0 and < LeaseDuration (%s)", c.LeaseDriftMargin, c.LeaseDuration)
	case c.FailoverRankStep < 0:
		return invalid("FailoverRankStep %s must be >= 0", c.FailoverRankStep)
	case c.FastFailover && c.RedialTimeout <= 0:
		return invalid("RedialTimeout %s must be > 0", c.RedialTimeout)
	case c.FastFailover && c.ConfirmTimeout <= 0:
		return invalid("ConfirmTimeout %s must be > 0", c.ConfirmTimeout)
	case c.SnapshotRetain < 1:
		return invalid("SnapshotRetain %d must be >= 1", c.SnapshotRetain)
	}
	if err := validatePeers(c.Bootstrap); err != nil {
		return err
	}
	if err := raft.ValidateConfig(c.raftConfig()); err != nil {
		return invalid("%v", err)
	}
	return nil
}

func validatePeers(peers []Peer) error {
	if len(peers) == 0 {
		return nil
	}
	ids := make(map[string]bool, len(peers))
	addrs := make(map[string]bool, len(peers))
	voters := 0
	for i, p := range peers {
		switch {
		case p.ID == "":
			return invalid("Bootstrap[%d]: empty ID", i)
		case p.Address == "":
			return invalid("Bootstrap[%d] (%s): empty Address", i, p.ID)
		case ids[p.ID]:
			return invalid("Bootstrap: duplicate ID %q", p.ID)
		case addrs[p.Address]:
			return invalid("Bootstrap: duplicate Address %q", p.Address)
		}
		ids[p.ID], addrs[p.Address] = true, true
		if p.Voter {
			voters++
		}
	}
	if voters == 0 {
		return invalid("Bootstrap lists no voter")
	}
	return nil
}

// raftConfig derives raft's config; Logger is set by New.
func (c Config) raftConfig() *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.ID)
	rc.HeartbeatTimeout = c.HeartbeatTimeout
	rc.ElectionTimeout = c.ElectionTimeout
	rc.LeaderLeaseTimeout = c.LeaderLeaseTimeout
	rc.CommitTimeout = c.CommitTimeout
	rc.SnapshotInterval = c.SnapshotInterval
	rc.SnapshotThreshold = c.SnapshotThreshold
	rc.TrailingLogs = c.TrailingLogs
	// Pre-vote stays on: raft enables it when the transport implements
	// raft.WithPreVote (api.go, NewRaft) and PreVoteDisabled is false.
	rc.PreVoteDisabled = false
	return rc
}

// heartbeatInterval is the leader's heartbeat period (see HeartbeatInterval).
func (c Config) heartbeatInterval() time.Duration {
	if c.HeartbeatInterval > 0 {
		return c.HeartbeatInterval
	}
	return c.HeartbeatTimeout / 10
}

// reloadable returns raft's run-time timing for a node in the given role: a
// leader runs with HeartbeatTimeout = 10 x the heartbeat interval (raft
// heartbeats every HeartbeatTimeout/10; raft wants ElectionTimeout >=
// HeartbeatTimeout, and a leader does not use it); any other role with the
// configured timeouts.
func (c Config) reloadable(leader bool) raft.ReloadableConfig {
	rc := raft.ReloadableConfig{
		TrailingLogs:      c.TrailingLogs,
		SnapshotInterval:  c.SnapshotInterval,
		SnapshotThreshold: c.SnapshotThreshold,
		HeartbeatTimeout:  c.HeartbeatTimeout,
		ElectionTimeout:   c.ElectionTimeout,
	}
	if leader {
		rc.HeartbeatTimeout = 10 * c.heartbeatInterval()
		rc.ElectionTimeout = max(rc.ElectionTimeout, rc.HeartbeatTimeout)
	}
	return rc
}

// errorsIs is errors.Is that treats a nil target as "never".
func errorsIs(err, target error) bool {
	return target != nil && errors.Is(err, target)
}
