package api

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/membership"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// WatchAssignments streams the resource changes after req.from_revision (0:
// after the current revision) from this node's change feed: every change of
// every revision, in order, none twice. The first message (kind "start")
// carries the revision the stream starts after. A revision the feed no
// longer holds ends the stream with OutOfRange (list again and resume from
// the listing's revision); Close ends it with Unavailable. A slow reader
// never blocks the node: the feed is a bounded ring the stream reads at its
// own pace, and falling behind it is the OutOfRange case.
func (c *Coordinator) WatchAssignments(req *heartbeatpb.WatchAssignmentsRequest, stream grpc.ServerStreamingServer[heartbeatpb.AssignmentEvent]) error {
	fsm, err := c.membershipOn()
	if err != nil {
		return err
	}
	from := req.GetFromRevision()
	if from == 0 {
		from = fsm.Revision()
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	go func() { // ends with the stream: cancel runs on return
		select {
		case <-c.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := stream.Send(&heartbeatpb.AssignmentEvent{Revision: from, Kind: "start"}); err != nil {
		return err
	}
	sub := fsm.Subscribe(from)
	node := req.GetNodeId()
	for {
		evs, err := sub.Next(ctx)
		switch {
		case errors.Is(err, membership.ErrCompacted):
			return status.Errorf(codes.OutOfRange, "watch assignments: %v; list the resources again and resume from the listing's revision", err)
		case err != nil:
			select {
			case <-c.done:
				return status.Error(codes.Unavailable, ErrClosed.Error())
			default:
			}
			if stream.Context().Err() != nil {
				return nil
			}
			return status.Error(codes.Internal, err.Error())
		}
		for _, e := range evs {
			ev := assignmentEvent(e)
			if ev == nil || (node != "" && ev.Owner != node && ev.PrevOwner != node) {
				continue
			}
			if err := stream.Send(ev); err != nil {
				return err
			}
		}
	}
}

// assignmentEvent converts a resource event; nil for member events.
func assignmentEvent(e membership.Event) *heartbeatpb.AssignmentEvent {
	ev := &heartbeatpb.AssignmentEvent{Revision: e.Revision, ResourceId: e.ResourceID, Owner: e.Owner, PrevOwner: e.PrevOwner}
	switch e.Kind {
	case membership.EventResource:
		ev.Kind = "registered"
	case membership.EventAssigned:
		ev.Kind, ev.Epoch = "assigned", e.Epoch
	case membership.EventResourceDeleted:
		ev.Kind = "deleted"
	default:
		return nil
	}
	return ev
}
