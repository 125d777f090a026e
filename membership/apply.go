package membership

import (
	"fmt"
	"slices"

	pb "github.com/heartbeat-sidecar/heartbeat/proto/membershippb"
)

// EventKind says what an Event reports.
type EventKind uint8

// Event kinds.
const (
	EventMember          EventKind = 1 // a member was added or changed; Member holds its new value
	EventMemberRemoved   EventKind = 2 // a member was removed
	EventResource        EventKind = 3 // a resource was registered or its weight/labels changed
	EventResourceDeleted EventKind = 4 // a resource was deleted; PrevOwner was its owner
	EventAssigned        EventKind = 5 // a resource changed owner: PrevOwner -> Owner at Epoch
)

// String names the kind.
func (k EventKind) String() string {
	switch k {
	case EventMember:
		return "member"
	case EventMemberRemoved:
		return "member-removed"
	case EventResource:
		return "resource"
	case EventResourceDeleted:
		return "resource-deleted"
	case EventAssigned:
		return "assigned"
	}
	return fmt.Sprintf("unknown(%d)", uint8(k))
}

// Event is one change of the replicated state. Every event of one command
// carries the same Revision (the command's raft index).
type Event struct {
	Revision   uint64
	Kind       EventKind
	MemberID   string  // EventMember, EventMemberRemoved
	Member     *Member // EventMember: the member after the change (a private copy)
	ResourceID string  // resource events
	Owner      string  // EventAssigned, EventResource: the owner after the change
	PrevOwner  string  // EventAssigned, EventResourceDeleted: the owner before
	Epoch      uint64  // EventAssigned: the new epoch (= Revision)
}

// Result is what FSM.Apply returns for an accepted command (a rejected one
// returns an error value instead).
type Result struct {
	Revision uint64   // raft index of the command
	Changed  int      // members or resources actually changed
	Skipped  int      // Assign: moves skipped because their expectation no longer held
	NotFound []string // DeleteResources: ids that were not registered
}

// apply runs one validated command at index. It changes nothing when it
// returns an error: every check runs before the first mutation.
func (s *State) apply(index uint64, cmd *pb.Command) (*Result, []Event, error) {
	res := &Result{Revision: index}
	var evs []Event
	memberEvent := func(m *Member) {
		s.memberRev = index
		c := *m
		evs = append(evs, Event{Revision: index, Kind: EventMember, MemberID: m.ID, Member: &c})
		res.Changed++
	}
	switch op := cmd.GetOp().(type) {
	case *pb.Command_UpsertMember:
		u := op.UpsertMember
		for _, o := range s.members {
			if o.ID != u.GetId() && o.State != StateLeft && o.PeerAddr == u.GetPeerAddress() {
				return nil, nil, fmt.Errorf("%w: %q is used by %q", ErrAddressInUse, u.GetPeerAddress(), o.ID)
			}
		}
		capacity := u.GetCapacity()
		if capacity == 0 {
			capacity = DefaultCapacity
		}
		m, ok := s.members[u.GetId()]
		if !ok {
			m = &Member{ID: u.GetId(), State: StateAlive, AppHealthy: true, StateRevision: index, JoinRevision: index}
			s.members[m.ID] = m
		}
		next := *m
		next.PeerAddr, next.ClientAddr, next.HTTPAddr = u.GetPeerAddress(), u.GetClientAddress(), u.GetHttpAddress()
		next.Voter, next.Capacity = u.GetVoter(), capacity
		if u.LeaderPriority != nil {
			next.LeaderPriority = u.GetLeaderPriority()
		}
		if next.State == StateLeft { // a rejoin after a graceful leave
			next.State, next.StateRevision, next.AppHealthy, next.Draining = StateAlive, index, true, false
		}
		if !ok || next != *m {
			*m = next
			memberEvent(m)
		}

	case *pb.Command_MarkSuspect:
		m, err := s.transition(op.MarkSuspect.GetMemberId(), StateSuspect, StateAlive)
		if err != nil {
			return nil, nil, err
		}
		if m != nil {
			m.StateRevision = index
			memberEvent(m)
		}
	case *pb.Command_MarkDead:
		m, err := s.transition(op.MarkDead.GetMemberId(), StateDead, StateAlive, StateSuspect)
		if err != nil {
			return nil, nil, err
		}
		if m != nil {
			m.StateRevision = index
			memberEvent(m)
		}
	case *pb.Command_MarkAlive:
		m, err := s.transition(op.MarkAlive.GetMemberId(), StateAlive, StateSuspect, StateDead)
		if err != nil {
			return nil, nil, err
		}
		if m != nil {
			m.StateRevision = index
			memberEvent(m)
		}
	case *pb.Command_MarkLeft:
		m, err := s.transition(op.MarkLeft.GetMemberId(), StateLeft, StateAlive, StateSuspect, StateDead)
		if err != nil {
			return nil, nil, err
		}
		if m != nil {
			m.StateRevision = index
			memberEvent(m)
		}
	case *pb.Command_SetAppHealth:
		m, ok := s.members[op.SetAppHealth.GetMemberId()]
		if !ok {
			return nil, nil, fmt.Errorf("%w: %q", ErrUnknownMember, op.SetAppHealth.GetMemberId())
		}
		if m.AppHealthy != op.SetAppHealth.GetHealthy() {
			m.AppHealthy = op.SetAppHealth.GetHealthy()
			memberEvent(m)
		}
	case *pb.Command_SetDrain:
		m, ok := s.members[op.SetDrain.GetMemberId()]
		if !ok {
			return nil, nil, fmt.Errorf("%w: %q", ErrUnknownMember, op.SetDrain.GetMemberId())
		}
		if m.Draining != op.SetDrain.GetDraining() {
			m.Draining = op.SetDrain.GetDraining()
			memberEvent(m)
		}
	case *pb.Command_SetLeaderPriority:
		m, ok := s.members[op.SetLeaderPriority.GetMemberId()]
		if !ok {
			return nil, nil, fmt.Errorf("%w: %q", ErrUnknownMember, op.SetLeaderPriority.GetMemberId())
		}
		if m.LeaderPriority != op.SetLeaderPriority.GetPriority() {
			m.LeaderPriority = op.SetLeaderPriority.GetPriority()
			memberEvent(m)
		}
	case *pb.Command_RemoveMember:
		id := op.RemoveMember.GetMemberId()
		m, ok := s.members[id]
		if !ok {
			return nil, nil, fmt.Errorf("%w: %q", ErrUnknownMember, id)
		}
		if (m.State != StateDead && m.State != StateLeft) || len(s.owned[id]) > 0 {
			return nil, nil, fmt.Errorf("%w: %q is %s and owns %d resources", ErrMemberBusy, id, m.State, len(s.owned[id]))
		}
		delete(s.members, id)
		s.memberRev = index
		evs = append(evs, Event{Revision: index, Kind: EventMemberRemoved, MemberID: id})
		res.Changed++

	case *pb.Command_RegisterResources:
		for _, spec := range op.RegisterResources.GetResources() {
			w := spec.GetWeight()
			if w == 0 {
				w = 1
			}
			labels := toLabels(spec.GetLabels())
			r, ok := s.get(spec.GetId())
			if ok && r.Weight == w && slices.Equal(r.Labels, labels) {
				continue
			}
			if !ok {
				r = s.add(Resource{ID: spec.GetId()})
			}
			s.setLabels(r, w, labels)
			evs = append(evs, Event{Revision: index, Kind: EventResource, ResourceID: r.ID, Owner: r.Owner})
			res.Changed++
		}
	case *pb.Command_DeleteResources:
		// All or none, decided here in log order: concurrent deletes of one
		// resource cannot both find it.
		var missing []string
		for _, id := range op.DeleteResources.GetIds() {
			if _, ok := s.get(id); !ok {
				missing = append(missing, id)
			}
		}
		if len(missing) > 0 {
			if len(missing) > 10 {
				missing = append(missing[:10:10], "...")
			}
			return nil, nil, fmt.Errorf("%w: %q (nothing deleted)", ErrUnknownResource, missing)
		}
		for _, id := range op.DeleteResources.GetIds() {
			r, _ := s.get(id)
			prev := r.Owner
			if prev != "" {
				s.noteGone(id, index)
			}
			s.setOwner(r, "", 0)
			s.remove(id)
			evs = append(evs, Event{Revision: index, Kind: EventResourceDeleted, ResourceID: id, PrevOwner: prev})
			res.Changed++
		}
	case *pb.Command_Assign:
		for _, mv := range op.Assign.GetMoves() {
			r, ok := s.get(mv.GetResourceId())
			if !ok || r.Owner != mv.GetFrom() || r.Epoch != mv.GetFromEpoch() {
				res.Skipped++
				continue
			}
			prev := r.Owner
			if mv.GetTo() == "" {
				// A release: the resource becomes unowned (epoch 0).
				s.setOwner(r, "", 0)
				evs = append(evs, Event{Revision: index, Kind: EventAssigned, ResourceID: r.ID, PrevOwner: prev})
				res.Changed++
				continue
			}
			to, toOK := s.members[mv.GetTo()]
			if !toOK || !to.CanTake() || r.Owner == to.ID {
				res.Skipped++
				continue
			}
			s.setOwner(r, to.ID, index)
			evs = append(evs, Event{Revision: index, Kind: EventAssigned, ResourceID: r.ID, Owner: to.ID, PrevOwner: prev, Epoch: index})
			res.Changed++
		}
	default:
		return nil, nil, fmt.Errorf("%w: unknown op %T", ErrInvalidCommand, op)
	}
	return res, evs, nil
}

// transition moves member id to state `to` if its state is one of `from`. It
// returns (nil, nil) when the member already is in `to` (an idempotent
// repeat) and ErrInvalidTransition for any other state.
func (s *State) transition(id string, to MemberState, from ...MemberState) (*Member, error) {
	m, ok := s.members[id]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownMember, id)
	}
	if m.State == to {
		return nil, nil
	}
	if !slices.Contains(from, m.State) {
		return nil, fmt.Errorf("%w: %q is %s, cannot become %s", ErrInvalidTransition, id, m.State, to)
	}
	m.State = to
	return m, nil
}

func toLabels(ls []*pb.Label) []Label {
	if len(ls) == 0 {
		return nil
	}
	out := make([]Label, len(ls))
	for i, l := range ls {
		out[i] = Label{Key: l.GetKey(), Value: l.GetValue()}
	}
	return out
}
