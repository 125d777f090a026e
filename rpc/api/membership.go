package api

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/internal/retry"
	"github.com/heartbeat-sidecar/heartbeat/membership"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
	mpb "github.com/heartbeat-sidecar/heartbeat/proto/membershippb"
	"github.com/heartbeat-sidecar/heartbeat/proto/raftpb"
)

// Limits of the resource API beyond the membership command limits.
const (
	// MinAppHeartbeatTTL and MaxAppHeartbeatTTL bound AppHeartbeat's ttl.
	MinAppHeartbeatTTL = 100 * time.Millisecond
	MaxAppHeartbeatTTL = 10 * time.Minute
	// readYourWritesTimeout bounds the wait of a follower, after a forwarded
	// write, until its own state has applied it (so a read that follows on
	// the same node sees the write).
	readYourWritesTimeout = 5 * time.Second
	// writeRetryFor bounds Commit's retries while no leader is known or the
	// leader moves.
	writeRetryFor = 5 * time.Second
)

// membershipOn returns the FSM, or Unimplemented when the node runs without
// the membership state machine.
func (c *Coordinator) membershipOn() (*membership.FSM, error) {
	if c.cfg.Membership == nil {
		return nil, status.Error(codes.Unimplemented, "membership API disabled: the node runs another state machine")
	}
	return c.cfg.Membership, nil
}

// Commit commits a membership command through the leader and returns its
// result: on this node when it leads, else forwarded to the leader's peer
// address (raft's leader address) as ClusterAdmin.ForwardCommand. While no leader is known, or the
// leader moves under the call, it retries for up to writeRetryFor (every API
// command is idempotent: a retry of one that did commit changes nothing, a
// repeated delete reports the ids as not found). After a forwarded write it
// waits (briefly) until this node has applied it too, so that a read that
// follows on this node sees it. Errors are gRPC status errors:
// InvalidArgument for a malformed command, NotFound for an unknown member,
// FailedPrecondition for a state conflict or a leader that kept moving,
// Unavailable when no leader is known. The node uses
// it for its own writes too (registration, drain, application health).
func (c *Coordinator) Commit(ctx context.Context, cmd *mpb.Command) (*membership.Result, error) {
	fsm, err := c.membershipOn()
	if err != nil {
		return nil, err
	}
	if c.cfg.Applier == nil {
		return nil, status.Error(codes.Unimplemented, "membership API: no applier")
	}
	// The retries end with the caller's context, the budget, or Close.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-c.done:
			cancel()
		case <-rctx.Done():
		}
	}()
	p := retry.Policy{
		Min: 20 * time.Millisecond, Max: 500 * time.Millisecond, Budget: writeRetryFor,
		// A forwarded call is answered once, by the leader: its sender
		// retries.
		Retryable: func(err error) bool { return !isForwarded(ctx) && retry.Retryable(err) },
	}
	var (
		res       *membership.Result
		forwarded bool
		last      error
	)
	err = retry.Do(rctx, p, func(actx context.Context) error {
		select {
		case <-c.done:
			// Closing: refused before anything was done, so the sender
			// may try elsewhere (NO_LEADER says a retry is safe).
			return retry.Mark(statusWithReason(codes.Unavailable, ReasonNoLeader, nil, "%v", ErrClosed), false)
		default:
		}
		var err error
		res, forwarded, err = c.commitOnce(actx, fsm, cmd)
		last = err
		return err
	})
	if err != nil {
		if last == nil { // closed before the first attempt
			return nil, status.Error(codes.Unavailable, ErrClosed.Error())
		}
		return nil, last // the last answer, its status intact
	}
	if forwarded {
		wctx, cancel := context.WithTimeout(ctx, readYourWritesTimeout)
		_ = fsm.WaitRevision(wctx, res.Revision) // best effort: the write is committed either way
		cancel()
	}
	return res, nil
}

// commitOnce applies cmd here, or forwards it once when this node follows.
//
// Its error says whether Commit may try again: only when the command
// certainly did nothing (raft refused it before appending it, the leader
// refused it as not the leader or with no leader known, the leader could not
// be connected to). After any other failure (leadership lost with the entry
// appended, a timeout, a connection lost mid-call) the entry may still
// commit: a second attempt could apply it twice, around a concurrent write
// of the same resource (the chaos suite's linearizability check saw a
// registration reappear after a delete), so the caller is told Unavailable
// with the outcome unknown.
func (c *Coordinator) commitOnce(ctx context.Context, fsm *membership.FSM, cmd *mpb.Command) (*membership.Result, bool, error) {
	if err := c.checkQuota(fsm, cmd); err != nil {
		return nil, false, err
	}
	res, err := membership.Commit(ctx, c.cfg.Applier, cmd)
	if err == nil {
		return res, false, nil
	}
	if !errors.Is(err, election.ErrNotLeader) {
		return nil, false, retry.Mark(commitStatus(err), errors.Is(err, election.ErrTransferInProgress))
	}
	if isForwarded(ctx) {
		l := leaderOf(c.cfg.Election, err)
		return nil, false, notLeaderStatus(l.LeaderID, l.LeaderAddr)
	}
	data, encErr := membership.EncodeCommand(cmd)
	if encErr != nil {
		return nil, false, commitStatus(encErr)
	}
	res, err = c.forward(ctx, data)
	return res, true, err
}

// forward sends an encoded command to the leader's peer address (raft's
// leader address) as ClusterAdmin.ForwardCommand: an internal call, served
// on the peer port only.
func (c *Coordinator) forward(ctx context.Context, data []byte) (*membership.Result, error) {
	l := c.cfg.Election.Leadership()
	if l.LeaderID == "" || l.LeaderID == c.cfg.ID || l.LeaderAddr == "" {
		return nil, noLeaderStatus("write")
	}
	conn, err := c.conn(l.LeaderAddr)
	if err != nil {
		return nil, retry.Mark(status.Errorf(codes.Unavailable, "write: forward to leader %s at %s: %v", l.LeaderID, l.LeaderAddr, err), true)
	}
	fctx, cancel := c.forwardContext(ctx)
	defer cancel()
	// Connected first: a failure before the command is sent is safe to try
	// again, one after it is not (see commitOnce).
	if err := awaitReady(fctx, conn); err != nil {
		return nil, retry.Mark(status.Errorf(codes.Unavailable, "write: forward to leader %s at %s: %v", l.LeaderID, l.LeaderAddr, err), true)
	}
	resp, err := raftpb.NewClusterAdminClient(conn).ForwardCommand(fctx, &raftpb.ForwardCommandRequest{Command: data})
	if err != nil {
		ferr := forwardedError(err, l.LeaderID, l.LeaderAddr)
		switch ReasonOf(err) {
		case ReasonNotLeader, ReasonNoLeader:
			return nil, retry.Mark(ferr, true)
		}
		if s, ok := status.FromError(err); ok && s.Code() == codes.Unavailable || status.Code(err) == codes.DeadlineExceeded {
			return nil, retry.Mark(status.Errorf(codes.Unavailable, "write: outcome unknown: %v", status.Convert(ferr).Message()), false)
		}
		return nil, retry.Mark(ferr, false)
	}
	return &membership.Result{Revision: resp.GetRevision(), Changed: int(resp.GetChanged())}, nil
}

// conn returns a cached client connection to a leader's address: its peer
// address for forwarded writes, its client address for a forwarded
// step-down or transfer.
func (c *Coordinator) conn(addr string) (*grpc.ClientConn, error) {
	c.connMu.Lock()
	defer c.connMu.Unlock()
	if c.conns == nil {
		return nil, ErrClosed
	}
	if cc, ok := c.conns[addr]; ok {
		return cc, nil
	}
	cc, err := grpc.NewClient(addr, c.cfg.DialOptions...)
	if err != nil {
		return nil, err
	}
	c.conns[addr] = cc
	return cc, nil
}

// closeConns closes the cached forwarding connections.
func (c *Coordinator) closeConns() {
	c.connMu.Lock()
	defer c.connMu.Unlock()
	for _, cc := range c.conns {
		cc.Close()
	}
	c.conns = nil
}

// commitStatus maps an error of membership.Commit to a gRPC status.
func commitStatus(err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, membership.ErrCommandTooLarge):
		return statusWithReason(codes.ResourceExhausted, ReasonTooLarge, nil, "%v", err)
	case errors.Is(err, membership.ErrInvalidCommand):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, membership.ErrUnknownMember), errors.Is(err, membership.ErrUnknownResource):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, membership.ErrInvalidTransition), errors.Is(err, membership.ErrAddressInUse),
		errors.Is(err, membership.ErrMemberBusy), errors.Is(err, membership.ErrUnsupportedVersion):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, election.ErrTransferInProgress):
		// The leader is handing off and refused the write before appending
		// it: it will go to the next leader. NO_LEADER tells the Coordinator
		// (and clients) that a retry is safe.
		return statusWithReason(codes.Unavailable, ReasonNoLeader, nil, "write: %v; retry", err)
	}
	return toStatus(err)
}

// applyForwarded applies a command a follower forwarded (served by
// Admin.ForwardCommand on the peer port). Only the commands an API write can
// produce are accepted; the leader's own decisions (member states,
// assignments) are refused with PermissionDenied.
func (c *Coordinator) applyForwarded(ctx context.Context, req *raftpb.ForwardCommandRequest) (*raftpb.ForwardCommandResponse, error) {
	if _, err := c.membershipOn(); err != nil {
		return nil, err
	}
	cmd, err := membership.DecodeCommand(req.GetCommand())
	if err != nil {
		return nil, commitStatus(err)
	}
	switch cmd.GetOp().(type) {
	case *mpb.Command_MarkDead, *mpb.Command_MarkSuspect, *mpb.Command_MarkAlive, *mpb.Command_Assign:
		return nil, status.Errorf(codes.PermissionDenied, "forward: %T is decided by the leader only", cmd.GetOp())
	}
	// Never forward again: a forwarded call is answered here or fails.
	ctx = metadata.NewIncomingContext(ctx, metadata.Join(incoming(ctx), metadata.Pairs(MetadataForwarded, "1")))
	res, err := c.Commit(ctx, cmd)
	if err != nil {
		return nil, err
	}
	return &raftpb.ForwardCommandResponse{Revision: res.Revision, Changed: uint32(res.Changed)}, nil
}

func incoming(ctx context.Context) metadata.MD {
	md, _ := metadata.FromIncomingContext(ctx)
	return md
}

// RegisterResources registers a batch of resources in one command.
func (c *Coordinator) RegisterResources(ctx context.Context, req *heartbeatpb.RegisterResourcesRequest) (*heartbeatpb.RegisterResourcesResponse, error) {
	rs := req.GetResources()
	switch {
	case len(rs) == 0:
		return nil, status.Error(codes.InvalidArgument, "register: no resources given")
	case len(rs) > membership.MaxBatch:
		return nil, statusWithReason(codes.ResourceExhausted, ReasonTooLarge, nil, "register: %d resources in one call, limit %d", len(rs), membership.MaxBatch)
	}
	specs := make([]membership.ResourceSpec, len(rs))
	for i, r := range rs {
		specs[i] = membership.ResourceSpec{ID: r.GetId(), Weight: r.GetWeight(), Labels: r.GetLabels()}
	}
	res, err := c.Commit(ctx, membership.RegisterCmd(specs))
	if err != nil {
		return nil, err
	}
	return &heartbeatpb.RegisterResourcesResponse{Revision: res.Revision, Changed: uint32(res.Changed)}, nil
}

// DeleteResources deletes a batch of resources in one command. Ids unknown to
// this node's state fail the whole call with NotFound before anything is
// committed.
func (c *Coordinator) DeleteResources(ctx context.Context, req *heartbeatpb.DeleteResourcesRequest) (*heartbeatpb.DeleteResourcesResponse, error) {
	if _, err := c.membershipOn(); err != nil {
		return nil, err
	}
	ids := req.GetIds()
	switch {
	case len(ids) == 0:
		return nil, status.Error(codes.InvalidArgument, "delete: no ids given")
	case len(ids) > membership.MaxBatch:
		return nil, statusWithReason(codes.ResourceExhausted, ReasonTooLarge, nil, "delete: %d ids in one call, limit %d", len(ids), membership.MaxBatch)
	}
	cmd := membership.DeleteCmd(ids)
	if _, err := membership.EncodeCommand(cmd); err != nil { // validate before the lookup
		return nil, commitStatus(err)
	}
	// Whether the resources are there is decided where the delete is
	// applied, in log order (the state machine refuses the whole command,
	// NotFound, if one is not): a check of this node's state first could
	// answer from a state that is not current (two concurrent deletes of one
	// resource both "found" it).
	res, err := c.Commit(ctx, cmd)
	if err != nil {
		return nil, err
	}
	return &heartbeatpb.DeleteResourcesResponse{Revision: res.Revision, Changed: uint32(res.Changed)}, nil
}

// ListResources lists every resource with its owner and epoch.
func (c *Coordinator) ListResources(ctx context.Context, req *heartbeatpb.ListResourcesRequest) (*heartbeatpb.ListResourcesResponse, error) {
	fsm, err := c.membershipOn()
	if err != nil {
		return nil, err
	}
	info, err := c.read(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	v := fsm.View()
	info.Revision = v.Revision
	return &heartbeatpb.ListResourcesResponse{Revision: v.Revision, Resources: resourcesPB(v.Resources), Read: info}, nil
}

// GetResource reports one resource with its owner and epoch.
func (c *Coordinator) GetResource(ctx context.Context, req *heartbeatpb.GetResourceRequest) (*heartbeatpb.GetResourceResponse, error) {
	fsm, err := c.membershipOn()
	if err != nil {
		return nil, err
	}
	id := req.GetId()
	if err := membership.CheckResourceID(id); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "get resource: %v", err)
	}
	info, err := c.read(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	var (
		r     membership.Resource
		found bool
		rev   uint64
	)
	fsm.Read(func(s *membership.State) {
		rev = s.Revision()
		r, found = s.Resource(id)
	})
	if !found {
		return nil, status.Errorf(codes.NotFound, "get resource: %q is not registered", id)
	}
	info.Revision = rev
	return &heartbeatpb.GetResourceResponse{Resource: resourcesPB([]membership.Resource{r})[0], Revision: rev, Read: info}, nil
}

// ListAssignments lists the resources one member owns (default: this node).
func (c *Coordinator) ListAssignments(ctx context.Context, req *heartbeatpb.ListAssignmentsRequest) (*heartbeatpb.ListAssignmentsResponse, error) {
	fsm, err := c.membershipOn()
	if err != nil {
		return nil, err
	}
	info, err := c.read(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	id := req.GetNodeId()
	if id == "" {
		id = c.cfg.ID
	}
	var out []membership.Resource
	var rev uint64
	known := false
	fsm.Read(func(s *membership.State) {
		rev = s.Revision()
		if _, known = s.Member(id); known {
			out = s.Owned(id)
		}
	})
	if !known && id == c.cfg.ID {
		// This node itself: it has not registered yet, or (just restarted)
		// has not caught up with its own record. Retry shortly.
		return nil, status.Errorf(codes.Unavailable, "assignments: %q has not registered yet (starting or catching up)", id)
	}
	if !known {
		return nil, status.Errorf(codes.NotFound, "assignments: %q is not a member", id)
	}
	info.Revision = rev
	return &heartbeatpb.ListAssignmentsResponse{Revision: rev, Resources: resourcesPB(out), Read: info}, nil
}

func resourcesPB(rs []membership.Resource) []*heartbeatpb.Resource {
	out := make([]*heartbeatpb.Resource, len(rs))
	for i, r := range rs {
		p := &heartbeatpb.Resource{Id: r.ID, OwnerNodeId: r.Owner, Epoch: r.Epoch, Weight: r.Weight}
		if len(r.Labels) > 0 {
			p.Labels = make(map[string]string, len(r.Labels))
			for _, l := range r.Labels {
				p.Labels[l.Key] = l.Value
			}
		}
		out[i] = p
	}
	return out
}

// member resolves the member id of a request, "" meaning the serving node:
// InvalidArgument for a malformed id, NotFound for one the membership state
// does not hold. what names the call in the message.
func (c *Coordinator) member(what, id string) (string, error) {
	if id == "" {
		id = c.cfg.ID
	}
	if err := membership.CheckMemberID(id); err != nil {
		return "", status.Errorf(codes.InvalidArgument, "%s: %v", what, err)
	}
	if _, known := c.record(id); !known {
		return "", status.Errorf(codes.NotFound, "%s: %q is not a member", what, id)
	}
	return id, nil
}

// SetDrain drains or undrains a member (default: this node).
func (c *Coordinator) SetDrain(ctx context.Context, req *heartbeatpb.SetDrainRequest) (*heartbeatpb.SetDrainResponse, error) {
	if _, err := c.membershipOn(); err != nil {
		return nil, err
	}
	id, err := c.member("drain", req.GetNodeId())
	if err != nil {
		return nil, err
	}
	res, err := c.Commit(ctx, membership.SetDrainCmd(id, req.GetDraining()))
	if err != nil {
		return nil, err
	}
	return &heartbeatpb.SetDrainResponse{Revision: res.Revision, Changed: uint32(res.Changed)}, nil
}

// AppHeartbeat records a heartbeat of the local application.
func (c *Coordinator) AppHeartbeat(ctx context.Context, req *heartbeatpb.AppHeartbeatRequest) (*heartbeatpb.AppHeartbeatResponse, error) {
	fsm, err := c.membershipOn()
	if err != nil {
		return nil, err
	}
	if c.cfg.AppHeartbeat == nil {
		return nil, status.Error(codes.Unimplemented, "app heartbeat: not supported by this node")
	}
	if err := req.GetTtl().CheckValid(); req.GetTtl() != nil && err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "app heartbeat: ttl: %v", err)
	}
	ttl := req.GetTtl().AsDuration()
	if ttl < MinAppHeartbeatTTL || ttl > MaxAppHeartbeatTTL {
		return nil, status.Errorf(codes.InvalidArgument, "app heartbeat: ttl %v outside %v..%v", ttl, MinAppHeartbeatTTL, MaxAppHeartbeatTTL)
	}
	c.cfg.AppHeartbeat(ttl)
	resp := &heartbeatpb.AppHeartbeatResponse{}
	fsm.Read(func(s *membership.State) {
		if m, ok := s.Member(c.cfg.ID); ok {
			resp.AppHealthy, resp.Draining, resp.State = m.AppHealthy, m.Draining, heartbeatpb.MemberStateOf(m.State.String())
		}
	})
	return resp, nil
}

// mergeMembers adds the membership records to the raft configuration's
// members (and lists the members raft no longer knows), sorted by id.
func mergeMembers(raftMembers []*heartbeatpb.Member, fsm *membership.FSM) []*heartbeatpb.Member {
	out, _ := mergeMembersAt(raftMembers, fsm)
	return out
}

// mergeMembersAt is mergeMembers that also returns the revision of the
// membership state it read (0 without one).
func mergeMembersAt(raftMembers []*heartbeatpb.Member, fsm *membership.FSM) ([]*heartbeatpb.Member, uint64) {
	if fsm == nil {
		sort.Slice(raftMembers, func(i, j int) bool { return raftMembers[i].GetNodeId() < raftMembers[j].GetNodeId() })
		return raftMembers, 0
	}
	var rev uint64
	byID := make(map[string]*heartbeatpb.Member, len(raftMembers))
	for _, m := range raftMembers {
		byID[m.GetNodeId()] = m
	}
	out := raftMembers
	fsm.Read(func(s *membership.State) {
		rev = s.Revision()
		for _, m := range s.Members() {
			pm, ok := byID[m.ID]
			if !ok {
				pm = &heartbeatpb.Member{NodeId: m.ID, PeerAddress: m.PeerAddr}
				out = append(out, pm)
			}
			pm.State, pm.AppHealthy, pm.Draining = heartbeatpb.MemberStateOf(m.State.String()), m.AppHealthy, m.Draining
			pm.ClientAddress, pm.HttpAddress = m.ClientAddr, m.HTTPAddr
			pm.Owned, pm.LeaderPriority = uint32(s.NumOwned(m.ID)), m.LeaderPriority
		}
	})
	sort.Slice(out, func(i, j int) bool { return out[i].GetNodeId() < out[j].GetNodeId() })
	return out, rev
}

// awaitReady waits, within ctx, until cc is connected; an error when it
// fails to connect (nothing was sent).
func awaitReady(ctx context.Context, cc *grpc.ClientConn) error {
	cc.Connect()
	for {
		s := cc.GetState()
		switch s {
		case connectivity.Ready:
			return nil
		case connectivity.TransientFailure, connectivity.Shutdown:
			return fmt.Errorf("connection state %s", s)
		}
		if !cc.WaitForStateChange(ctx, s) {
			return fmt.Errorf("not connected: %w", ctx.Err())
		}
	}
}
