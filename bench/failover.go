package bench

import (
	"fmt"
	"slices"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// Status is one node's GET /v1/status reply (a heartbeat.v1.GetStatusResponse in
// protojson). Heartbeat and the rafttcp reference peer both produce it; fields that only
// Heartbeat has are zero for rafttcp.
type Status struct {
	ID           string
	State        string // "leader", "follower", "candidate"
	Term         uint64
	Leader       StatusPeer
	IsLeader     bool
	FencingToken uint64
	CommitIndex  uint64
}

// StatusPeer names a node in a status reply.
type StatusPeer struct {
	ID      string
	Address string
}

// statusFromProto converts a GetStatusResponse.
func statusFromProto(p *heartbeatpb.GetStatusResponse) Status {
	return Status{
		ID: p.GetNodeId(), State: heartbeatpb.Short(p.GetState()), Term: p.GetTerm(),
		Leader:   StatusPeer{ID: p.GetLeader().GetNodeId(), Address: p.GetLeader().GetPeerAddress()},
		IsLeader: p.GetIsLeader(), FencingToken: p.GetFencingToken(), CommitIndex: p.GetCommitIndex(),
	}
}

// Sample is one status poll of one node.
type Sample struct {
	Node   string    // the polled node's id (as the benchmark named it, not as it answered)
	At     time.Time // when the reply arrived, or when the poll failed
	OK     bool      // a 200 reply with a decodable body
	Status Status    // valid only when OK
	// Latency is how long the request took (send to reply or failure); a diagnostic of
	// how loaded the node or the machine was.
	Latency time.Duration
}

// Fault describes one injected failure for ComputeFailover.
type Fault struct {
	Victim    string    // the leader that was killed or stopped
	Survivors []string  // every other node; each must name the new leader
	At        time.Time // when the signal was sent
}

// Failover is the measured outcome of one fault.
type Failover struct {
	Victim     string        `json:"victim"`
	NewLeader  string        `json:"new_leader"`
	FaultAt    time.Time     `json:"fault_at"`    // signal sent
	LastAnswer time.Time     `json:"last_answer"` // victim's last successful reply
	Converged  time.Time     `json:"converged"`   // every survivor names NewLeader
	Duration   time.Duration `json:"duration"`    // Converged − LastAnswer
}

// Silence is how long before the fault the victim last answered. It should be about one poll
// interval; much more means the victim (or the machine) was already slow to answer, and that
// time is part of Duration, as the method defines it.
func (f Failover) Silence() time.Duration { return f.FaultAt.Sub(f.LastAnswer) }

// ComputeFailover measures one failover from the samples recorded around it (any order, any
// nodes; samples of nodes that are neither victim nor survivor are ignored).
//
// Last answer is the arrival time of the victim's latest successful reply. The failover ends
// at the first sample, at or after the fault, after which every survivor's most recent poll
// succeeded and names the same leader, and that leader is not the victim. A survivor whose
// latest poll failed, names no leader, or names the victim holds the moment back.
//
// It returns ErrNoLastAnswer if the victim never answered, ErrNotConverged if the condition
// never holds in the samples.
func ComputeFailover(f Fault, samples []Sample) (Failover, error) {
	out := Failover{Victim: f.Victim, FaultAt: f.At}
	isSurvivor := make(map[string]bool, len(f.Survivors))
	for _, s := range f.Survivors {
		isSurvivor[s] = true
	}
	sorted := slices.Clone(samples)
	slices.SortStableFunc(sorted, func(a, b Sample) int { return a.At.Compare(b.At) })
	for _, s := range sorted {
		if s.Node == f.Victim && s.OK && s.At.After(out.LastAnswer) {
			out.LastAnswer = s.At
		}
	}
	if out.LastAnswer.IsZero() {
		return out, fmt.Errorf("%s: %w", f.Victim, ErrNoLastAnswer)
	}
	latest := make(map[string]Sample, len(f.Survivors))
	for _, s := range sorted {
		if !isSurvivor[s.Node] {
			continue
		}
		latest[s.Node] = s
		if s.At.Before(f.At) {
			continue
		}
		if leader, ok := agreedNewLeader(f, latest); ok {
			out.NewLeader, out.Converged = leader, s.At
			out.Duration = out.Converged.Sub(out.LastAnswer)
			return out, nil
		}
	}
	return out, fmt.Errorf("victim %s: %w", f.Victim, ErrNotConverged)
}

// agreedNewLeader reports the leader every survivor's latest sample names, if they all
// succeeded and agree on one leader other than the victim.
func agreedNewLeader(f Fault, latest map[string]Sample) (string, bool) {
	leader := ""
	for _, id := range f.Survivors {
		s, ok := latest[id]
		if !ok || !s.OK || s.Status.Leader.ID == "" || s.Status.Leader.ID == f.Victim {
			return "", false
		}
		if leader == "" {
			leader = s.Status.Leader.ID
		} else if leader != s.Status.Leader.ID {
			return "", false
		}
	}
	return leader, leader != ""
}

// StableLeader reports the leader when every node in ids has a successful latest sample that
// names the same leader, and that leader itself says it is leader. It is the "cluster is
// stable" test between faults.
func StableLeader(ids []string, latest map[string]Sample) (string, bool) {
	leader := ""
	for _, id := range ids {
		s, ok := latest[id]
		if !ok || !s.OK || s.Status.Leader.ID == "" {
			return "", false
		}
		if leader == "" {
			leader = s.Status.Leader.ID
		} else if leader != s.Status.Leader.ID {
			return "", false
		}
	}
	ls, ok := latest[leader]
	if !ok || ls.Status.State != "leader" {
		return "", false
	}
	for _, id := range ids {
		if id != leader && latest[id].Status.State != "follower" {
			return "", false
		}
	}
	return leader, true
}
