package node

// The views below are this node's state as Go values: Status and Members
// are the embedding API (Node.Status, Node.Members). The other types and
// converters are what the heartbeat CLI (cmd/node) prints today; they go
// once the CLI runs over package client (issue #11, item 3). The HTTP API
// no longer uses any of them: it serves the proto messages (package
// gateway).

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// Status is this node's view (the Coordinator's GetStatus as Go values).
type Status struct {
	ID           string     `json:"id"`
	State        string     `json:"state"` // leader, follower, candidate, shutdown
	Term         uint64     `json:"term"`
	Leader       LeaderRef  `json:"leader"`
	FencingToken uint64     `json:"fencing_token"`
	IsLeader     bool       `json:"is_leader"`   // leader AND lease valid
	LeaseUntil   *time.Time `json:"lease_until"` // RFC 3339 (nanoseconds); null unless leader
	CommitIndex  uint64     `json:"commit_index"`
	AppliedIndex uint64     `json:"applied_index"`
	ClusterID    string     `json:"cluster_id"`
	Voter        bool       `json:"voter"`
}

// LeaderRef names a leader; ID and Address are empty when none is known.
// ClientAddress and HTTPAddress are filled where the source knows them
// (GetLeader, for one), once the leader has registered them.
type LeaderRef struct {
	ID            string `json:"id"`
	Address       string `json:"address"` // peer address
	ClientAddress string `json:"client_address,omitempty"`
	HTTPAddress   string `json:"http_address,omitempty"`
}

// Member is one node: its place in the raft
// configuration merged with its membership record.
type Member struct {
	ID          string     `json:"id"`
	State       string     `json:"state"` // alive, suspect, dead, left; "" before it registered
	Voter       bool       `json:"voter"`
	AppHealthy  bool       `json:"app_healthy"`
	Draining    bool       `json:"draining"`
	Owned       uint32     `json:"owned"` // resources it owns
	Addresses   Addresses  `json:"addresses"`
	Address     string     `json:"address"`  // peer address (as in the raft configuration)
	Suffrage    string     `json:"suffrage"` // voter, nonvoter, staging; "" when not in the raft configuration
	IsLeader    bool       `json:"is_leader"`
	LastContact *time.Time `json:"last_contact"` // leader's view; null if unknown
	// LeaderPriority: a healthy voter with a higher priority than the
	// leader's is handed leadership (0..100).
	LeaderPriority uint32 `json:"leader_priority"`
}

// Addresses are a member's three addresses.
type Addresses struct {
	Peer   string `json:"peer"`
	Client string `json:"client"`
	HTTP   string `json:"http"`
}

// Status returns this node's view: the same data as the Coordinator's Status.
func (n *Node) Status() Status {
	return StatusFromProto(n.coord.StatusSnapshot())
}

// StatusFromProto converts a Coordinator StatusResponse.
func StatusFromProto(p *heartbeatpb.GetStatusResponse) Status {
	s := Status{
		ID: p.GetNodeId(), State: heartbeatpb.Short(p.GetState()), Term: p.GetTerm(),
		Leader:       leaderRefFromProto(p.GetLeader()),
		FencingToken: p.GetFencingToken(), IsLeader: p.GetIsLeader(),
		CommitIndex: p.GetCommitIndex(), AppliedIndex: p.GetAppliedIndex(),
		ClusterID: p.GetClusterId(), Voter: p.GetSuffrage() == heartbeatpb.Suffrage_SUFFRAGE_VOTER,
	}
	s.LeaseUntil = instant(p.GetLeaseUntil())
	return s
}

// leaderRefFromProto converts a Coordinator NodeRef.
func leaderRefFromProto(l *heartbeatpb.NodeRef) LeaderRef {
	return LeaderRef{ID: l.GetNodeId(), Address: l.GetPeerAddress(), ClientAddress: l.GetClientAddress(), HTTPAddress: l.GetHttpAddress()}
}

// Members returns the raft configuration as this node knows it.
func (n *Node) Members() ([]Member, error) {
	ms, err := n.coord.MembersSnapshot()
	if err != nil {
		return nil, err
	}
	return MembersFromProto(ms), nil
}

// MembersFromProto converts Coordinator members.
func MembersFromProto(ms []*heartbeatpb.Member) []Member {
	out := make([]Member, 0, len(ms))
	for _, m := range ms {
		voter := m.GetSuffrage() == heartbeatpb.Suffrage_SUFFRAGE_VOTER
		out = append(out, Member{
			ID: m.GetNodeId(), State: heartbeatpb.Short(m.GetState()), Voter: voter, AppHealthy: m.GetAppHealthy(), Draining: m.GetDraining(),
			Owned:     m.GetOwned(),
			Addresses: Addresses{Peer: m.GetPeerAddress(), Client: m.GetClientAddress(), HTTP: m.GetHttpAddress()},
			Address:   m.GetPeerAddress(), Suffrage: heartbeatpb.Short(m.GetSuffrage()), IsLeader: m.GetRaftLeader(),
			LastContact:    instant(m.GetLastContact()),
			LeaderPriority: m.GetLeaderPriority(),
		})
	}
	return out
}

// instant converts a Timestamp (nil when unset).
func instant(p *timestamppb.Timestamp) *time.Time {
	if p == nil {
		return nil
	}
	t := p.AsTime().UTC()
	return &t
}

// Resource is one resource as the CLI prints it.
type Resource struct {
	ID     string            `json:"id"`
	Owner  string            `json:"owner"` // "" while unassigned
	Epoch  uint64            `json:"epoch"` // the owner's fencing token
	Weight uint32            `json:"weight"`
	Labels map[string]string `json:"labels,omitempty"`
}

// ResourcesFromProto converts Coordinator resources.
func ResourcesFromProto(rs []*heartbeatpb.Resource) []Resource {
	out := make([]Resource, len(rs))
	for i, r := range rs {
		out[i] = Resource{ID: r.GetId(), Owner: r.GetOwnerNodeId(), Epoch: r.GetEpoch(), Weight: r.GetWeight(), Labels: r.GetLabels()}
	}
	return out
}

// LeaderInfo is the leadership as one node sees it (a Coordinator
// Leadership as Go values).
type LeaderInfo struct {
	Leader       LeaderRef  `json:"leader"`
	Term         uint64     `json:"term"`
	FencingToken uint64     `json:"fencing_token"`
	IsSelf       bool       `json:"is_self"`     // the serving node leads with a valid lease
	LeaseUntil   *time.Time `json:"lease_until"` // null unless IsSelf
	// LeaseRemainingMs is how long the serving node's leader lease has left,
	// measured when the answer or event was built (0 unless IsSelf). See
	// docs/leases-http.md for how a client turns it into its own timer.
	LeaseRemainingMs int64      `json:"lease_remaining_ms"`
	FellBehind       bool       `json:"fell_behind"` // watch only: changes were skipped; this is the latest
	Observed         *time.Time `json:"observed"`    // when the serving node saw it; null if unknown
	// Read says how fresh the answer (or a watch's first event) is.
	Read *ReadInfo `json:"read,omitempty"`
}

// LeaderInfoFromProto converts a Coordinator LeaderEvent.
func LeaderInfoFromProto(l *heartbeatpb.Leadership, fellBehind bool, read *heartbeatpb.ReadInfo) LeaderInfo {
	return LeaderInfo{
		Leader:           leaderRefFromProto(l.GetLeader()),
		Term:             l.GetTerm(),
		FencingToken:     l.GetFencingToken(),
		IsSelf:           l.GetIsLeader(),
		LeaseUntil:       instant(l.GetLeaseUntil()),
		LeaseRemainingMs: l.GetLeaseRemaining().AsDuration().Milliseconds(),
		FellBehind:       fellBehind,
		Observed:         instant(l.GetObserved()),
		Read:             readInfoFromProto(read),
	}
}

// LeadershipChange is the answer to a step-down or a transfer.
type LeadershipChange struct {
	Previous     string    `json:"previous"` // leader id before the call
	Leader       LeaderRef `json:"leader"`   // leader after it, as the serving node sees it
	Term         uint64    `json:"term"`
	FencingToken uint64    `json:"fencing_token"`
}

// LeadershipChangeFromProto converts a Coordinator LeadershipChange.
func LeadershipChangeFromProto(p *heartbeatpb.LeadershipChange) LeadershipChange {
	return LeadershipChange{
		Previous: p.GetPreviousNodeId(),
		Leader:   leaderRefFromProto(p.GetLeader()),
		Term:     p.GetTerm(), FencingToken: p.GetFencingToken(),
	}
}

// MembersInfo is the full member list at one revision (a Coordinator
// WatchMembersResponse as Go values).
type MembersInfo struct {
	Revision   uint64   `json:"revision"` // of the membership state (0 without membership)
	FellBehind bool     `json:"fell_behind"`
	Members    []Member `json:"members"`
	// Read says how fresh the first list of a watch is (absent after it).
	Read *ReadInfo `json:"read,omitempty"`
}

// ReadInfo says how fresh an answer is (the Coordinator's ReadInfo).
type ReadInfo struct {
	Revision      uint64 `json:"revision"`
	Consistent    bool   `json:"consistent"`
	KnownLeader   bool   `json:"known_leader"`
	LeaderID      string `json:"leader_id,omitempty"`
	LastContactMs int64  `json:"last_contact_ms"`
}

// readInfoFromProto converts a ReadInfo (nil for none).
func readInfoFromProto(p *heartbeatpb.ReadInfo) *ReadInfo {
	if p == nil {
		return nil
	}
	return &ReadInfo{Revision: p.GetRevision(), Consistent: p.GetConsistent(), KnownLeader: p.GetKnownLeader(),
		LeaderID: p.GetLeaderNodeId(), LastContactMs: lastContactMs(p)}
}

// lastContactMs is the ReadInfo's time since the leader's last contact in
// milliseconds; -1 when the node never heard from a leader.
func lastContactMs(p *heartbeatpb.ReadInfo) int64 {
	if p.GetSinceLeaderContact() == nil {
		return -1
	}
	return p.GetSinceLeaderContact().AsDuration().Milliseconds()
}
