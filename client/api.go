package client

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// Every call below retries until it succeeds, fails for good, or ctx ends:
// give ctx a deadline. Errors from a server keep their gRPC status
// (status.Code(err), ReasonOf(err)).

// Status returns the local sidecar's view of the cluster (consistent
// unless Stale: see ReadOption; Status.Read says how fresh it is).
func (c *Client) Status(ctx context.Context, opts ...ReadOption) (Status, error) {
	o := readOptions(opts)
	var out Status
	err := c.invoke(ctx, callSpec{name: "status", route: routeLocal}, func(ctx context.Context, s heartbeatpb.CoordinatorClient, _ string) error {
		resp, err := s.GetStatus(ctx, &heartbeatpb.GetStatusRequest{Consistency: o.consistency()})
		if err != nil {
			return err
		}
		out = statusFromPB(resp)
		out.Read = o.got(resp.GetRead())
		return nil
	})
	if err == nil {
		c.setLocalID(out.ID)
	}
	return out, err
}

// IsLeader reports whether the LOCAL node leads and its lease is valid, as
// the local sidecar says now. The answer can be stale by the time it is
// read: to guard work, use RunWhileLeader and pass the fencing token on.
func (c *Client) IsLeader(ctx context.Context) (bool, error) {
	s, err := c.Status(ctx, Stale())
	if err != nil {
		return false, err
	}
	return s.IsLeader, nil
}

// LocalID returns the node id of the local sidecar (learned once from its
// Status, then remembered).
func (c *Client) LocalID(ctx context.Context) (string, error) {
	c.mu.Lock()
	id := c.localID
	c.mu.Unlock()
	if id != "" {
		return id, nil
	}
	s, err := c.Status(ctx, Stale())
	if err != nil {
		return "", err
	}
	return s.ID, nil
}

func (c *Client) setLocalID(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.localID == "" {
		c.localID = id
	}
}

// Leader returns the leadership as the local sidecar sees it (another
// endpoint's view when the local one is unreachable; see Leader.Endpoint).
// It uses GetLeader, and Status (with the client address looked up in the
// member list) on a server that does not implement GetLeader. Consistent
// unless Stale (Leader.Read says how fresh it is).
func (c *Client) Leader(ctx context.Context, opts ...ReadOption) (Leader, error) {
	o := readOptions(opts)
	var out Leader
	err := c.invoke(ctx, callSpec{name: "leader", route: routeRead}, func(ctx context.Context, s heartbeatpb.CoordinatorClient, addr string) error {
		resp, err := s.GetLeader(ctx, &heartbeatpb.GetLeaderRequest{Consistency: o.consistency()})
		if err == nil {
			out = c.leaderFromPB(resp.GetLeadership(), addr)
			out.Read = o.got(resp.GetRead())
			return nil
		}
		if status.Code(err) != codes.Unimplemented {
			return err
		}
		st, err := s.GetStatus(ctx, &heartbeatpb.GetStatusRequest{Consistency: o.consistency()})
		if err != nil {
			return err
		}
		out = Leader{
			ID: st.GetLeader().GetNodeId(), PeerAddress: st.GetLeader().GetPeerAddress(),
			Term: st.GetTerm(), FencingToken: st.GetFencingToken(), IsSelf: st.GetIsLeader(),
			LeaseUntil: instant(st.GetLeaseUntil()), Endpoint: addr, Local: addr == c.local(),
		}
		if out.ID != "" && c.known(out.ID, out.PeerAddress) == "" {
			c.refreshAddrs(ctx, addr)
		}
		c.fillLeaderAddr(&out)
		return nil
	})
	return out, err
}

// Members lists the members (raft configuration merged with the membership
// records) as the local sidecar knows them, or another endpoint when it is
// unreachable. Consistent unless Stale; WithReadInfo tells how fresh.
func (c *Client) Members(ctx context.Context, opts ...ReadOption) ([]Member, error) {
	o := readOptions(opts)
	var out []Member
	err := c.invoke(ctx, callSpec{name: "members", route: routeRead}, func(ctx context.Context, s heartbeatpb.CoordinatorClient, _ string) error {
		resp, err := s.ListMembers(ctx, &heartbeatpb.ListMembersRequest{Consistency: o.consistency()})
		if err != nil {
			return err
		}
		o.got(resp.GetRead())
		out = c.membersFromPB(resp.GetMembers())
		return nil
	})
	return out, err
}

// Resources lists every resource with its owner and epoch, at one revision.
// Consistent unless Stale: it reflects every write acknowledged before the
// call (a stale listing may lag the leader). Listing.Read says how fresh.
func (c *Client) Resources(ctx context.Context, opts ...ReadOption) (Listing, error) {
	o := readOptions(opts)
	var out Listing
	err := c.invoke(ctx, callSpec{name: "list resources", route: routeRead}, func(ctx context.Context, s heartbeatpb.CoordinatorClient, _ string) error {
		resp, err := s.ListResources(ctx, &heartbeatpb.ListResourcesRequest{Consistency: o.consistency()})
		if err != nil {
			return err
		}
		out = listingFromPB(resp)
		out.Read = o.got(resp.GetRead())
		return nil
	})
	return out, err
}

// Assignments lists the resources one member owns ("" : the local node).
// NotFound for an unknown member. Consistent unless Stale.
func (c *Client) Assignments(ctx context.Context, nodeID string, opts ...ReadOption) (Listing, error) {
	o := readOptions(opts)
	if nodeID == "" {
		id, err := c.LocalID(ctx)
		if err != nil {
			return Listing{}, err
		}
		nodeID = id
	}
	var out Listing
	err := c.invoke(ctx, callSpec{name: "assignments", route: routeRead}, func(ctx context.Context, s heartbeatpb.CoordinatorClient, _ string) error {
		resp, err := s.ListAssignments(ctx, &heartbeatpb.ListAssignmentsRequest{NodeId: nodeID, Consistency: o.consistency()})
		if err != nil {
			return err
		}
		out = listingFromPB(resp)
		out.Read = o.got(resp.GetRead())
		return nil
	})
	return out, err
}

// MyResources lists the resources the local node owns, each with its epoch
// (the fencing token of that assignment). Watch from the listing's revision
// (WatchAssignments with the local id) to follow changes.
func (c *Client) MyResources(ctx context.Context, opts ...ReadOption) (Listing, error) {
	return c.Assignments(ctx, "", opts...)
}

// Register registers (or updates the weight and labels of) resources, all in
// one committed command: all of them or none. InvalidArgument for an empty
// or oversized id, a weight outside 1..1000, too many resources. Like every
// write it is tried again only where the server surely did nothing (no
// connection, NOT_LEADER, NO_LEADER): after an attempt whose outcome is
// unknown (Unavailable: the connection broke, the leader was deposed after
// appending it) a repeat could undo another client's delete made meanwhile,
// so the error is returned; read the resource to learn the outcome.
func (c *Client) Register(ctx context.Context, specs ...ResourceSpec) (WriteResult, error) {
	req := &heartbeatpb.RegisterResourcesRequest{Resources: make([]*heartbeatpb.ResourceSpec, len(specs))}
	for i, s := range specs {
		req.Resources[i] = &heartbeatpb.ResourceSpec{Id: s.ID, Weight: s.Weight, Labels: s.Labels}
	}
	return c.write(ctx, "register", func(ctx context.Context, s heartbeatpb.CoordinatorClient) (written, error) {
		return s.RegisterResources(ctx, req)
	})
}

// Delete deletes resources by id, all in one command. NotFound (nothing
// deleted) when an id is not registered. Caution: a retry after an attempt
// whose outcome was unknown (the connection broke after sending) can answer
// NotFound for a delete that the first attempt did commit.
func (c *Client) Delete(ctx context.Context, ids ...string) (WriteResult, error) {
	req := &heartbeatpb.DeleteResourcesRequest{Ids: ids}
	return c.write(ctx, "delete", func(ctx context.Context, s heartbeatpb.CoordinatorClient) (written, error) {
		return s.DeleteResources(ctx, req)
	})
}

// SetDrain drains (no new resources, its own handed off) or undrains a
// member; "" names the local node (resolved to its id first, so that the
// call means the same node whichever endpoint takes it).
func (c *Client) SetDrain(ctx context.Context, nodeID string, draining bool) (WriteResult, error) {
	id, err := c.idOrLocal(ctx, nodeID)
	if err != nil {
		return WriteResult{}, err
	}
	req := &heartbeatpb.SetDrainRequest{NodeId: id, Draining: draining}
	return c.write(ctx, "set drain", func(ctx context.Context, s heartbeatpb.CoordinatorClient) (written, error) {
		return s.SetDrain(ctx, req)
	})
}

// SetLeaderPriority sets a member's leader priority (0..100); "" names the
// local node. While a healthy, caught-up voter has a higher priority than the
// leader, the leader hands leadership to it.
func (c *Client) SetLeaderPriority(ctx context.Context, nodeID string, priority uint32) (WriteResult, error) {
	id, err := c.idOrLocal(ctx, nodeID)
	if err != nil {
		return WriteResult{}, err
	}
	req := &heartbeatpb.SetLeaderPriorityRequest{NodeId: id, Priority: priority}
	return c.write(ctx, "set leader priority", func(ctx context.Context, s heartbeatpb.CoordinatorClient) (written, error) {
		return s.SetLeaderPriority(ctx, req)
	})
}

func (c *Client) idOrLocal(ctx context.Context, nodeID string) (string, error) {
	if nodeID != "" {
		return nodeID, nil
	}
	return c.LocalID(ctx)
}

// write runs a write call on the write route. It is tried again only where
// the server certainly did nothing (see callSpec.once): a second attempt
// after one of unknown outcome could apply the write twice, around another
// client's write of the same resource (a registration reappearing after a
// delete: the chaos suite's linearizability check caught it).
func (c *Client) write(ctx context.Context, name string, f func(context.Context, heartbeatpb.CoordinatorClient) (written, error)) (WriteResult, error) {
	var out WriteResult
	err := c.invoke(ctx, callSpec{name: name, route: routeWrite, once: true}, func(ctx context.Context, s heartbeatpb.CoordinatorClient, _ string) error {
		resp, err := f(ctx, s)
		if err != nil {
			return err
		}
		out = writeFromPB(resp)
		return nil
	})
	return out, err
}

// AppHeartbeat tells the local sidecar that the application is alive for ttl
// more (100ms..10m; InvalidArgument outside). Send it well within ttl: when
// it lapses the node reports its application unhealthy and drains.
func (c *Client) AppHeartbeat(ctx context.Context, ttl time.Duration) (AppHealth, error) {
	var out AppHealth
	req := &heartbeatpb.AppHeartbeatRequest{Ttl: durationpb.New(ttl)}
	err := c.invoke(ctx, callSpec{name: "app heartbeat", route: routeLocal}, func(ctx context.Context, s heartbeatpb.CoordinatorClient, _ string) error {
		resp, err := s.AppHeartbeat(ctx, req)
		if err != nil {
			return err
		}
		out = AppHealth{AppHealthy: resp.GetAppHealthy(), Draining: resp.GetDraining(), State: heartbeatpb.Short(resp.GetState())}
		return nil
	})
	return out, err
}

// StepDown makes the current leader hand leadership to another voter. It is
// not repeated after an attempt whose outcome is unknown (a repeat could
// depose the new leader too): it moves on to another endpoint only when the
// first could not be connected to, or the server refused before acting.
// Unavailable when no other voter can take over; FailedPrecondition when a
// transfer is already running. The server answers once the new leader is
// known, so an attempt may take up to 15s (above CallTimeout).
func (c *Client) StepDown(ctx context.Context) (LeadershipChange, error) {
	var out LeadershipChange
	err := c.invoke(ctx, callSpec{name: "step down", route: routeWrite, once: true, minTimeout: leadershipCallTimeout}, func(ctx context.Context, s heartbeatpb.CoordinatorClient, addr string) error {
		resp, err := s.StepDown(ctx, &heartbeatpb.StepDownRequest{})
		if err != nil {
			return err
		}
		out = c.changeFromPB(resp.GetChange(), addr)
		return nil
	})
	return out, err
}

// TransferLeadership hands leadership to the named voter (a no-op when it
// already leads, so it is retried freely). NotFound for an unknown id,
// InvalidArgument for a node that cannot lead (non-voter, dead, left,
// draining, unhealthy application).
func (c *Client) TransferLeadership(ctx context.Context, nodeID string) (LeadershipChange, error) {
	var out LeadershipChange
	req := &heartbeatpb.TransferLeadershipRequest{NodeId: nodeID}
	err := c.invoke(ctx, callSpec{name: "transfer leadership", route: routeWrite, minTimeout: leadershipCallTimeout}, func(ctx context.Context, s heartbeatpb.CoordinatorClient, addr string) error {
		resp, err := s.TransferLeadership(ctx, req)
		if err != nil {
			return err
		}
		out = c.changeFromPB(resp.GetChange(), addr)
		return nil
	})
	return out, err
}

// Join adds a node (by id and peer address) to the cluster as a voter or a
// non-voter, and returns the raft index of the configuration change (0 for a
// repeat of the same join, which changes nothing). AlreadyExists when the id
// or the address belongs to another member.
func (c *Client) Join(ctx context.Context, nodeID, peerAddr string, voter bool) (uint64, error) {
	var index uint64
	req := &heartbeatpb.JoinRequest{NodeId: nodeID, PeerAddress: peerAddr, Nonvoter: !voter}
	err := c.invoke(ctx, callSpec{name: "join", route: routeWrite}, func(ctx context.Context, s heartbeatpb.CoordinatorClient, _ string) error {
		resp, err := s.Join(ctx, req)
		if err != nil {
			return err
		}
		index = resp.GetRevision()
		return nil
	})
	return index, err
}

// Remove removes another member from the cluster and records it as left;
// returns the raft index of the change. NotFound for an unknown id;
// FailedPrecondition when it would leave the cluster without a voter
// majority. Not repeated after an attempt whose outcome is unknown.
func (c *Client) Remove(ctx context.Context, nodeID string) (uint64, error) {
	var index uint64
	req := &heartbeatpb.RemoveRequest{NodeId: nodeID}
	err := c.invoke(ctx, callSpec{name: "remove", route: routeWrite, once: true}, func(ctx context.Context, s heartbeatpb.CoordinatorClient, _ string) error {
		resp, err := s.Remove(ctx, req)
		if err != nil {
			return err
		}
		index = resp.GetRevision()
		return nil
	})
	return index, err
}

// Leave makes the LOCAL node leave the cluster gracefully: it drains, hands
// off leadership, is recorded as left, is removed from the configuration and
// stops. It returns once the departure is committed. Bounded by ctx only (not
// CallTimeout) and made once: the node is gone afterwards.
func (c *Client) Leave(ctx context.Context) (LeaveResult, error) {
	var out LeaveResult
	err := c.invoke(ctx, callSpec{name: "leave", route: routeLocal, once: true, noTimeout: true}, func(ctx context.Context, s heartbeatpb.CoordinatorClient, _ string) error {
		resp, err := s.Leave(ctx, &heartbeatpb.LeaveRequest{})
		if err != nil {
			return err
		}
		out = LeaveResult{NodeID: resp.GetNodeId(), Moved: resp.GetMoved()}
		return nil
	})
	return out, err
}
