package api

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/membership"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// CoordinatorConfig configures a Coordinator server.
type CoordinatorConfig struct {
	// ID and ClusterID name this node in Status answers. Required.
	ID        string
	ClusterID string
	// Election is the raft node the server reads. Required.
	Election Election
	// LastContact, when set, returns when this node last heard a reply from
	// the peer at a raft address (zero if never); Members reports it. The
	// node wires it to the transport's heartbeat acks. Optional.
	LastContact func(addr string) time.Time
	// Membership is the replicated membership state (the node's raft FSM).
	// nil: the resource, assignment, drain and application-health calls
	// answer Unimplemented and Members lists only the raft configuration.
	Membership *membership.FSM
	// Applier commits encoded commands on this node (election's Apply; it
	// fails with election.ErrNotLeader on a follower, and the write is then
	// forwarded to the leader's peer address as ClusterAdmin.ForwardCommand,
	// which Admin serves). Required with Membership.
	Applier membership.Applier
	// AppHeartbeat records a heartbeat of the local application with its
	// time to live. nil: AppHeartbeat answers Unimplemented.
	AppHeartbeat func(ttl time.Duration)
	// Admin serves the Coordinator's Join and Remove: they run (or are
	// forwarded to the leader's peer port) exactly as ClusterAdmin's. nil:
	// Join and Remove answer Unimplemented. NewCoordinator attaches the
	// Coordinator to it: the Admin's ForwardCommand (the writes followers
	// forward to this node) commits through the Coordinator.
	Admin *Admin
	// Leave makes this node leave the cluster (drain, hand off leadership,
	// record it left, take it out of the raft configuration) and returns the
	// number of resources it handed off, once the departure is committed;
	// the node stops afterwards, asynchronously. Its error should be a gRPC
	// status error (FailedPrecondition for a repeat while a leave runs).
	// nil: Leave answers Unimplemented.
	Leave func(ctx context.Context) (moved int, err error)
	// ReadTimeout bounds a consistent read's wait for a read index and for
	// this node to apply up to it (default DefaultReadTimeout, within the
	// caller's deadline).
	ReadTimeout time.Duration
	// ForwardTimeout bounds a write forwarded to the leader (default 10s, on
	// top of the caller's deadline).
	ForwardTimeout time.Duration
	// DialOptions are used to reach the leader: its peer port for forwarded
	// writes (ClusterAdmin.ForwardCommand) and read indexes
	// (ClusterAdmin.ReadIndex), its client port for a forwarded step-down or
	// transfer. nil: plaintext.
	DialOptions []grpc.DialOption
	// Quota bounds the replicated state, checked by the leader before it
	// proposes a registration (see Quota). Zero: no bound.
	Quota Quota
	// Logger receives stream open/close logs at debug level. nil: discarded.
	Logger hclog.Logger
}

// DefaultCoordinatorConfig returns a config with a null logger; the caller
// sets ID, ClusterID and Election.
func DefaultCoordinatorConfig() CoordinatorConfig {
	return CoordinatorConfig{ClusterID: "heartbeat", ForwardTimeout: 10 * time.Second, Logger: hclog.NewNullLogger()}
}

// Validate reports a missing required field, wrapped in ErrInvalidConfig.
func (c CoordinatorConfig) Validate() error {
	switch {
	case c.ID == "":
		return fmt.Errorf("%w: coordinator: ID is empty", ErrInvalidConfig)
	case c.ClusterID == "":
		return fmt.Errorf("%w: coordinator: ClusterID is empty", ErrInvalidConfig)
	case c.Election == nil:
		return fmt.Errorf("%w: coordinator: Election is nil", ErrInvalidConfig)
	case c.Membership != nil && c.Applier == nil:
		return fmt.Errorf("%w: coordinator: Membership needs an Applier", ErrInvalidConfig)
	case c.ForwardTimeout < 0:
		return fmt.Errorf("%w: coordinator: ForwardTimeout is negative", ErrInvalidConfig)
	case c.Quota.MaxBytes < 0 || c.Quota.MaxResources < 0:
		return fmt.Errorf("%w: coordinator: Quota is negative", ErrInvalidConfig)
	}
	return nil
}

// Coordinator implements heartbeatpb.CoordinatorServer. Register it on a
// grpc.Server with Register; Close it before stopping that server, or
// GracefulStop waits for open watch streams forever. It keeps one client
// connection per leader address it forwarded calls to, closed by Close.
type Coordinator struct {
	heartbeatpb.UnimplementedCoordinatorServer

	cfg       CoordinatorConfig
	closeOnce sync.Once
	done      chan struct{} // closed by Close: every watch returns

	connMu sync.Mutex
	conns  map[string]*grpc.ClientConn // leader address -> connection; nil once closed

	alarms quotaAlarms // the quota alarms (QuotaAlarm)

	reads      *readIndexer       // read indexes for consistent reads
	readCancel context.CancelFunc // ends read-index rounds on Close
	running    context.Context    // ends on Close (readCancel), after done is closed
}

// NewCoordinator validates cfg and returns a server.
func NewCoordinator(cfg CoordinatorConfig) (*Coordinator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.ForwardTimeout == 0 {
		cfg.ForwardTimeout = DefaultCoordinatorConfig().ForwardTimeout
	}
	if cfg.DialOptions == nil {
		cfg.DialOptions = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = DefaultReadTimeout
	}
	c := &Coordinator{cfg: cfg, done: make(chan struct{}), conns: make(map[string]*grpc.ClientConn)}
	var ctx context.Context
	ctx, c.readCancel = context.WithCancel(context.Background())
	c.running = ctx
	c.reads = newReadIndexer(ctx, cfg.ID, cfg.ClusterID, cfg.Election, cfg.DialOptions, cfg.ReadTimeout)
	if cfg.Admin != nil {
		cfg.Admin.coord.Store(c)
	}
	return c, nil
}

// Register adds the Coordinator service to s (before s.Serve).
func (c *Coordinator) Register(s grpc.ServiceRegistrar) {
	heartbeatpb.RegisterCoordinatorServer(s, c)
}

// Close ends every open watch stream with codes.Unavailable and makes new
// ones fail, closes the forwarding connections, and makes writes fail with
// Unavailable. Reads keep working. Safe to call more than once.
func (c *Coordinator) Close() {
	c.closeOnce.Do(func() {
		close(c.done)
		c.closeConns()
		c.readCancel()
		c.reads.close()
	})
}

// GetStatus answers with this node's view; see StatusSnapshot.
func (c *Coordinator) GetStatus(ctx context.Context, req *heartbeatpb.GetStatusRequest) (*heartbeatpb.GetStatusResponse, error) {
	info, err := c.read(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	resp := c.StatusSnapshot()
	resp.Read = info
	return resp, nil
}

// StatusSnapshot builds this node's status from the election's leadership
// view and raft's indexes. It never blocks on raft's main loop; the
// embedding API's Node.Status reads the same snapshot.
func (c *Coordinator) StatusSnapshot() *heartbeatpb.GetStatusResponse {
	l := c.cfg.Election.Leadership()
	resp := &heartbeatpb.GetStatusResponse{
		NodeId:       c.cfg.ID,
		State:        heartbeatpb.RaftStateOf(l.State),
		Term:         l.Term,
		Leader:       c.leaderPB(l),
		FencingToken: l.FencingToken,
		IsLeader:     l.IsLeader,
		ClusterId:    c.cfg.ClusterID,
	}
	if l.IsLeader && !l.LeaseUntil.IsZero() {
		resp.LeaseUntil = timestamppb.New(l.LeaseUntil)
	}
	if r := c.cfg.Election.Raft(); r != nil {
		resp.CommitIndex = r.CommitIndex()
		resp.AppliedIndex = r.AppliedIndex()
		if resp.Term == 0 {
			resp.Term = r.CurrentTerm()
		}
	}
	if members, err := c.cfg.Election.Members(); err == nil {
		for _, m := range members {
			if m.ID == c.cfg.ID {
				resp.Suffrage = heartbeatpb.SuffrageOf(m.Suffrage)
			}
		}
	}
	return resp
}

// ListMembers lists the raft configuration as this node knows it, merged
// with the membership state (state, health, drain, addresses) when there is
// one.
func (c *Coordinator) ListMembers(ctx context.Context, req *heartbeatpb.ListMembersRequest) (*heartbeatpb.ListMembersResponse, error) {
	info, err := c.read(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	raftMembers, err := c.raftMembers()
	if err != nil {
		return nil, toStatus(err)
	}
	members, rev := mergeMembersAt(raftMembers, c.cfg.Membership)
	return &heartbeatpb.ListMembersResponse{Members: members, Revision: rev, Read: info}, nil
}

// MembersSnapshot returns the members as the API reports them, sorted by
// id: the raft configuration merged with the membership records (a member
// the raft configuration no longer holds, for example one removed after it
// left, is listed from its record alone). The embedding API's Node.Members
// reads the same list.
func (c *Coordinator) MembersSnapshot() ([]*heartbeatpb.Member, error) {
	out, err := c.raftMembers()
	if err != nil {
		return nil, err
	}
	return mergeMembers(out, c.cfg.Membership), nil
}

// raftMembers lists the raft configuration with last contacts.
func (c *Coordinator) raftMembers() ([]*heartbeatpb.Member, error) {
	ms, err := c.cfg.Election.Members()
	if err != nil {
		return nil, err
	}
	out := make([]*heartbeatpb.Member, 0, len(ms))
	for _, m := range ms {
		pm := &heartbeatpb.Member{
			NodeId:      m.ID,
			PeerAddress: m.Address,
			Suffrage:    heartbeatpb.SuffrageOf(m.Suffrage),
			RaftLeader:  m.Leader,
		}
		if c.cfg.LastContact != nil && m.ID != c.cfg.ID {
			if t := c.cfg.LastContact(m.Address); !t.IsZero() {
				pm.LastContact = timestamppb.New(t)
			}
		}
		out = append(out, pm)
	}
	return out, nil
}

// WatchLeader sends the current leadership first, then every change, until
// the client goes away or the server closes. A slow client never holds up the
// node: the election watcher keeps only the latest state, and the next event
// sent after a drop carries fell_behind=true.
func (c *Coordinator) WatchLeader(req *heartbeatpb.WatchLeaderRequest, stream grpc.ServerStreamingServer[heartbeatpb.WatchLeaderResponse]) error {
	select {
	case <-c.done:
		return status.Error(codes.Unavailable, ErrClosed.Error())
	default:
	}
	info, err := c.read(stream.Context(), req.GetConsistency())
	if err != nil {
		return err
	}
	w := c.cfg.Election.Watch()
	if w == nil {
		return status.Error(codes.Unavailable, "leadership watch: node not started")
	}
	defer w.Close()
	c.cfg.Logger.Debug("leader watch opened")
	defer c.cfg.Logger.Debug("leader watch closed")

	// The watcher starts with the view current at its creation; take that
	// one (or the latest, if it already moved on) as the first event, and
	// count drops only from here.
	var last election.Leadership
	select {
	case l, ok := <-w.C():
		if !ok {
			return status.Error(codes.Unavailable, "leadership watch ended: node shutting down")
		}
		last = l
	default:
		last = c.cfg.Election.Leadership()
	}
	dropped := w.Dropped()
	first := &heartbeatpb.WatchLeaderResponse{Leadership: c.leadershipOf(last, time.Now()), Read: info}
	if err := stream.Send(first); err != nil {
		return err
	}
	ctx := stream.Context()
	// While this node leads, a renewal with the lease's remaining time goes
	// out every leaseRenewEvery (the watcher itself is not told of renewals).
	renew := time.NewTicker(leaseRenewEvery)
	defer renew.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.done:
			return status.Error(codes.Unavailable, ErrClosed.Error())
		case <-renew.C:
			if !last.IsLeader {
				continue
			}
			l := c.cfg.Election.Leadership()
			if !sameLeadership(l, last) {
				continue // the watcher brings the change
			}
			if err := stream.Send(&heartbeatpb.WatchLeaderResponse{Leadership: c.leadershipOf(l, time.Now())}); err != nil {
				return err
			}
		case l, ok := <-w.C():
			if !ok {
				return status.Error(codes.Unavailable, "leadership watch ended: node shutting down")
			}
			now := time.Now()
			d := w.Dropped()
			fell := d != dropped
			dropped = d
			if sameLeadership(l, last) && !fell {
				continue
			}
			last = l
			if err := stream.Send(&heartbeatpb.WatchLeaderResponse{Leadership: c.leadershipOf(l, now), FellBehind: fell}); err != nil {
				return err
			}
		}
	}
}

// sameLeadership reports whether two views describe the same leadership. A
// lease renewal alone (LeaseUntil moving on) is not a change worth an event.
func sameLeadership(a, b election.Leadership) bool {
	return a.LeaderID == b.LeaderID && a.LeaderAddr == b.LeaderAddr && a.Term == b.Term &&
		a.FencingToken == b.FencingToken && a.IsLeader == b.IsLeader
}

// leadershipOf is leadership with the leader's client and HTTP addresses.
func (c *Coordinator) leadershipOf(l election.Leadership, observed time.Time) *heartbeatpb.Leadership {
	ev := leadership(l, observed)
	ev.Leader = c.leaderPB(l)
	return ev
}

// leadership converts a leadership view into its wire form (without the
// leader's client and HTTP addresses: see leadershipOf).
func leadership(l election.Leadership, observed time.Time) *heartbeatpb.Leadership {
	ev := &heartbeatpb.Leadership{
		Leader:       &heartbeatpb.NodeRef{NodeId: l.LeaderID, PeerAddress: l.LeaderAddr},
		Term:         l.Term,
		FencingToken: l.FencingToken,
		IsLeader:     l.IsLeader,
		Observed:     timestamppb.New(observed),
	}
	if l.IsLeader && !l.LeaseUntil.IsZero() {
		ev.LeaseUntil = timestamppb.New(l.LeaseUntil)
		ev.LeaseRemaining = durationpb.New(remaining(l.LeaseUntil))
	}
	return ev
}

// leaseRenewEvery is how often a leadership watch on the leader sends the
// lease's remaining time again: the default heartbeat interval, at which the
// lease itself is renewed.
const leaseRenewEvery = 50 * time.Millisecond
