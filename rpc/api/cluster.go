package api

import (
	"context"
	"net"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/membership"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
	"github.com/heartbeat-sidecar/heartbeat/proto/raftpb"
)

// MaxJoinIDLen bounds the node id of a Join (the proto's 1..64 bytes of
// [A-Za-z0-9._-]).
const MaxJoinIDLen = 64

// SetLeaderPriority commits a member's leader priority (default member:
// this node). InvalidArgument for a malformed id or a priority above
// membership.MaxLeaderPriority, NotFound for an unknown member.
func (c *Coordinator) SetLeaderPriority(ctx context.Context, req *heartbeatpb.SetLeaderPriorityRequest) (*heartbeatpb.SetLeaderPriorityResponse, error) {
	if _, err := c.membershipOn(); err != nil {
		return nil, err
	}
	if p := req.GetPriority(); p > membership.MaxLeaderPriority {
		return nil, status.Errorf(codes.InvalidArgument, "leader priority: %d outside 0..%d", p, membership.MaxLeaderPriority)
	}
	id, err := c.member("leader priority", req.GetNodeId())
	if err != nil {
		return nil, err
	}
	res, err := c.Commit(ctx, membership.SetLeaderPriorityCmd(id, req.GetPriority()))
	if err != nil {
		return nil, err
	}
	return &heartbeatpb.SetLeaderPriorityResponse{Revision: res.Revision, Changed: uint32(res.Changed)}, nil
}

// checkJoinID accepts 1..MaxJoinIDLen bytes of [A-Za-z0-9._-].
func checkJoinID(id string) error {
	if len(id) == 0 || len(id) > MaxJoinIDLen {
		return status.Errorf(codes.InvalidArgument, "join: node_id of %d bytes (want 1..%d)", len(id), MaxJoinIDLen)
	}
	for _, r := range id {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
		if !ok {
			return status.Errorf(codes.InvalidArgument, "join: node_id %q: only letters, digits, '.', '_' and '-'", id)
		}
	}
	return nil
}

// checkPeerAddress accepts host:port with a host (not a wildcard) and a
// port in 1..65535, of at most membership.MaxAddressLen bytes.
func checkPeerAddress(addr string) error {
	if addr == "" {
		return status.Error(codes.InvalidArgument, "join: peer_address is empty")
	}
	if len(addr) > membership.MaxAddressLen {
		return status.Errorf(codes.InvalidArgument, "join: peer_address of %d bytes (limit %d)", len(addr), membership.MaxAddressLen)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "join: peer_address %q: %v", addr, err)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return status.Errorf(codes.InvalidArgument, "join: peer_address %q: port must be 1..65535", addr)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return status.Errorf(codes.InvalidArgument, "join: peer_address %q: a host other nodes can dial is required", addr)
	}
	return nil
}

// Join adds a node to the raft configuration through ClusterAdmin's Join
// (on this node when it leads, else forwarded to the leader's peer port). A
// repeat of a join already in effect (same id, address and suffrage)
// answers index 0 without a configuration change.
func (c *Coordinator) Join(ctx context.Context, req *heartbeatpb.JoinRequest) (*heartbeatpb.JoinResponse, error) {
	if c.cfg.Admin == nil {
		return nil, status.Error(codes.Unimplemented, "join: not supported by this server")
	}
	if err := checkJoinID(req.GetNodeId()); err != nil {
		return nil, err
	}
	if err := checkPeerAddress(req.GetPeerAddress()); err != nil {
		return nil, err
	}
	if ms, err := c.cfg.Election.Members(); err == nil {
		for _, m := range ms {
			if m.ID == req.GetNodeId() && m.Address == req.GetPeerAddress() && m.Voter == !req.GetNonvoter() {
				return &heartbeatpb.JoinResponse{}, nil
			}
		}
	}
	resp, err := c.cfg.Admin.Join(ctx, &raftpb.JoinRequest{
		Id: req.GetNodeId(), PeerAddress: req.GetPeerAddress(), Voter: !req.GetNonvoter(), ClusterId: c.cfg.ClusterID,
	})
	if err != nil {
		return nil, toStatus(err)
	}
	c.waitIndex(ctx, resp.GetIndex())
	return &heartbeatpb.JoinResponse{Revision: resp.GetIndex()}, nil
}

// Remove takes another member out of the raft configuration through
// ClusterAdmin's Remove (the leader records it as left first). NotFound
// when the configuration does not hold it; FailedPrecondition for the
// serving node itself (Leave is the call for that) and when the voters
// left behind would not hold a majority of live members (as the membership
// state records them: alive, or not registered yet).
func (c *Coordinator) Remove(ctx context.Context, req *heartbeatpb.RemoveRequest) (*heartbeatpb.RemoveResponse, error) {
	if c.cfg.Admin == nil {
		return nil, status.Error(codes.Unimplemented, "remove: not supported by this server")
	}
	id := req.GetNodeId()
	if err := membership.CheckMemberID(id); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "remove: %v", err)
	}
	if id == c.cfg.ID {
		return nil, status.Errorf(codes.FailedPrecondition, "remove: %q is the serving node; call Leave on it instead", id)
	}
	ms, err := c.cfg.Election.Members()
	if err != nil {
		return nil, toStatus(err)
	}
	found, targetVoter := false, false
	for _, m := range ms {
		if m.ID == id {
			found, targetVoter = true, m.Voter
		}
	}
	if !found {
		return nil, status.Errorf(codes.NotFound, "remove: %q is not in the raft configuration", id)
	}
	if targetVoter {
		voters, live := 0, 0
		leader := c.cfg.Election.Leadership().LeaderID
		for _, m := range ms {
			if !m.Voter || m.ID == id {
				continue
			}
			voters++
			rec, ok := c.record(m.ID)
			if m.ID == leader || !ok || rec.State == membership.StateAlive {
				live++
			}
		}
		if voters == 0 || live < voters/2+1 {
			return nil, status.Errorf(codes.FailedPrecondition,
				"remove: without %q the cluster would have %d voters of which %d are alive: no majority", id, voters, live)
		}
	}
	resp, err := c.cfg.Admin.Remove(ctx, &raftpb.RemoveRequest{Id: id})
	if err != nil {
		return nil, toStatus(err)
	}
	c.waitIndex(ctx, resp.GetIndex())
	return &heartbeatpb.RemoveResponse{Revision: resp.GetIndex()}, nil
}

// Leave makes the serving node leave the cluster through the configured
// hook (see CoordinatorConfig.Leave) and answers once the departure is
// committed.
func (c *Coordinator) Leave(ctx context.Context, _ *heartbeatpb.LeaveRequest) (*heartbeatpb.LeaveResponse, error) {
	if c.cfg.Leave == nil {
		return nil, status.Error(codes.Unimplemented, "leave: not supported by this server")
	}
	select {
	case <-c.done:
		return nil, status.Error(codes.Unavailable, ErrClosed.Error())
	default:
	}
	moved, err := c.cfg.Leave(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	c.cfg.Logger.Info("left the cluster", "moved", moved)
	return &heartbeatpb.LeaveResponse{NodeId: c.cfg.ID, Moved: uint32(moved)}, nil
}

// waitIndex gives a configuration change made through the leader
// read-your-writes on this node: it waits, bounded by
// readYourWritesTimeout, until this node's raft has applied index, so a
// Members, Join or Remove sent here next sees the change. Best effort: the
// change is committed either way.
func (c *Coordinator) waitIndex(ctx context.Context, index uint64) {
	r := c.cfg.Election.Raft()
	if r == nil || index == 0 {
		return
	}
	deadline := time.Now().Add(readYourWritesTimeout)
	for r.AppliedIndex() < index && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-c.done:
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}
