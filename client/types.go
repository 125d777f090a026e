package client

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// Status is one node's view of the cluster (the Coordinator's Status).
type Status struct {
	// ID of the answering node.
	ID string
	// State is leader, follower, candidate or shutdown.
	State string
	// Term is the node's current raft term.
	Term uint64
	// LeaderID and LeaderAddress (peer address) name the leader this node
	// knows of; empty when none.
	LeaderID      string
	LeaderAddress string
	// FencingToken of the current leadership (strictly increasing; 0 if none).
	FencingToken uint64
	// IsLeader: this node leads AND its lease is valid.
	IsLeader bool
	// LeaseUntil is the end of this node's lease; zero unless IsLeader.
	LeaseUntil time.Time
	// CommitIndex and AppliedIndex of the node's raft log.
	CommitIndex  uint64
	AppliedIndex uint64
	// ClusterID names the node's cluster.
	ClusterID string
	// Voter: the node has a vote.
	Voter bool
	// Read says how fresh this answer is.
	Read ReadInfo
}

// Leader is the leadership as one node sees it.
type Leader struct {
	// ID is the leader's node id; empty when no leader is known.
	ID string
	// PeerAddress is the leader's raft address; ClientAddress and HTTPAddress
	// its client gRPC and HTTP addresses (empty when not known yet).
	PeerAddress   string
	ClientAddress string
	HTTPAddress   string
	// Term is the answering node's raft term.
	Term uint64
	// FencingToken is the term in which the leader was elected: pass it to
	// whatever the leader guards (0 when no leader is known).
	FencingToken uint64
	// IsSelf: the node that answered (Endpoint) is the leader and its lease
	// is valid. It speaks of the local node only when Local is true.
	IsSelf bool
	// LeaseUntil is the end of the answering node's lease (zero unless IsSelf).
	LeaseUntil time.Time
	// Endpoint is the address of the node that answered; Local is true when
	// that is Endpoints[0], the local sidecar.
	Endpoint string
	Local    bool
	// Read says how fresh this answer is (Leader only; zero in events).
	Read ReadInfo
}

// LocalLeads reports whether the local sidecar said it leads with a valid
// lease (IsSelf from Endpoints[0]).
func (l Leader) LocalLeads() bool { return l.Local && l.IsSelf }

// LeaderEvent is one message of WatchLeader.
type LeaderEvent struct {
	// Leader is the leadership as the serving node (Leader.Endpoint) saw it.
	// Zero in a Disconnected event.
	Leader
	// Observed is when the serving node saw the change.
	Observed time.Time
	// FellBehind: the serving node dropped events before this one because
	// the reader was slow; this one is the latest state.
	FellBehind bool
	// Reconnected: the first event after the watch reconnected (possibly to
	// another endpoint): the current state, whether or not it changed.
	Reconnected bool
	// Disconnected: the stream broke (Err says why); the leadership is
	// unknown until the next event, which has Reconnected set. Treat it as
	// "no leader known", never as "still the same leader".
	Disconnected bool
	// Err is set on Disconnected events, and on the last event before the
	// channel closes when the watch cannot go on (the server does not
	// implement it); nil otherwise.
	Err error
}

// Member is one node: its place in the raft configuration merged with its
// membership record.
type Member struct {
	ID string
	// PeerAddress is the raft address; ClientAddress and HTTPAddress as the
	// member registered them.
	PeerAddress   string
	ClientAddress string
	HTTPAddress   string
	// Suffrage is voter, nonvoter or staging; empty when the node is not in
	// the raft configuration.
	Suffrage string
	// RaftLeader: the raft configuration's leader, as the answering node
	// knows (whether its lease is valid only that node can say: its
	// Status.IsLeader).
	RaftLeader bool
	// LastContact is when the answering node last heard from it (leader's
	// view); zero if unknown.
	LastContact time.Time
	// State is alive, suspect, dead or left; empty before it registered.
	State string
	// Voter: the member has a vote (Suffrage "voter").
	Voter bool
	// AppHealthy: the application beside it reports healthy.
	AppHealthy bool
	// Draining: it hands its resources off and takes no new ones.
	Draining bool
	// Owned is the number of resources it owns.
	Owned uint32
	// LeaderPriority (0..100): a healthy voter with a higher priority than the
	// leader's is handed leadership.
	LeaderPriority uint32
}

// MembersEvent is one message of WatchMembers: the full list at one point.
type MembersEvent struct {
	Members []Member
	// Revision of the membership state the list reflects.
	Revision uint64
	// FellBehind: lists were skipped because the reader was slow.
	FellBehind bool
	// Reconnected: the first list after the watch reconnected.
	Reconnected bool
	// Endpoint is the node that served the list.
	Endpoint string
	// Err is set on the last event before the channel closes when the watch
	// cannot go on (for example the server does not implement it).
	Err error
}

// ResourceSpec is a resource to register.
type ResourceSpec struct {
	// ID: 1..256 bytes of printable UTF-8.
	ID string
	// Weight: 1..1000; 0 means 1.
	Weight uint32
	// Labels: at most 16, keys 1..63 bytes, values up to 256 bytes.
	Labels map[string]string
}

// Resource is a registered resource and its assignment.
type Resource struct {
	ID string
	// Owner is the member id that owns it; empty while unassigned.
	Owner string
	// Epoch is the raft index of the assignment: the owner's fencing token
	// for this resource.
	Epoch  uint64
	Weight uint32
	Labels map[string]string
}

// Listing is a consistent list of resources at one revision.
type Listing struct {
	// Revision of the state listed: watch from here (WatchAssignments) to
	// miss nothing after the listing.
	Revision  uint64
	Resources []Resource
	// Read says how fresh the listing is.
	Read ReadInfo
}

// WriteResult reports a committed write.
type WriteResult struct {
	// Revision is the raft index of the command (the state revision).
	Revision uint64
	// Changed is the number of resources a register or delete changed (0
	// for other writes).
	Changed uint32
}

// AppHealth is the application's health as the cluster's committed state
// records it (it may lag a recovery by a moment).
type AppHealth struct {
	AppHealthy bool
	Draining   bool
	// State of the node's member record (alive, suspect, dead, left).
	State string
}

// LeadershipChange reports the leadership after StepDown or
// TransferLeadership.
type LeadershipChange struct {
	// Previous is the leader id before the call.
	Previous string
	// Leader is the leader after the call, as the serving node saw it.
	Leader Leader
}

// LeaveResult reports the local node's departure.
type LeaveResult struct {
	// NodeID of the node that left.
	NodeID string
	// Moved is the number of resources handed off before leaving.
	Moved uint32
}

// EventKind says what an AssignmentEvent reports.
type EventKind string

// Kinds of AssignmentEvent.
const (
	// KindRegistered: a resource was registered or its weight or labels
	// changed.
	KindRegistered EventKind = "registered"
	// KindAssigned: a resource got a new owner (Owner, PrevOwner, Epoch).
	KindAssigned EventKind = "assigned"
	// KindDeleted: a resource was deleted (PrevOwner was its owner).
	KindDeleted EventKind = "deleted"
	// KindResync: the watch fell behind the server's change feed; Resources
	// is the full current set (of the watched node, when one is named) at
	// Revision, and the events that follow come after Revision. Replace
	// whatever state was built from earlier events.
	KindResync EventKind = "resync"
)

// AssignmentEvent is one message of WatchAssignments.
type AssignmentEvent struct {
	// Revision of the command that made the change (several events can share
	// one), or of the listing in a resync.
	Revision uint64
	Kind     EventKind
	// ResourceID, Owner (after the change), PrevOwner (before it) and Epoch
	// (of a new assignment) describe a change; empty in a resync.
	ResourceID string
	Owner      string
	PrevOwner  string
	Epoch      uint64
	// Resources is the full set in a resync event.
	Resources []Resource
	// Err is set on the last event before the channel closes when the watch
	// cannot go on (the server does not implement it, an unknown node); Kind
	// is then empty.
	Err error
}

// instant converts a Timestamp; zero when unset.
func instant(t *timestamppb.Timestamp) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.AsTime()
}

func statusFromPB(p *heartbeatpb.GetStatusResponse) Status {
	return Status{
		ID: p.GetNodeId(), State: heartbeatpb.Short(p.GetState()), Term: p.GetTerm(),
		LeaderID: p.GetLeader().GetNodeId(), LeaderAddress: p.GetLeader().GetPeerAddress(),
		FencingToken: p.GetFencingToken(), IsLeader: p.GetIsLeader(),
		LeaseUntil:  instant(p.GetLeaseUntil()),
		CommitIndex: p.GetCommitIndex(), AppliedIndex: p.GetAppliedIndex(),
		ClusterID: p.GetClusterId(), Voter: p.GetSuffrage() == heartbeatpb.Suffrage_SUFFRAGE_VOTER,
	}
}

// leaderFromPB converts a Leadership served by endpoint.
func (c *Client) leaderFromPB(p *heartbeatpb.Leadership, endpoint string) Leader {
	l := Leader{
		ID:            p.GetLeader().GetNodeId(),
		PeerAddress:   p.GetLeader().GetPeerAddress(),
		ClientAddress: p.GetLeader().GetClientAddress(),
		HTTPAddress:   p.GetLeader().GetHttpAddress(),
		Term:          p.GetTerm(),
		FencingToken:  p.GetFencingToken(),
		IsSelf:        p.GetIsLeader(),
		LeaseUntil:    instant(p.GetLeaseUntil()),
		Endpoint:      endpoint,
		Local:         endpoint == c.local(),
	}
	c.fillLeaderAddr(&l)
	return l
}

// fillLeaderAddr fills in (or learns) the leader's client address.
func (c *Client) fillLeaderAddr(l *Leader) {
	if l.ClientAddress != "" {
		c.learn(l.ID, l.PeerAddress, l.ClientAddress)
	} else if l.ID != "" {
		l.ClientAddress = c.known(l.ID, l.PeerAddress)
	}
}

func (c *Client) leaderEventFromPB(p *heartbeatpb.WatchLeaderResponse, endpoint string, reconnected bool) LeaderEvent {
	return LeaderEvent{
		Leader:      c.leaderFromPB(p.GetLeadership(), endpoint),
		Observed:    instant(p.GetLeadership().GetObserved()),
		FellBehind:  p.GetFellBehind(),
		Reconnected: reconnected,
	}
}

func (c *Client) membersFromPB(ms []*heartbeatpb.Member) []Member {
	out := make([]Member, 0, len(ms))
	for _, m := range ms {
		c.learn(m.GetNodeId(), m.GetPeerAddress(), m.GetClientAddress())
		out = append(out, Member{
			ID: m.GetNodeId(), PeerAddress: m.GetPeerAddress(), ClientAddress: m.GetClientAddress(),
			HTTPAddress: m.GetHttpAddress(), Suffrage: heartbeatpb.Short(m.GetSuffrage()), RaftLeader: m.GetRaftLeader(),
			LastContact: instant(m.GetLastContact()), State: heartbeatpb.Short(m.GetState()),
			Voter:      m.GetSuffrage() == heartbeatpb.Suffrage_SUFFRAGE_VOTER,
			AppHealthy: m.GetAppHealthy(), Draining: m.GetDraining(), Owned: m.GetOwned(),
			LeaderPriority: m.GetLeaderPriority(),
		})
	}
	return out
}

func resourcesFromPB(rs []*heartbeatpb.Resource) []Resource {
	out := make([]Resource, 0, len(rs))
	for _, r := range rs {
		out = append(out, Resource{ID: r.GetId(), Owner: r.GetOwnerNodeId(), Epoch: r.GetEpoch(), Weight: r.GetWeight(), Labels: r.GetLabels()})
	}
	return out
}

// listing is the part of a listing response the client reads.
type listing interface {
	GetRevision() uint64
	GetResources() []*heartbeatpb.Resource
}

func listingFromPB(p listing) Listing {
	return Listing{Revision: p.GetRevision(), Resources: resourcesFromPB(p.GetResources())}
}

// written is the part of a write response the client reads (every write
// answers with its revision; resource writes also with a count).
type written interface {
	GetRevision() uint64
}

func writeFromPB(p written) WriteResult {
	out := WriteResult{Revision: p.GetRevision()}
	if c, ok := p.(interface{ GetChanged() uint32 }); ok {
		out.Changed = c.GetChanged()
	}
	return out
}

func (c *Client) changeFromPB(p *heartbeatpb.LeadershipChange, endpoint string) LeadershipChange {
	l := Leader{
		ID:            p.GetLeader().GetNodeId(),
		PeerAddress:   p.GetLeader().GetPeerAddress(),
		ClientAddress: p.GetLeader().GetClientAddress(),
		HTTPAddress:   p.GetLeader().GetHttpAddress(),
		Term:          p.GetTerm(),
		FencingToken:  p.GetFencingToken(),
		Endpoint:      endpoint,
		Local:         endpoint == c.local(),
	}
	c.fillLeaderAddr(&l)
	return LeadershipChange{Previous: p.GetPreviousNodeId(), Leader: l}
}
