package api

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/membership"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// WatchAssignments streams the resource changes after req.from_revision (0:
// after the current revision) from this node's change feed: every change of
// every revision, in order, none twice. The first message (kind "start")
// carries the revision the stream starts after. A revision the feed no
// longer holds is OutOfRange, at once or later (list again and resume from
// the listing's revision); Close ends the stream with Unavailable. A node_id
// that names no member (yet) is not an error: its changes are those of a
// member that owns nothing. A slow reader
// never blocks the node: the feed is a bounded ring the stream reads at its
// own pace, and falling behind it is the OutOfRange case.
func (c *Coordinator) WatchAssignments(req *heartbeatpb.WatchAssignmentsRequest, stream grpc.ServerStreamingServer[heartbeatpb.WatchAssignmentsResponse]) error {
	fsm, err := c.membershipOn()
	if err != nil {
		return err
	}
	// The stream starts from a state at least as new as every write
	// acknowledged before the call (unless stale), and never ahead of what
	// this node has applied.
	info, err := c.read(stream.Context(), req.GetConsistency())
	if err != nil {
		return err
	}
	from := req.GetFromRevision()
	if cur := fsm.Revision(); from == 0 {
		from = cur
	} else if from > cur {
		return status.Errorf(codes.OutOfRange, "watch assignments: revision %d is ahead of this node's %d (of a consistent read); list the resources and watch from the listing's revision", from, cur)
	}
	// Refuse up front what the stream would fail on at once, so that the
	// answer (over HTTP: a 400) is the error, not a start event then it.
	if _, err := fsm.Changes(from, 1); errors.Is(err, membership.ErrCompacted) {
		return status.Errorf(codes.OutOfRange, "watch assignments: %v; list the resources again and resume from the listing's revision", err)
	}
	info.Revision = from
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	// Close ends the stream; a callback, not a goroutine per watch.
	stop := context.AfterFunc(c.running, cancel)
	defer stop()
	if err := stream.Send(&heartbeatpb.WatchAssignmentsResponse{Revision: from, Kind: heartbeatpb.ChangeKind_CHANGE_KIND_START, Read: info}); err != nil {
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
			if ev == nil || (node != "" && ev.OwnerNodeId != node && ev.PrevOwnerNodeId != node) {
				continue
			}
			if err := stream.Send(ev); err != nil {
				return err
			}
		}
	}
}

// assignmentEvent converts a resource event; nil for member events.
func assignmentEvent(e membership.Event) *heartbeatpb.WatchAssignmentsResponse {
	ev := &heartbeatpb.WatchAssignmentsResponse{Revision: e.Revision, ResourceId: e.ResourceID, OwnerNodeId: e.Owner, PrevOwnerNodeId: e.PrevOwner}
	switch e.Kind {
	case membership.EventResource:
		ev.Kind = heartbeatpb.ChangeKind_CHANGE_KIND_REGISTERED
	case membership.EventAssigned:
		ev.Kind, ev.Epoch = heartbeatpb.ChangeKind_CHANGE_KIND_ASSIGNED, e.Epoch
	case membership.EventResourceDeleted:
		ev.Kind = heartbeatpb.ChangeKind_CHANGE_KIND_DELETED
	default:
		return nil
	}
	return ev
}

// membersPoll is how often a members watch re-reads the raft configuration:
// a suffrage change (a promotion) comes with no leadership or membership
// event.
const membersPoll = time.Second

// WatchMembers sends the full member list (as Members) first and again
// after every change of a member's raft place (address, suffrage, leader),
// state, health, drain, addresses or leader priority; owned counts and last
// contacts are current in each list, but their changes alone send none. A
// goroutine of the stream computes the lists on membership applies,
// leadership events and a raft configuration poll, and leaves the latest
// one in a single slot: it never waits for the reader, and a list replaced
// before it was sent makes the next one carry fell_behind=true. Close ends
// the stream with Unavailable.
func (c *Coordinator) WatchMembers(req *heartbeatpb.WatchMembersRequest, stream grpc.ServerStreamingServer[heartbeatpb.WatchMembersResponse]) error {
	select {
	case <-c.done:
		return status.Error(codes.Unavailable, ErrClosed.Error())
	default:
	}
	info, err := c.read(stream.Context(), req.GetConsistency())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(stream.Context())
	slot := &membersSlot{ready: make(chan struct{}, 1)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); c.produceMembers(ctx, slot) }()
	defer func() { cancel(); wg.Wait() }()
	c.cfg.Logger.Debug("members watch opened")
	defer c.cfg.Logger.Debug("members watch closed")
	for {
		select {
		case <-c.done:
			return status.Error(codes.Unavailable, ErrClosed.Error())
		case <-ctx.Done():
			return nil
		case <-slot.ready:
			ev, err := slot.take()
			if err != nil {
				return err
			}
			if ev == nil {
				continue
			}
			if info != nil {
				ev.Read, info = info, nil // the first list says how fresh it is
			}
			if err := stream.Send(ev); err != nil {
				return err
			}
		}
	}
}

// membersSlot holds the latest member list not yet sent.
type membersSlot struct {
	mu      sync.Mutex
	ev      *heartbeatpb.WatchMembersResponse
	skipped bool  // a list was replaced before it was sent
	err     error // the producer's end (the node stopped)
	ready   chan struct{}
}

func (s *membersSlot) put(ev *heartbeatpb.WatchMembersResponse, err error) {
	s.mu.Lock()
	if s.ev != nil && ev != nil {
		s.skipped = true
	}
	if ev != nil {
		s.ev = ev
	}
	if err != nil {
		s.err = err
	}
	s.mu.Unlock()
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

// take returns the pending list (nil if none), with fell_behind set when
// lists were skipped, or the producer's error once no list is pending.
func (s *membersSlot) take() (*heartbeatpb.WatchMembersResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ev := s.ev
	if ev == nil {
		return nil, s.err
	}
	ev.FellBehind, s.ev, s.skipped = s.skipped, nil, false
	return ev, nil
}

// produceMembers computes member lists until ctx ends, putting each one
// that differs from the previous one (see membersKey) into slot.
func (c *Coordinator) produceMembers(ctx context.Context, slot *membersSlot) {
	var events <-chan election.Leadership
	if w := c.cfg.Election.Watch(); w != nil {
		defer w.Close()
		events = w.C()
	}
	t := time.NewTicker(membersPoll)
	defer t.Stop()
	fsm := c.cfg.Membership
	lastKey, first := "", true
	var lastMRev uint64
	var changed <-chan struct{}
	dirty := true
	for {
		if fsm != nil {
			_, changed = fsm.Changed() // before the read: no apply can slip between
			var mrev uint64
			fsm.Read(func(s *membership.State) { mrev = s.MemberRevision() })
			if mrev != lastMRev {
				lastMRev, dirty = mrev, true
			}
		}
		if dirty {
			dirty = false
			ev, err := c.membersEvent()
			switch {
			case err != nil && errors.Is(err, election.ErrShutdown):
				slot.put(nil, status.Errorf(codes.Unavailable, "members watch ended: %v", err))
				return
			case err != nil:
				c.cfg.Logger.Debug("members watch: cannot list members", "error", err)
			default:
				if key := membersKey(ev.GetMembers()); first || key != lastKey {
					first, lastKey = false, key
					slot.put(ev, nil)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case _, ok := <-events:
			if !ok {
				slot.put(nil, status.Error(codes.Unavailable, "members watch ended: node shutting down"))
				return
			}
			dirty = true
		case <-t.C:
			dirty = true
		}
	}
}

// membersEvent lists the members with the membership revision they reflect.
func (c *Coordinator) membersEvent() (*heartbeatpb.WatchMembersResponse, error) {
	raftMembers, err := c.raftMembers()
	if err != nil {
		return nil, err
	}
	ms, rev := mergeMembersAt(raftMembers, c.cfg.Membership)
	return &heartbeatpb.WatchMembersResponse{Members: ms, Revision: rev}, nil
}

// membersKey identifies a member list without its volatile fields (last
// contact, owned count).
func membersKey(ms []*heartbeatpb.Member) string {
	var b strings.Builder
	for _, m := range ms {
		fmt.Fprintf(&b, "%q %q %s %t %s %t %t %q %q %d\n", m.GetNodeId(), m.GetPeerAddress(), m.GetSuffrage(), m.GetRaftLeader(),
			m.GetState(), m.GetAppHealthy(), m.GetDraining(), m.GetClientAddress(), m.GetHttpAddress(), m.GetLeaderPriority())
	}
	return b.String()
}
