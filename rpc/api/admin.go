package api

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/pki"
	"github.com/heartbeat-sidecar/heartbeat/proto/raftpb"
)

// AdminConfig configures a ClusterAdmin server.
type AdminConfig struct {
	// ID and ClusterID name this node; a Join for another cluster id is
	// refused with codes.FailedPrecondition. Required.
	ID        string
	ClusterID string
	// Election is the raft node whose configuration changes. Required.
	Election Election
	// ForwardTimeout bounds one call forwarded to the leader, on top of the
	// caller's own deadline (default 15s: a join waits for a commit).
	ForwardTimeout time.Duration
	// DialOptions are used to reach the leader's peer port when forwarding.
	// nil: plaintext (insecure credentials), as the raft transport uses.
	DialOptions []grpc.DialOption
	// BeforeRemove, when set, runs on the leader before it removes a member
	// from the raft configuration; the node uses it to record the member as
	// left (not dead) in the membership state. Its error is logged and the
	// removal goes on.
	BeforeRemove func(ctx context.Context, id string) error
	// OnRemoved, when set, is called when the leader tells this node that it
	// was removed from the configuration (ClusterAdmin.Removed), once the
	// notice is checked: sent by the raft leader this node knows, for a
	// removal that is committed (see Admin.Removed). nil: the call answers
	// Unimplemented.
	OnRemoved func(notice *raftpb.RemovedRequest) error
	// NotifyTimeout bounds the leader's notice to a node it removed (default
	// 1s; the removal is committed whether or not the notice arrives).
	NotifyTimeout time.Duration
	// Logger receives a line per membership change. nil: discarded.
	Logger hclog.Logger
}

// DefaultAdminConfig returns defaults; the caller sets ID, ClusterID and Election.
func DefaultAdminConfig() AdminConfig {
	return AdminConfig{ClusterID: "heartbeat", ForwardTimeout: 15 * time.Second, Logger: hclog.NewNullLogger()}
}

// Validate reports a missing required field, wrapped in ErrInvalidConfig.
func (c AdminConfig) Validate() error {
	switch {
	case c.ID == "":
		return fmt.Errorf("%w: admin: ID is empty", ErrInvalidConfig)
	case c.ClusterID == "":
		return fmt.Errorf("%w: admin: ClusterID is empty", ErrInvalidConfig)
	case c.Election == nil:
		return fmt.Errorf("%w: admin: Election is nil", ErrInvalidConfig)
	case c.ForwardTimeout < 0:
		return fmt.Errorf("%w: admin: ForwardTimeout is negative", ErrInvalidConfig)
	}
	return nil
}

// Admin implements raftpb.ClusterAdminServer. It holds no goroutines or
// connections between calls: a forwarded call dials the leader and closes
// the connection when it returns.
type Admin struct {
	raftpb.UnimplementedClusterAdminServer
	cfg AdminConfig

	readIndexServed atomic.Uint64 // ReadIndex calls served (readindex.go)

	// coord commits the writes followers forward (ForwardCommand); set by
	// NewCoordinator when its config names this Admin.
	coord atomic.Pointer[Coordinator]
}

// NewAdmin validates cfg and returns a server.
func NewAdmin(cfg AdminConfig) (*Admin, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.ForwardTimeout == 0 {
		cfg.ForwardTimeout = DefaultAdminConfig().ForwardTimeout
	}
	if cfg.NotifyTimeout <= 0 {
		cfg.NotifyTimeout = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.DialOptions == nil {
		cfg.DialOptions = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	return &Admin{cfg: cfg}, nil
}

// Register adds the ClusterAdmin service to s (before s.Serve); the node
// passes it to the transport's Config.Register.
func (a *Admin) Register(s grpc.ServiceRegistrar) {
	raftpb.RegisterClusterAdminServer(s, a)
}

// Join adds a node to the raft configuration, forwarding to the leader when
// this node does not lead. Joining again with the same id and address succeeds.
func (a *Admin) Join(ctx context.Context, req *raftpb.JoinRequest) (*raftpb.JoinResponse, error) {
	switch {
	case req.GetId() == "":
		return nil, status.Error(codes.InvalidArgument, "join: id is empty")
	case req.GetPeerAddress() == "":
		return nil, status.Error(codes.InvalidArgument, "join: peer_address is empty")
	case req.GetClusterId() == "":
		return nil, status.Error(codes.InvalidArgument, "join: cluster_id is empty")
	case req.GetClusterId() != a.cfg.ClusterID:
		return nil, statusWithReason(codes.FailedPrecondition, ReasonWrongCluster, nil,
			"join: wrong cluster: %q asks to join cluster %q, this node is in cluster %q",
			req.GetId(), req.GetClusterId(), a.cfg.ClusterID)
	}
	// With TLS a node joins only as itself: the certificate that carried the
	// request must name the id it asks to add (a member that forwards the
	// request to the leader checked that already).
	if id, ok := pki.IdentityFromContext(ctx); ok && !isForwarded(ctx) && (id.Kind != pki.KindNode || id.Name != req.GetId()) {
		a.cfg.Logger.Warn("join refused: the certificate names another node", "id", req.GetId(), "certificate", id.String())
		return nil, status.Errorf(codes.PermissionDenied, "join: %s asks to add node %q: a node joins only as itself", id, req.GetId())
	}
	err := a.cfg.Election.Join(ctx, req.GetId(), req.GetPeerAddress(), req.GetVoter())
	if errors.Is(err, election.ErrNotLeader) {
		return forward(ctx, a, err, func(ctx context.Context, c raftpb.ClusterAdminClient) (*raftpb.JoinResponse, error) {
			return c.Join(ctx, req)
		})
	}
	if err != nil {
		a.cfg.Logger.Warn("join refused", "id", req.GetId(), "address", req.GetPeerAddress(), "error", err)
		return nil, toStatus(fmt.Errorf("join %s: %w", req.GetId(), err))
	}
	a.cfg.Logger.Info("node joined", "id", req.GetId(), "address", req.GetPeerAddress(), "voter", req.GetVoter())
	return &raftpb.JoinResponse{LeaderId: a.cfg.ID, Index: a.lastIndex()}, nil
}

// Remove takes a node out of the raft configuration, forwarding to the
// leader when this node does not lead. An id not in the configuration gives
// codes.NotFound.
func (a *Admin) Remove(ctx context.Context, req *raftpb.RemoveRequest) (*raftpb.RemoveResponse, error) {
	if req.GetId() == "" {
		return nil, status.Error(codes.InvalidArgument, "remove: id is empty")
	}
	// The election treats removing a non-member as done; the API says
	// NotFound, checked where the configuration is authoritative: on the leader.
	var target string // the removed node's peer address, for the notice
	if l := a.cfg.Election.Leadership(); l.LeaderID == a.cfg.ID && l.LeaderID != "" {
		members, err := a.cfg.Election.Members()
		if err != nil {
			return nil, toStatus(fmt.Errorf("remove %s: %w", req.GetId(), err))
		}
		if !hasMember(members, req.GetId()) {
			return nil, status.Errorf(codes.NotFound, "remove: %q is not a member: %v", req.GetId(), election.ErrUnknownMember)
		}
		for _, m := range members {
			if m.ID == req.GetId() {
				target = m.Address
			}
		}
		// The quorum guard first: a refused removal must not leave the
		// member recorded as left.
		if err := a.cfg.Election.CheckRemove(ctx, req.GetId()); err != nil && !errors.Is(err, election.ErrNotLeader) {
			a.cfg.Logger.Warn("remove refused", "id", req.GetId(), "error", err)
			return nil, toStatus(fmt.Errorf("remove %s: %w", req.GetId(), err))
		}
		if a.cfg.BeforeRemove != nil {
			if err := a.cfg.BeforeRemove(ctx, req.GetId()); err != nil {
				a.cfg.Logger.Warn("before remove", "id", req.GetId(), "error", err)
			}
		}
	}
	err := a.cfg.Election.Remove(ctx, req.GetId())
	if errors.Is(err, election.ErrNotLeader) {
		return forward(ctx, a, err, func(ctx context.Context, c raftpb.ClusterAdminClient) (*raftpb.RemoveResponse, error) {
			return c.Remove(ctx, req)
		})
	}
	if err != nil {
		return nil, toStatus(fmt.Errorf("remove %s: %w", req.GetId(), err))
	}
	index := a.lastIndex()
	a.cfg.Logger.Info("node removed", "id", req.GetId(), "index", index)
	if target != "" && req.GetId() != a.cfg.ID {
		a.notifyRemoved(ctx, target, req.GetId(), index)
	}
	return &raftpb.RemoveResponse{Index: index}, nil
}

// notifyRemoved tells a removed node so (best effort, bounded by
// NotifyTimeout): otherwise a removed node that keeps running campaigns with
// a configuration that no longer holds it and never learns why.
func (a *Admin) notifyRemoved(ctx context.Context, addr, id string, index uint64) {
	conn, err := grpc.NewClient(addr, a.cfg.DialOptions...)
	if err != nil {
		return
	}
	defer conn.Close()
	nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.NotifyTimeout)
	defer cancel()
	nctx = OutgoingContext(nctx, a.cfg.ID, a.cfg.ClusterID)
	_, err = raftpb.NewClusterAdminClient(conn).Removed(nctx, &raftpb.RemovedRequest{
		Id: id, ClusterId: a.cfg.ClusterID, Index: index, LeaderId: a.cfg.ID,
	})
	if err != nil {
		a.cfg.Logger.Info("could not tell the removed node (it may be down)", "id", id, "address", addr, "error", err)
	}
}

// Removed is the leader's notice that this node was removed from the
// configuration; it is handed to AdminConfig.OnRemoved once checked (see
// checkRemoved). A refused notice is logged and the node keeps running.
func (a *Admin) Removed(ctx context.Context, req *raftpb.RemovedRequest) (*raftpb.RemovedResponse, error) {
	switch {
	case a.cfg.OnRemoved == nil:
		return nil, status.Error(codes.Unimplemented, "removed: not supported by this node")
	case req.GetId() != a.cfg.ID:
		return nil, status.Errorf(codes.InvalidArgument, "removed: notice for %q sent to %q", req.GetId(), a.cfg.ID)
	case req.GetClusterId() != a.cfg.ClusterID:
		return nil, status.Errorf(codes.FailedPrecondition, "removed: notice from cluster %q, this node is in %q", req.GetClusterId(), a.cfg.ClusterID)
	}
	if err := a.checkRemoved(ctx, req); err != nil {
		a.cfg.Logger.Warn("refused a removal notice; the node keeps running",
			"sender", req.GetLeaderId(), "index", req.GetIndex(), "from", callerOf(ctx), "error", err)
		return nil, err
	}
	if err := a.cfg.OnRemoved(req); err != nil {
		return nil, toStatus(err)
	}
	return &raftpb.RemovedResponse{}, nil
}

// removedConfirmWait bounds checkRemoved when the caller set no deadline.
const removedConfirmWait = 5 * time.Second

// removedPoll is how often checkRemoved looks again while the removal is
// not yet seen committed.
const removedPoll = 50 * time.Millisecond

// checkRemoved accepts a removal notice only when (a) its sender is the raft
// leader this node knows, and (b) the removal is committed: this node's own
// committed configuration (its whole log committed, up to at least the
// notice's index) no longer holds it, or else the leader, asked at the
// address this node's raft knows for it (never one from the notice), answers
// a configuration without this node at a commit index at or past the
// notice's. A removed node rarely learns the commit of its own removal (the
// leader stops replicating to it once the change is appended), hence the
// question to the leader. While neither holds it looks again until ctx ends
// (within two thirds of the time its deadline leaves, at most
// removedConfirmWait). Errors: PermissionDenied for a sender that
// is not the leader, FailedPrecondition for a removal not (seen) committed.
func (a *Admin) checkRemoved(ctx context.Context, req *raftpb.RemovedRequest) error {
	r := a.cfg.Election.Raft()
	if r == nil {
		return status.Error(codes.FailedPrecondition, "removed: this node's raft is not running")
	}
	leaderAddr, leaderID := r.LeaderWithID()
	switch {
	case req.GetLeaderId() == "":
		return status.Error(codes.PermissionDenied, "removed: the notice names no sender")
	case leaderID == "":
		return status.Errorf(codes.FailedPrecondition, "removed: notice from %q, but this node knows no leader", req.GetLeaderId())
	case string(leaderID) != req.GetLeaderId():
		return status.Errorf(codes.PermissionDenied, "removed: notice from %q, which is not the leader (%q)", req.GetLeaderId(), leaderID)
	case string(leaderID) == a.cfg.ID:
		return status.Error(codes.PermissionDenied, "removed: this node is the leader")
	}
	// Answer before the sender gives up: wait at most two thirds of the
	// time its deadline leaves.
	budget := removedConfirmWait
	if dl, ok := ctx.Deadline(); ok {
		budget = min(budget, time.Until(dl)*2/3)
	}
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	tick := time.NewTicker(removedPoll)
	defer tick.Stop()
	var why error
	for {
		if why = a.ownRemoval(r, req.GetIndex()); why == nil {
			return nil
		}
		if why = a.leaderConfirmsRemoval(ctx, string(leaderID), string(leaderAddr), req.GetIndex()); why == nil {
			return nil
		}
		if status.Code(why) == codes.PermissionDenied {
			return why
		}
		select {
		case <-ctx.Done():
			return status.Errorf(codes.FailedPrecondition, "removed: the removal at index %d is not seen committed: %v", req.GetIndex(), why)
		case <-tick.C:
		}
	}
}

// ownRemoval checks the removal in this node's own raft state: nil when its
// log is committed up to its end and at least index, and the configuration
// at that end does not hold this node.
func (a *Admin) ownRemoval(r *raft.Raft, index uint64) error {
	// In this order: the configuration is at or below the last index,
	// which is at or below the commit index when the check passes.
	cfg := r.GetConfiguration()
	if err := cfg.Error(); err != nil {
		return fmt.Errorf("read the configuration: %w", err)
	}
	last, commit := r.LastIndex(), r.CommitIndex()
	switch {
	case commit < index || commit < last:
		return fmt.Errorf("this node has committed up to %d (last %d), the removal is at %d", commit, last, index)
	case inConfiguration(cfg.Configuration().Servers, a.cfg.ID):
		return status.Errorf(codes.FailedPrecondition, "this node's committed configuration (index %d) still holds it", commit)
	}
	return nil
}

// leaderConfirmsRemoval asks the leader at addr for its configuration.
func (a *Admin) leaderConfirmsRemoval(ctx context.Context, leaderID, addr string, index uint64) error {
	conn, err := grpc.NewClient(addr, a.cfg.DialOptions...)
	if err != nil {
		return fmt.Errorf("ask leader %s at %s: %w", leaderID, addr, err)
	}
	defer conn.Close()
	cctx := OutgoingContext(ctx, a.cfg.ID, a.cfg.ClusterID)
	resp, err := raftpb.NewClusterAdminClient(conn).GetConfiguration(cctx, &raftpb.GetConfigurationRequest{})
	if err != nil {
		return fmt.Errorf("ask leader %s at %s: %w", leaderID, addr, err)
	}
	switch {
	case resp.GetLeaderId() != leaderID:
		return status.Errorf(codes.PermissionDenied, "leader %s at %s answered as %q", leaderID, addr, resp.GetLeaderId())
	case resp.GetCommitIndex() < index:
		return fmt.Errorf("leader %s has committed up to %d, the removal is at %d", leaderID, resp.GetCommitIndex(), index)
	}
	for _, s := range resp.GetServers() {
		if s.GetId() == a.cfg.ID {
			return status.Errorf(codes.FailedPrecondition, "leader %s's configuration still holds this node", leaderID)
		}
	}
	return nil
}

// GetConfiguration serves the leader's raft configuration and commit index
// (for a removed node that checks its removal notice).
func (a *Admin) GetConfiguration(_ context.Context, _ *raftpb.GetConfigurationRequest) (*raftpb.GetConfigurationResponse, error) {
	r := a.cfg.Election.Raft()
	if r == nil {
		return nil, noLeaderStatus("configuration")
	}
	if addr, id := r.LeaderWithID(); string(id) != a.cfg.ID || r.State() != raft.Leader {
		if id == "" {
			return nil, noLeaderStatus("configuration")
		}
		return nil, notLeaderStatus(string(id), string(addr))
	}
	commit := r.CommitIndex()
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, toStatus(fmt.Errorf("configuration: %w", err))
	}
	resp := &raftpb.GetConfigurationResponse{LeaderId: a.cfg.ID, CommitIndex: commit}
	for _, s := range f.Configuration().Servers {
		resp.Servers = append(resp.Servers, &raftpb.Server{Id: string(s.ID), Address: string(s.Address), Voter: s.Suffrage == raft.Voter})
	}
	return resp, nil
}

// ForwardCommand applies a membership command a follower forwarded to this
// node, the leader (see Coordinator.Commit). Unavailable until the node's
// Coordinator is built.
func (a *Admin) ForwardCommand(ctx context.Context, req *raftpb.ForwardCommandRequest) (*raftpb.ForwardCommandResponse, error) {
	c := a.coord.Load()
	if c == nil {
		return nil, status.Error(codes.Unavailable, "forward: this node is not serving writes yet")
	}
	return c.applyForwarded(ctx, req)
}

// inConfiguration reports whether id is a server of a raft configuration.
func inConfiguration(servers []raft.Server, id string) bool {
	for _, s := range servers {
		if string(s.ID) == id {
			return true
		}
	}
	return false
}

// callerOf names the calling node from the call's metadata, for logs.
func callerOf(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	if ids := md.Get(MetadataNodeID); len(ids) > 0 {
		return ids[0]
	}
	return "unknown"
}

func hasMember(ms []election.Member, id string) bool {
	for _, m := range ms {
		if m.ID == id {
			return true
		}
	}
	return false
}

func (a *Admin) lastIndex() uint64 {
	if r := a.cfg.Election.Raft(); r != nil {
		return r.LastIndex()
	}
	return 0
}

// forward sends a call this node cannot serve (notLeader) to the leader it
// knows, once. A call that was itself forwarded is answered with
// FailedPrecondition naming the leader instead, so leadership moving during
// the call cannot make it loop.
func forward[T any](ctx context.Context, a *Admin, notLeader error, call func(context.Context, raftpb.ClusterAdminClient) (T, error)) (T, error) {
	var zero T
	l := leaderOf(a.cfg.Election, notLeader)
	if l.LeaderAddr == "" || l.LeaderID == a.cfg.ID {
		return zero, noLeaderStatus("forward")
	}
	if isForwarded(ctx) {
		return zero, notLeaderStatus(l.LeaderID, l.LeaderAddr)
	}
	conn, err := grpc.NewClient(l.LeaderAddr, a.cfg.DialOptions...)
	if err != nil {
		return zero, status.Errorf(codes.Unavailable, "forward to leader %s at %s: %v", l.LeaderID, l.LeaderAddr, err)
	}
	defer conn.Close()
	fctx, cancel := context.WithTimeout(ctx, a.cfg.ForwardTimeout)
	defer cancel()
	fctx = OutgoingContext(fctx, a.cfg.ID, a.cfg.ClusterID)
	fctx = metadata.AppendToOutgoingContext(fctx, MetadataForwarded, a.cfg.ID)
	a.cfg.Logger.Debug("forwarding to leader", "leader", l.LeaderID, "address", l.LeaderAddr)
	resp, err := call(fctx, raftpb.NewClusterAdminClient(conn))
	if err != nil {
		if s, ok := status.FromError(err); ok && s.Code() != codes.Unknown {
			// Keep the leader's code and details (ReasonOf must still work).
			p := s.Proto()
			p.Message = fmt.Sprintf("forwarded to leader %s at %s: %s", l.LeaderID, l.LeaderAddr, p.Message)
			return zero, status.FromProto(p).Err()
		}
		return zero, status.Errorf(codes.Unavailable, "forwarded to leader %s at %s: %v", l.LeaderID, l.LeaderAddr, err)
	}
	return resp, nil
}

// leaderOf names the leader from a NotLeaderError, or else from the current
// leadership view.
func leaderOf(e Election, notLeader error) election.Leadership {
	var nle *election.NotLeaderError
	if errors.As(notLeader, &nle) && nle.LeaderAddr != "" {
		return election.Leadership{LeaderID: nle.LeaderID, LeaderAddr: nle.LeaderAddr}
	}
	return e.Leadership()
}
