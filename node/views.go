package node

// Status and Members are this node's state as Go values: the embedding
// API (Node.Status, Node.Members). The HTTP API does not use them: it serves
// the proto messages (package gateway).

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
