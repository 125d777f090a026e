package api

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/membership"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// leaderChangeWait bounds the wait, after a step-down or transfer, until the
// serving node knows the new leader (raft itself bounds the transfer by its
// election timeout).
const leaderChangeWait = 10 * time.Second

// Transferer is the optional part of an Election that hands leadership
// over; *election.Node and *ElectionRef implement it. Without it StepDown
// and TransferLeadership answer Unimplemented.
type Transferer interface {
	// Transfer hands leadership to the voter id ("" lets raft pick one) and
	// waits until this node has stepped down. Leader only.
	Transfer(ctx context.Context, id string) error
}

// leaderPB names the leader of l, with its client and HTTP addresses from
// its membership record (empty while it has not registered them).
func (c *Coordinator) leaderPB(l election.Leadership) *heartbeatpb.NodeRef {
	p := &heartbeatpb.NodeRef{NodeId: l.LeaderID, PeerAddress: l.LeaderAddr}
	if l.LeaderID != "" && c.cfg.Membership != nil {
		c.cfg.Membership.Read(func(s *membership.State) {
			if m, ok := s.Member(l.LeaderID); ok {
				p.ClientAddress, p.HttpAddress = m.ClientAddr, m.HTTPAddr
			}
		})
	}
	return p
}

// GetLeader reports the leadership as this node knows it.
func (c *Coordinator) GetLeader(ctx context.Context, req *heartbeatpb.GetLeaderRequest) (*heartbeatpb.GetLeaderResponse, error) {
	info, err := c.read(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	return &heartbeatpb.GetLeaderResponse{Leadership: c.leadershipOf(c.cfg.Election.Leadership(), time.Now()), Read: info}, nil
}

// StepDown makes the leader hand leadership to another voter that raft
// picks; see changeLeader.
func (c *Coordinator) StepDown(ctx context.Context, _ *heartbeatpb.StepDownRequest) (*heartbeatpb.StepDownResponse, error) {
	ch, err := c.changeLeader(ctx, "")
	if err != nil {
		return nil, err
	}
	return &heartbeatpb.StepDownResponse{Change: ch}, nil
}

// TransferLeadership hands leadership to the named voter; see changeLeader.
func (c *Coordinator) TransferLeadership(ctx context.Context, req *heartbeatpb.TransferLeadershipRequest) (*heartbeatpb.TransferLeadershipResponse, error) {
	ch, err := c.transferLeadership(ctx, req)
	if err != nil {
		return nil, err
	}
	return &heartbeatpb.TransferLeadershipResponse{Change: ch}, nil
}

func (c *Coordinator) transferLeadership(ctx context.Context, req *heartbeatpb.TransferLeadershipRequest) (*heartbeatpb.LeadershipChange, error) {
	id := req.GetNodeId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "transfer leadership: node_id is empty")
	}
	if err := membership.CheckMemberID(id); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "transfer leadership: %v", err)
	}
	return c.changeLeader(ctx, id)
}

// changeLeader runs a step-down (target "") or a transfer to target. The
// target is checked on the serving node and again on the leader. A follower
// forwards the call to the leader's client port once; the leader runs the
// transfer (one at a time: a second concurrent one is FailedPrecondition)
// and answers once it knows the new leader. The serving node answers after
// it knows the new leader too (both waits bounded by leaderChangeWait).
func (c *Coordinator) changeLeader(ctx context.Context, target string) (*heartbeatpb.LeadershipChange, error) {
	what := "step down"
	if target != "" {
		what = "transfer leadership to " + target
	}
	tr, ok := c.cfg.Election.(Transferer)
	if !ok {
		return nil, status.Errorf(codes.Unimplemented, "%s: the election cannot transfer leadership", what)
	}
	select {
	case <-c.done:
		return nil, status.Error(codes.Unavailable, ErrClosed.Error())
	default:
	}
	l := c.cfg.Election.Leadership()
	if target != "" {
		if err := c.checkTarget(what, target, l.LeaderID); err != nil {
			return nil, err
		}
		if l.LeaderID == target {
			return c.leadershipChange(l.LeaderID, l), nil // already leads: nothing to do
		}
	}
	if l.LeaderID == "" {
		return nil, noLeaderStatus(what)
	}
	if l.LeaderID != c.cfg.ID {
		if isForwarded(ctx) {
			return nil, notLeaderStatus(l.LeaderID, l.LeaderAddr)
		}
		resp, err := c.forwardLeaderChange(ctx, l, target)
		if err != nil {
			return nil, err
		}
		want := resp.GetLeader().GetNodeId()
		if nl, ok := c.awaitLeadership(ctx, func(x election.Leadership) bool { return want != "" && x.LeaderID == want }); ok {
			return c.leadershipChange(resp.GetPreviousNodeId(), nl), nil
		}
		return resp, nil
	}
	if target == "" {
		if err := c.checkOtherVoter(what); err != nil {
			return nil, err
		}
	}
	if !c.transferring.CompareAndSwap(false, true) {
		return nil, status.Errorf(codes.FailedPrecondition, "%s: %v", what, election.ErrTransferInProgress)
	}
	defer c.transferring.Store(false)
	start := time.Now()
	if err := tr.Transfer(ctx, target); err != nil {
		return nil, transferStatus(what, err)
	}
	nl, _ := c.awaitLeadership(ctx, func(x election.Leadership) bool {
		return x.LeaderID != "" && x.LeaderID != c.cfg.ID && (target == "" || x.LeaderID == target)
	})
	c.cfg.Logger.Info("leadership handed over", "request", what, "new_leader", nl.LeaderID, "term", nl.Term, "took", time.Since(start))
	return c.leadershipChange(c.cfg.ID, nl), nil
}

// leadershipChange builds the answer from a leadership view.
func (c *Coordinator) leadershipChange(previous string, l election.Leadership) *heartbeatpb.LeadershipChange {
	return &heartbeatpb.LeadershipChange{PreviousNodeId: previous, Leader: c.leaderPB(l), Term: l.Term, FencingToken: l.FencingToken}
}

// transferStatus maps an error of election.Transfer.
func transferStatus(what string, err error) error {
	switch {
	case errors.Is(err, election.ErrTransferInProgress):
		return status.Errorf(codes.FailedPrecondition, "%s: %v", what, err)
	case errors.Is(err, election.ErrNotVoter):
		return status.Errorf(codes.InvalidArgument, "%s: %v", what, err)
	case errors.Is(err, election.ErrUnknownMember):
		return status.Errorf(codes.NotFound, "%s: %v", what, err)
	case errors.Is(err, election.ErrNotLeader), errors.Is(err, election.ErrShutdown),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return toStatus(fmt.Errorf("%s: %w", what, err))
	}
	return status.Errorf(codes.Unavailable, "%s: leadership transfer failed: %v; retry", what, err)
}

// checkTarget checks that target can lead, as this node knows it: NotFound
// when neither the raft configuration nor the membership state knows it;
// InvalidArgument for a non-voter, a member outside the configuration, or
// one that is not alive, drains or whose application is unhealthy. The
// current leader (leaderID) passes once it is a known voter: transferring
// to it is a no-op.
func (c *Coordinator) checkTarget(what, target, leaderID string) error {
	ms, err := c.cfg.Election.Members()
	if err != nil {
		return toStatus(fmt.Errorf("%s: %w", what, err))
	}
	var rm *election.Member
	for i := range ms {
		if ms[i].ID == target {
			rm = &ms[i]
		}
	}
	rec, hasRec := c.record(target)
	switch {
	case rm == nil && !hasRec:
		return status.Errorf(codes.NotFound, "%s: %q is not a member", what, target)
	case rm == nil:
		return status.Errorf(codes.InvalidArgument, "%s: %q is not in the raft configuration (it is %s)", what, target, rec.State)
	case !rm.Voter:
		return status.Errorf(codes.InvalidArgument, "%s: %q is a %s; only a voter can lead", what, target, rm.Suffrage)
	case target == leaderID:
		return nil
	case !hasRec:
		return nil // registered nothing yet: raft alone decides
	case rec.State != membership.StateAlive:
		return status.Errorf(codes.InvalidArgument, "%s: %q is %s", what, target, rec.State)
	case rec.Draining:
		return status.Errorf(codes.InvalidArgument, "%s: %q is draining", what, target)
	case !rec.AppHealthy:
		return status.Errorf(codes.InvalidArgument, "%s: the application beside %q is unhealthy", what, target)
	}
	return nil
}

// checkOtherVoter answers Unavailable when no voter but this node could
// take over (none in the configuration, or all of them dead or left).
func (c *Coordinator) checkOtherVoter(what string) error {
	ms, err := c.cfg.Election.Members()
	if err != nil {
		return toStatus(fmt.Errorf("%s: %w", what, err))
	}
	for _, m := range ms {
		if m.ID == c.cfg.ID || !m.Voter {
			continue
		}
		if rec, ok := c.record(m.ID); ok && (rec.State == membership.StateDead || rec.State == membership.StateLeft) {
			continue
		}
		return nil
	}
	return status.Errorf(codes.Unavailable, "%s: no other voter can take over", what)
}

// record returns a member's membership record, if there is a membership
// state and the member registered.
func (c *Coordinator) record(id string) (membership.Member, bool) {
	var m membership.Member
	var ok bool
	if c.cfg.Membership != nil {
		c.cfg.Membership.Read(func(s *membership.State) { m, ok = s.Member(id) })
	}
	return m, ok
}

// awaitLeadership waits until cond holds for this node's leadership view,
// or ctx ends, or leaderChangeWait passes; it returns the last view and
// whether cond held.
func (c *Coordinator) awaitLeadership(ctx context.Context, cond func(election.Leadership) bool) (election.Leadership, bool) {
	ctx, cancel := context.WithTimeout(ctx, leaderChangeWait)
	defer cancel()
	var events <-chan election.Leadership
	if w := c.cfg.Election.Watch(); w != nil {
		defer w.Close()
		events = w.C()
	}
	// The watcher tells changes; the ticker covers a closed watcher and
	// views (the leader's lease) that move without an event.
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		l := c.cfg.Election.Leadership()
		if cond(l) {
			return l, true
		}
		select {
		case <-ctx.Done():
			return l, false
		case <-c.done:
			return l, false
		case _, ok := <-events:
			if !ok {
				events = nil
			}
		case <-t.C:
		}
	}
}

// leaderClient returns a Coordinator client on the leader's client port and
// that address; Unavailable while the leader has not registered one.
func (c *Coordinator) leaderClient(what string, l election.Leadership) (heartbeatpb.CoordinatorClient, string, error) {
	addr := c.leaderPB(l).GetClientAddress()
	if addr == "" {
		return nil, "", statusWithReason(codes.Unavailable, ReasonNoLeader, nil,
			"%s: leader %s has not registered its client address yet; retry later", what, l.LeaderID)
	}
	conn, err := c.conn(addr)
	if err != nil {
		return nil, "", status.Errorf(codes.Unavailable, "%s: forward to leader %s at %s: %v", what, l.LeaderID, addr, err)
	}
	return heartbeatpb.NewCoordinatorClient(conn), addr, nil
}

// forwardContext marks a call to the leader as forwarded, bounded by
// ForwardTimeout.
func (c *Coordinator) forwardContext(ctx context.Context) (context.Context, context.CancelFunc) {
	fctx, cancel := context.WithTimeout(ctx, c.cfg.ForwardTimeout)
	fctx = OutgoingContext(fctx, c.cfg.ID, c.cfg.ClusterID)
	return metadata.AppendToOutgoingContext(fctx, MetadataForwarded, c.cfg.ID), cancel
}

// forwardedError keeps the leader's code and details of a forwarded call's
// failure (ReasonOf must still work) and names the leader in the message.
func forwardedError(err error, leaderID, addr string) error {
	if s, ok := status.FromError(err); ok && s.Code() != codes.Unknown {
		p := s.Proto()
		p.Message = fmt.Sprintf("forwarded to leader %s at %s: %s", leaderID, addr, p.Message)
		return status.FromProto(p).Err()
	}
	return status.Errorf(codes.Unavailable, "forwarded to leader %s at %s: %v", leaderID, addr, err)
}

// forwardLeaderChange sends a step-down or transfer to the leader l.
func (c *Coordinator) forwardLeaderChange(ctx context.Context, l election.Leadership, target string) (*heartbeatpb.LeadershipChange, error) {
	client, addr, err := c.leaderClient("leadership change", l)
	if err != nil {
		return nil, err
	}
	fctx, cancel := c.forwardContext(ctx)
	defer cancel()
	var resp interface {
		GetChange() *heartbeatpb.LeadershipChange
	}
	if target == "" {
		resp, err = client.StepDown(fctx, &heartbeatpb.StepDownRequest{})
	} else {
		resp, err = client.TransferLeadership(fctx, &heartbeatpb.TransferLeadershipRequest{NodeId: target})
	}
	if err != nil {
		return nil, forwardedError(err, l.LeaderID, addr)
	}
	return resp.GetChange(), nil
}
