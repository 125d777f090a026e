package api

import (
	"context"
	"errors"
	"io"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

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

// GetLease answers once what a KeepAlive stream answers on every request:
// the node's leases, each measured after the request arrived, and the whole
// owned list when the node has a membership state. As with a KeepAlive
// answer, a client that starts its timer when it sent the request, for the
// remaining time, never outlives the node's lease.
func (c *Coordinator) GetLease(context.Context, *heartbeatpb.GetLeaseRequest) (*heartbeatpb.GetLeaseResponse, error) {
	return &heartbeatpb.GetLeaseResponse{Lease: c.Leases()}, nil
}

// Leases is GetLease's answer, for callers in the node's own process.
func (c *Coordinator) Leases() *heartbeatpb.Lease {
	ka := &keepAlive{c: c, owned: c.cfg.Membership != nil}
	return ka.answer(0).GetLease()
}

// Remaining is how long until until, measured now, rounded down to whole
// milliseconds (0 when past or zero): every lease time this package sends.
func Remaining(until time.Time) time.Duration { return remaining(until) }

// remaining: see Remaining.
func remaining(until time.Time) time.Duration {
	if until.IsZero() {
		return 0
	}
	d := time.Until(until)
	if d <= 0 {
		return 0
	}
	return d.Truncate(time.Millisecond)
}

// answer builds the answer to request seq: both leases, each measured after
// it was read, and the owned list if it changed.
func (k *keepAlive) answer(seq uint64) *heartbeatpb.KeepAliveResponse {
	resp := k.response(seq)
	k.leadership(resp.Lease)
	if k.owned {
		if o, ok := k.c.cfg.Election.(Owner); ok {
			// The lease first, the set after: the set is then at least as new
			// as the revision the lease was extended for.
			resp.Lease.OwnershipLeaseRemaining = durationpb.New(remaining(o.OwnershipLease()))
		}
		k.ownedList(resp)
	}
	return resp
}

// response is an empty answer to request seq (0: a push).
func (k *keepAlive) response(seq uint64) *heartbeatpb.KeepAliveResponse {
	return &heartbeatpb.KeepAliveResponse{Seq: seq, Lease: &heartbeatpb.Lease{NodeId: k.c.cfg.ID}}
}

// leadership fills the leadership part of lease and remembers it.
func (k *keepAlive) leadership(lease *heartbeatpb.Lease) {
	l := k.c.cfg.Election.Leadership()
	if l.IsLeader {
		left := remaining(l.LeaseUntil)
		if left > 0 {
			lease.IsLeader, lease.FencingToken = true, l.FencingToken
			lease.LeaderLeaseRemaining = durationpb.New(left)
		}
	}
	k.sentLeader, k.sentToken = lease.IsLeader, lease.FencingToken
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
	resp := k.response(0)
	k.leadership(resp.Lease)
	if k.owned {
		resp.Lease.Revision = k.sentRev
	}
	return resp
}

// ownedPush returns a push with the new owned list when it changed.
func (k *keepAlive) ownedPush() *heartbeatpb.KeepAliveResponse {
	resp := k.response(0)
	resp.Lease.IsLeader, resp.Lease.FencingToken = k.sentLeader, k.sentToken
	if !k.ownedList(resp) {
		return nil
	}
	return resp
}

// ownedList sets the lease's revision and, when the owned set differs from
// the last one sent (or nothing was sent yet), the list. It reports whether
// the list is in resp.
func (k *keepAlive) ownedList(resp *heartbeatpb.KeepAliveResponse) bool {
	fsm := k.c.cfg.Membership
	rev := fsm.Revision()
	lease := resp.Lease
	lease.Revision = rev
	if k.sentOnce && rev == k.sentRev {
		return false
	}
	var owned []*heartbeatpb.OwnedResource
	fsm.Read(func(s *membership.State) {
		lease.Revision = s.Revision()
		for _, r := range s.Owned(k.c.cfg.ID) {
			owned = append(owned, &heartbeatpb.OwnedResource{Id: r.ID, Epoch: r.Epoch})
		}
	})
	k.sentRev = lease.Revision
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
	resp.OwnedChanged, lease.Owned = true, owned
	return true
}

func sameOwned(a, b []*heartbeatpb.OwnedResource) bool {
	return slices.EqualFunc(a, b, func(x, y *heartbeatpb.OwnedResource) bool {
		return x.GetId() == y.GetId() && x.GetEpoch() == y.GetEpoch()
	})
}

var _ Owner = (*election.Node)(nil)
