package api

import (
	"errors"
	"io"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/membership"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// Owner is the optional part of an Election that holds the node's ownership
// lease (*election.Node implements it). Without it KeepAlive reports no
// ownership lease.
type Owner interface {
	// OwnershipLease returns until when the node may work on the resources
	// its membership state gives it; read the owned set after calling it.
	OwnershipLease() time.Time
}

// maxKeepAliveQueue bounds the keep-alive requests read ahead of their
// answers; a client that sends faster than the node answers waits.
const maxKeepAliveQueue = 16

// KeepAlive answers each keep-alive request with the node's leases, in order,
// and pushes a message (seq 0) when the node stops leading, leads with a new
// token, or its owned set changes. See the proto for the client's side.
func (c *Coordinator) KeepAlive(stream grpc.BidiStreamingServer[heartbeatpb.KeepAliveRequest, heartbeatpb.KeepAliveResponse]) error {
	select {
	case <-c.done:
		return status.Error(codes.Unavailable, ErrClosed.Error())
	default:
	}
	first, err := stream.Recv()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return err
	}
	w := c.cfg.Election.Watch()
	if w == nil {
		return status.Error(codes.Unavailable, "keep-alive: node not started")
	}
	defer w.Close()
	ka := &keepAlive{c: c, owned: first.GetOwned() && c.cfg.Membership != nil}
	ctx := stream.Context()

	// The reader belongs to the stream: Recv can only be interrupted by
	// ending the stream, which gRPC does when this handler returns, so the
	// reader ends then (it is not waited for: that would wait for the client).
	reqs := make(chan *heartbeatpb.KeepAliveRequest, maxKeepAliveQueue)
	readErr := make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				readErr <- err
				return
			}
			select {
			case reqs <- req:
			case <-ctx.Done():
				return
			}
		}
	}()

	if err := stream.Send(ka.answer(first.GetSeq())); err != nil {
		return err
	}
	var fsmChanged <-chan struct{}
	if ka.owned {
		_, fsmChanged = c.cfg.Membership.Changed()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.done:
			return status.Error(codes.Unavailable, ErrClosed.Error())
		case err := <-readErr:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case req := <-reqs:
			if err := stream.Send(ka.answer(req.GetSeq())); err != nil {
				return err
			}
		case _, ok := <-w.C():
			if !ok {
				return status.Error(codes.Unavailable, "keep-alive ended: node shutting down")
			}
			if push := ka.leadershipPush(); push != nil {
				if err := stream.Send(push); err != nil {
					return err
				}
			}
		case <-fsmChanged:
			_, fsmChanged = c.cfg.Membership.Changed()
			if push := ka.ownedPush(); push != nil {
				if err := stream.Send(push); err != nil {
					return err
				}
			}
		}
	}
}

// keepAlive is the state of one KeepAlive stream: what it last told the
// client.
type keepAlive struct {
	c     *Coordinator
	owned bool // the client follows the owned set

	sentLeader bool
	sentToken  uint64
	sentRev    uint64 // membership revision of the last owned list considered
	sentOwned  []*heartbeatpb.OwnedResource
	sentOnce   bool
}

// Leases builds one keep-alive answer outside a stream (seq 0): the
// node's leases, each measured now, and the whole owned list when the node
// has a membership state. HTTP's GET /v1/lease serves it. As with a
// KeepAlive answer, a client that starts its timer when it sent the
// request that led to this call, for the remaining time, never outlives
// the node's lease.
func (c *Coordinator) Leases() *heartbeatpb.KeepAliveResponse {
	ka := &keepAlive{c: c, owned: c.cfg.Membership != nil}
	return ka.answer(0)
}

// RemainingMs is how long until until, in whole milliseconds, measured now
// (rounded down; 0 when past or zero): the unit of every lease_remaining_ms
// this package sends.
func RemainingMs(until time.Time) int64 { return remainingMs(until) }

// remainingMs is how long until until, in whole milliseconds, measured now
// (rounded down; 0 when past).
func remainingMs(until time.Time) int64 {
	if until.IsZero() {
		return 0
	}
	d := time.Until(until)
	if d <= 0 {
		return 0
	}
	return d.Milliseconds()
}

// answer builds the answer to request seq: both leases, each measured after
// it was read, and the owned list if it changed.
func (k *keepAlive) answer(seq uint64) *heartbeatpb.KeepAliveResponse {
	resp := &heartbeatpb.KeepAliveResponse{Seq: seq, NodeId: k.c.cfg.ID}
	k.leadership(resp)
	if k.owned {
		if o, ok := k.c.cfg.Election.(Owner); ok {
			// The lease first, the set after: the set is then at least as new
			// as the revision the lease was extended for.
			resp.OwnershipLeaseRemainingMs = remainingMs(o.OwnershipLease())
		}
		k.ownedList(resp)
	}
	return resp
}

// leadership fills the leadership part of resp and remembers it.
func (k *keepAlive) leadership(resp *heartbeatpb.KeepAliveResponse) {
	l := k.c.cfg.Election.Leadership()
	if l.IsLeader {
		resp.IsLeader, resp.FencingToken = true, l.FencingToken
		resp.LeaderLeaseRemainingMs = remainingMs(l.LeaseUntil)
		if resp.LeaderLeaseRemainingMs == 0 {
			resp.IsLeader, resp.FencingToken = false, 0
		}
	}
	k.sentLeader, k.sentToken = resp.IsLeader, resp.FencingToken
}

// leadershipPush returns a push when the leadership changed from what the
// client was last told: it stopped leading, or leads with another token (a
// start needs an answer to a request, so a push never extends a lease; the
// client asks at once when it sees one).
func (k *keepAlive) leadershipPush() *heartbeatpb.KeepAliveResponse {
	l := k.c.cfg.Election.Leadership()
	if l.IsLeader == k.sentLeader && (!l.IsLeader || l.FencingToken == k.sentToken) {
		return nil
	}
	resp := &heartbeatpb.KeepAliveResponse{NodeId: k.c.cfg.ID}
	k.leadership(resp)
	if k.owned {
		resp.Revision = k.sentRev
	}
	return resp
}

// ownedPush returns a push with the new owned list when it changed.
func (k *keepAlive) ownedPush() *heartbeatpb.KeepAliveResponse {
	resp := &heartbeatpb.KeepAliveResponse{NodeId: k.c.cfg.ID, IsLeader: k.sentLeader, FencingToken: k.sentToken}
	if !k.ownedList(resp) {
		return nil
	}
	return resp
}

// ownedList sets resp.Revision and, when the owned set differs from the last
// one sent (or nothing was sent yet), the list. It reports whether the list
// is in resp.
func (k *keepAlive) ownedList(resp *heartbeatpb.KeepAliveResponse) bool {
	fsm := k.c.cfg.Membership
	rev := fsm.Revision()
	resp.Revision = rev
	if k.sentOnce && rev == k.sentRev {
		return false
	}
	var owned []*heartbeatpb.OwnedResource
	fsm.Read(func(s *membership.State) {
		resp.Revision = s.Revision()
		for _, r := range s.Owned(k.c.cfg.ID) {
			owned = append(owned, &heartbeatpb.OwnedResource{Id: r.ID, Epoch: r.Epoch})
		}
	})
	k.sentRev = resp.Revision
	slices.SortFunc(owned, func(a, b *heartbeatpb.OwnedResource) int {
		switch {
		case a.Id < b.Id:
			return -1
		case a.Id > b.Id:
			return 1
		}
		return 0
	})
	if k.sentOnce && sameOwned(owned, k.sentOwned) {
		return false
	}
	k.sentOnce, k.sentOwned = true, owned
	resp.OwnedChanged, resp.Owned = true, owned
	return true
}

func sameOwned(a, b []*heartbeatpb.OwnedResource) bool {
	return slices.EqualFunc(a, b, func(x, y *heartbeatpb.OwnedResource) bool {
		return x.GetId() == y.GetId() && x.GetEpoch() == y.GetEpoch()
	})
}

var _ Owner = (*election.Node)(nil)
