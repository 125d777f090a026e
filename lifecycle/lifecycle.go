package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/membership"
	mpb "github.com/heartbeat-sidecar/heartbeat/proto/membershippb"
	"github.com/heartbeat-sidecar/heartbeat/proto/raftpb"
)

// Sentinel errors.
var (
	// ErrInvalidConfig wraps every Config.Validate failure, and
	// PrepareRejoin's when a node that left has nobody to join through.
	ErrInvalidConfig = errors.New("lifecycle: invalid config")
	// ErrJoinRefused: the cluster refused this node's join for good (wrong
	// cluster, id or address taken, malformed request). The node stops.
	ErrJoinRefused = errors.New("lifecycle: join refused")
	// ErrRemoved: the leader removed this node from the cluster while it
	// ran. The node stops; started again, it asks to join anew.
	ErrRemoved = errors.New("lifecycle: removed from the cluster")
)

// Config configures the local node's lifecycle.
type Config struct {
	// ID, ClusterID and DataDir are the node's. Required.
	ID, ClusterID, DataDir string
	// PeerAddr is the node's advertised peer address (sent with a join).
	PeerAddr string
	// ClientAddr and HTTPAddr are the dialable addresses the node
	// registers in its member record.
	ClientAddr, HTTPAddr string
	// LeaderPriority, when not nil, is registered with the member record.
	LeaderPriority *uint32
	// Join are the addresses asked to add this node (see PrepareRejoin for
	// a node that left). Voter: it joins as a voter.
	Join  []string
	Voter bool
	// DialOptions are used to reach members' peer ports for a join (nil:
	// plaintext). With TLS they carry the node's certificate.
	DialOptions []grpc.DialOption
	// Rejoin: the node left the cluster before this start and joins again
	// (PrepareRejoin's answer).
	Rejoin bool
	// JoinRetryMax caps the backoff between join rounds. Default 2s.
	JoinRetryMax time.Duration
	// DrainTimeout bounds the drain of a planned stop or a Leave. Default 5s.
	DrainTimeout time.Duration
	// Logger; nil: no logs.
	Logger hclog.Logger
}

// DefaultConfig returns the defaults (the node's ids and addresses still to
// set).
func DefaultConfig() Config {
	return Config{JoinRetryMax: 2 * time.Second, DrainTimeout: 5 * time.Second}
}

// Validate fills zero durations with the defaults' and checks the rest.
func (c *Config) Validate() error {
	d := DefaultConfig()
	if c.JoinRetryMax == 0 {
		c.JoinRetryMax = d.JoinRetryMax
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = d.DrainTimeout
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	switch {
	case c.ID == "" || c.ClusterID == "" || c.DataDir == "":
		return fmt.Errorf("%w: ID, ClusterID and DataDir are required", ErrInvalidConfig)
	case c.JoinRetryMax < 0 || c.DrainTimeout < 0:
		return fmt.Errorf("%w: JoinRetryMax and DrainTimeout may not be negative", ErrInvalidConfig)
	}
	return nil
}

// Election is what the lifecycle needs of the raft node; *election.Node
// implements it.
type Election interface {
	Leadership() election.Leadership
	Members() ([]election.Member, error)
	Apply(ctx context.Context, data []byte) (any, error)
	TransferLeadership(ctx context.Context, target string) (election.Leadership, error)
}

// State is the replicated membership state; *membership.FSM implements it.
type State interface {
	Read(fn func(*membership.State))
	WaitFor(ctx context.Context, cond func(*membership.State) bool) error
}

// Committer commits a membership command through the leader (forwarded
// from a follower); errors are gRPC status errors. *api.Coordinator
// implements it.
type Committer interface {
	Commit(ctx context.Context, cmd *mpb.Command) (*membership.Result, error)
}

// Remover removes a member from the raft configuration through the leader;
// the node's ClusterAdmin server (*api.Admin) implements it.
type Remover interface {
	Remove(ctx context.Context, req *raftpb.RemoveRequest) (*raftpb.RemoveResponse, error)
}

// Local is the local node's membership lifecycle. Its methods are safe for
// concurrent use.
type Local struct {
	cfg     Config
	el      Election
	state   State // nil: no membership state (another FSM)
	commit  Committer
	admin   Remover
	fail    func(error)
	stopped func() bool

	leaving  atomic.Bool   // a Leave runs or has finished
	left     chan struct{} // closed once Leave took the node out of the cluster
	leftOnce sync.Once
}

// New builds the lifecycle. state and commit are nil when the node runs
// without the membership state. fail is told an unrecoverable error (a
// refused join, a removal); stopped reports that the node is stopping.
func New(cfg Config, el Election, state State, commit Committer, admin Remover, fail func(error), stopped func() bool) (*Local, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if el == nil || admin == nil || fail == nil || stopped == nil {
		return nil, fmt.Errorf("%w: election, admin, fail and stopped are required", ErrInvalidConfig)
	}
	if (state == nil) != (commit == nil) {
		return nil, fmt.Errorf("%w: state and commit go together", ErrInvalidConfig)
	}
	return &Local{cfg: cfg, el: el, state: state, commit: commit, admin: admin, fail: fail, stopped: stopped,
		left: make(chan struct{})}, nil
}

// Leaving reports whether a Leave runs or has finished.
func (l *Local) Leaving() bool { return l.leaving.Load() }

// Left is closed once Leave has taken this node out of the cluster.
func (l *Local) Left() <-chan struct{} { return l.left }

// Self returns this node's member record (false without the membership
// state or before it registered).
func (l *Local) Self() (membership.Member, bool) { return l.Record(l.cfg.ID) }

// Record returns a member's record (false without the membership state).
func (l *Local) Record(id string) (membership.Member, bool) {
	if l.state == nil {
		return membership.Member{}, false
	}
	var m membership.Member
	var ok bool
	l.state.Read(func(s *membership.State) { m, ok = s.Member(id) })
	return m, ok
}

// NumOwned is the number of resources id owns (0 without the state).
func (l *Local) NumOwned(id string) int {
	if l.state == nil {
		return 0
	}
	var c int
	l.state.Read(func(s *membership.State) { c = s.NumOwned(id) })
	return c
}

// IsMember reports whether this node is in the raft configuration it knows.
func (l *Local) IsMember() bool {
	ms, err := l.el.Members()
	if err != nil {
		return false
	}
	for _, m := range ms {
		if m.ID == l.cfg.ID {
			return true
		}
	}
	return false
}

// NeedsJoin reports whether the node must ask the cluster to add it: it
// has Join addresses and is not in its own configuration, or it rejoins
// (even when its stale configuration still lists it), or it joins as a
// voter and is still a non-voter (a learner restarted before its promotion).
func (l *Local) NeedsJoin() bool {
	if len(l.cfg.Join) == 0 {
		return false
	}
	voter, member := l.suffrage()
	return l.cfg.Rejoin || !member || l.cfg.Voter && !voter
}
