package membership

import (
	"fmt"
	"hash/fnv"
	"sort"
)

// MemberState is where a member stands: Alive, Suspect, Dead or Left.
type MemberState uint8

// Member states. The zero value is not a valid state.
const (
	StateAlive   MemberState = 1 // answering; may own and receive resources
	StateSuspect MemberState = 2 // late; keeps what it owns, receives nothing new
	StateDead    MemberState = 3 // declared dead; its resources move
	StateLeft    MemberState = 4 // left gracefully; its resources move
)

// String returns "alive", "suspect", "dead", "left" or "unknown(n)".
func (s MemberState) String() string {
	switch s {
	case StateAlive:
		return "alive"
	case StateSuspect:
		return "suspect"
	case StateDead:
		return "dead"
	case StateLeft:
		return "left"
	}
	return fmt.Sprintf("unknown(%d)", uint8(s))
}

// Member is one node of the cluster as the replicated state knows it.
type Member struct {
	ID         string
	PeerAddr   string // raft / peer gRPC address; the detector keys heartbeats by it
	ClientAddr string // client gRPC address
	HTTPAddr   string // HTTP address
	Voter      bool
	Capacity   uint32 // relative weight in assignment, MinWeight..MaxWeight
	State      MemberState
	AppHealthy bool // the local application reports healthy
	Draining   bool // an operator (or a planned stop) asked it to hand off its work
	// LeaderPriority (0..MaxLeaderPriority): the leader hands leadership to a
	// healthy voter whose priority is higher than its own.
	LeaderPriority uint32
	// StateRevision is the raft index that set State; JoinRevision the index
	// that first added the member.
	StateRevision uint64
	JoinRevision  uint64
}

// CanKeep reports whether the member may keep the resources it owns: alive or
// suspect (a suspect may only be late), application healthy, not draining.
func (m *Member) CanKeep() bool {
	return (m.State == StateAlive || m.State == StateSuspect) && m.AppHealthy && !m.Draining
}

// CanTake reports whether the member may receive resources: alive, healthy,
// not draining.
func (m *Member) CanTake() bool {
	return m.State == StateAlive && m.AppHealthy && !m.Draining
}

// Label is a key/value pair on a resource.
type Label struct {
	Key, Value string
}

// Resource is a registered resource and its assignment. Labels are sorted by
// key and must be treated as read-only: copies share the slice.
type Resource struct {
	ID     string
	Weight uint32
	Labels []Label
	Owner  string // "" when unassigned
	Epoch  uint64 // raft index that made the assignment: the owner's fencing token
}

type resEntry struct {
	Resource
	hash uint64 // fnv-1a of ID, the resource's half of the rendezvous hash
}

// State is the replicated state. Obtain it only through FSM.Read (which holds
// the FSM's read lock while the callback runs) or build one in tests with
// NewState; its methods must not be called after the callback returns.
type State struct {
	revision  uint64
	memberRev uint64 // revision of the last member change (or of the restored snapshot)
	members   map[string]*Member
	res       []resEntry                     // dense, in no particular order (cache-friendly scans)
	byID      map[string]int32               // resource id -> position in res
	owned     map[string]map[string]struct{} // owner id -> resource ids
	unowned   map[string]struct{}            // resource ids without an owner
	// gone: ids of resources deleted while owned (-> the delete's
	// revision), until one of that id is placed again. Advisory, for the
	// leader's reconciler (see Gone); not in snapshots.
	gone map[string]uint64
	// resBytes is the sum of ResourceBytes over the resources (Bytes).
	resBytes int64
}

// ResourceOverhead is what ResourceBytes counts for a resource besides its
// id and labels: its weight, owner, epoch and the indexes that find it.
const ResourceOverhead = 64

// ResourceBytes is the size a resource counts toward the state's size
// (State.Bytes, the quota of --quota-bytes): its id, its labels' keys and
// values, and ResourceOverhead. An estimate of its share of the snapshot
// and of memory, the same on every node.
func ResourceBytes(id string, labels []Label) int64 {
	n := int64(ResourceOverhead + len(id))
	for _, l := range labels {
		n += int64(len(l.Key) + len(l.Value))
	}
	return n
}

// Bytes is the size of the state as the quota counts it: the sum of
// ResourceBytes over the resources (members are few and not counted). It
// is kept up to date by every change: O(1).
func (s *State) Bytes() int64 { return s.resBytes }

// NewState returns an empty state at revision 0.
func NewState() *State {
	return &State{
		members: make(map[string]*Member),
		byID:    make(map[string]int32),
		owned:   make(map[string]map[string]struct{}),
		unowned: make(map[string]struct{}),
		gone:    make(map[string]uint64),
	}
}

// maxGone bounds the gone set; past it, entries more than goneKeep
// revisions old are forgotten (far more than one ownership lease ago).
const (
	maxGone  = 1 << 16
	goneKeep = 100_000
)

// Gone reports whether a resource of this id was deleted while it had an
// owner and none of that id has been placed since: its old owner may still
// work on it until its ownership lease runs out, so the leader waits before
// it places a resource registered again under the id (as after a release).
func (s *State) Gone(id string) bool {
	_, ok := s.gone[id]
	return ok
}

// noteGone records that id was deleted from owner-ship at index.
func (s *State) noteGone(id string, index uint64) {
	if len(s.gone) >= maxGone {
		for k, rev := range s.gone {
			if rev+goneKeep < index {
				delete(s.gone, k)
			}
		}
	}
	s.gone[id] = index
}

// Revision is the raft index of the last applied command.
func (s *State) Revision() uint64 { return s.revision }

// MemberRevision is the revision of the last member change (added, removed,
// state, health, drain, addresses, capacity, leader priority); after a restore, the
// snapshot's revision. While it stays the same, only unowned resources can
// need a move (see PlanUnowned).
func (s *State) MemberRevision() uint64 { return s.memberRev }

// NumUnowned is the number of resources without an owner.
func (s *State) NumUnowned() int { return len(s.unowned) }

// Member returns a copy of the member with this id.
func (s *State) Member(id string) (Member, bool) {
	m, ok := s.members[id]
	if !ok {
		return Member{}, false
	}
	return *m, true
}

// Members returns copies of all members sorted by id.
func (s *State) Members() []Member {
	out := make([]Member, 0, len(s.members))
	for _, m := range s.members {
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Resource returns a copy of the resource with this id.
func (s *State) Resource(id string) (Resource, bool) {
	r, ok := s.get(id)
	if !ok {
		return Resource{}, false
	}
	return r.Resource, true
}

// NumResources is the number of registered resources.
func (s *State) NumResources() int { return len(s.res) }

// get returns the entry of resource id; the pointer is valid until the next
// add or remove.
func (s *State) get(id string) (*resEntry, bool) {
	i, ok := s.byID[id]
	if !ok {
		return nil, false
	}
	return &s.res[i], true
}

// add appends a new, unowned resource and returns its entry.
func (s *State) add(r Resource) *resEntry {
	s.resBytes += ResourceBytes(r.ID, r.Labels)
	s.res = append(s.res, resEntry{Resource: r, hash: hashID(r.ID)})
	s.byID[r.ID] = int32(len(s.res) - 1)
	e := &s.res[len(s.res)-1]
	s.unowned[r.ID] = struct{}{}
	return e
}

// remove deletes resource id (which must exist and be unowned) by moving the
// last entry into its place.
func (s *State) remove(id string) {
	i := s.byID[id]
	s.resBytes -= ResourceBytes(id, s.res[i].Labels)
	last := int32(len(s.res) - 1)
	if i != last {
		s.res[i] = s.res[last]
		s.byID[s.res[i].ID] = i
	}
	s.res[last] = resEntry{}
	s.res = s.res[:last]
	delete(s.byID, id)
	delete(s.unowned, id)
}

// setLabels sets a resource's weight and labels, keeping Bytes.
func (s *State) setLabels(e *resEntry, weight uint32, labels []Label) {
	s.resBytes += ResourceBytes(e.ID, labels) - ResourceBytes(e.ID, e.Labels)
	e.Weight, e.Labels = weight, labels
}

// EachResource calls fn for every resource in no particular order until fn
// returns false.
func (s *State) EachResource(fn func(Resource) bool) {
	for i := range s.res {
		if !fn(s.res[i].Resource) {
			return
		}
	}
}

// Owned returns the resources owned by member id, sorted by id.
func (s *State) Owned(id string) []Resource {
	set := s.owned[id]
	out := make([]Resource, 0, len(set))
	for rid := range set {
		r, _ := s.get(rid)
		out = append(out, r.Resource)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// NumOwned is the number of resources member id owns (O(1)).
func (s *State) NumOwned(id string) int { return len(s.owned[id]) }

// View returns a deep, sorted copy of the whole state. It costs O(n log n) in
// the number of resources: the API's list calls use it, hot paths do not.
func (s *State) View() View {
	v := View{Revision: s.revision, Members: s.Members(), Resources: make([]Resource, 0, len(s.res))}
	for i := range s.res {
		v.Resources = append(v.Resources, s.res[i].Resource)
	}
	sort.Slice(v.Resources, func(i, j int) bool { return v.Resources[i].ID < v.Resources[j].ID })
	return v
}

// View is a point-in-time copy of the state: members and resources sorted by id.
type View struct {
	Revision  uint64
	Members   []Member
	Resources []Resource
}

// Check verifies the state's internal consistency: every resource's owner is
// a known member and the owner index lists each owned resource exactly once,
// under its owner. It is the in-memory form of CheckOneOwner.
func (s *State) Check() error {
	count := 0
	for owner, set := range s.owned {
		if _, ok := s.members[owner]; !ok {
			return fmt.Errorf("owner index names unknown member %q", owner)
		}
		for rid := range set {
			r, ok := s.get(rid)
			if !ok {
				return fmt.Errorf("owner index of %q names unknown resource %q", owner, rid)
			}
			if r.Owner != owner {
				return fmt.Errorf("resource %q has two owners: %q (assignment) and %q (index)", rid, r.Owner, owner)
			}
			count++
		}
	}
	owned := 0
	for id := range s.unowned {
		if r, ok := s.get(id); !ok || r.Owner != "" {
			return fmt.Errorf("unowned index lists %q, which is missing or owned", id)
		}
	}
	if len(s.byID) != len(s.res) {
		return fmt.Errorf("id index holds %d entries for %d resources", len(s.byID), len(s.res))
	}
	var size int64
	for i := range s.res {
		size += ResourceBytes(s.res[i].ID, s.res[i].Labels)
	}
	if size != s.resBytes {
		return fmt.Errorf("state size %d, the resources add up to %d", s.resBytes, size)
	}
	for i := range s.res {
		r, id := &s.res[i], s.res[i].ID
		if j, ok := s.byID[id]; !ok || int(j) != i {
			return fmt.Errorf("id index of %q points to %d, entry is at %d", id, j, i)
		}
		if r.hash != hashID(id) {
			return fmt.Errorf("resource %q has a stale hash", id)
		}
		if r.Owner == "" {
			if r.Epoch != 0 {
				return fmt.Errorf("unowned resource %q has epoch %d", id, r.Epoch)
			}
			if _, ok := s.unowned[id]; !ok {
				return fmt.Errorf("unowned resource %q is missing from the unowned index", id)
			}
			continue
		}
		owned++
		if _, ok := s.owned[r.Owner][id]; !ok {
			return fmt.Errorf("resource %q owned by %q is missing from the owner index", id, r.Owner)
		}
		if r.Epoch == 0 || r.Epoch > s.revision {
			return fmt.Errorf("resource %q has epoch %d at revision %d", id, r.Epoch, s.revision)
		}
	}
	if owned != count {
		return fmt.Errorf("owner index holds %d entries for %d owned resources", count, owned)
	}
	return nil
}

// CheckOneOwner checks invariant S3 on a view: every resource appears once
// (so it has at most one owner), every owner is a member of the view, and
// every assignment has an epoch no later than the view's revision. It returns
// the first violation found.
func CheckOneOwner(v View) error {
	members := make(map[string]struct{}, len(v.Members))
	for _, m := range v.Members {
		members[m.ID] = struct{}{}
	}
	owners := make(map[string]string, len(v.Resources))
	for _, r := range v.Resources {
		if prev, dup := owners[r.ID]; dup {
			return fmt.Errorf("resource %q has two owners: %q and %q", r.ID, prev, r.Owner)
		}
		owners[r.ID] = r.Owner
		if r.Owner == "" {
			continue
		}
		if _, ok := members[r.Owner]; !ok {
			return fmt.Errorf("resource %q owned by unknown member %q", r.ID, r.Owner)
		}
		if r.Epoch == 0 || r.Epoch > v.Revision {
			return fmt.Errorf("resource %q has epoch %d at revision %d", r.ID, r.Epoch, v.Revision)
		}
	}
	return nil
}

func hashID(id string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(id))
	return h.Sum64()
}

// setOwner moves r to owner (may be "") with epoch, keeping the indexes. A
// new resource (Owner "") must go through setOwner(r, "", 0) once.
func (s *State) setOwner(r *resEntry, owner string, epoch uint64) {
	if r.Owner == "" {
		delete(s.unowned, r.ID)
	} else {
		if set := s.owned[r.Owner]; set != nil {
			delete(set, r.ID)
			if len(set) == 0 {
				delete(s.owned, r.Owner)
			}
		}
	}
	r.Owner, r.Epoch = owner, epoch
	if owner != "" {
		delete(s.gone, r.ID)
	}
	if owner == "" {
		s.unowned[r.ID] = struct{}{}
	} else {
		set := s.owned[owner]
		if set == nil {
			set = make(map[string]struct{})
			s.owned[owner] = set
		}
		set[r.ID] = struct{}{}
	}
}
