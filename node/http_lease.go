package node

import (
	"net/http"

	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// Lease is the body of GET /v1/lease: this node's leases, each measured
// after the request arrived, the same content as a KeepAlive answer. A
// client that starts its own monotonic timer when it SENT the request, for
// the remaining time (less a margin for clock rates), can never outlive the
// node's lease, whatever the delays between them (docs/leases-http.md).
type Lease struct {
	NodeID string `json:"node_id"`
	// IsLeader: this node leads with a valid lease; FencingToken is the
	// token of that leadership (0 otherwise).
	IsLeader     bool   `json:"is_leader"`
	FencingToken uint64 `json:"fencing_token"`
	// LeaderLeaseRemainingMs: how long the leader lease has left (0 unless
	// IsLeader).
	LeaderLeaseRemainingMs int64 `json:"leader_lease_remaining_ms"`
	// OwnershipLeaseRemainingMs: how long this node may work on the
	// resources in Owned. 0: no lease; do no work on any of them.
	OwnershipLeaseRemainingMs int64 `json:"ownership_lease_remaining_ms"`
	// Revision of the membership state Owned reflects.
	Revision uint64 `json:"revision"`
	// Owned lists every resource this node owns with the epoch of its
	// assignment (its fencing token), sorted by id.
	Owned []OwnedResource `json:"owned"`
}

// OwnedResource is a resource this node owns and the epoch of its
// assignment.
type OwnedResource struct {
	ID    string `json:"id"`
	Epoch uint64 `json:"epoch"`
}

// LeaseFromProto converts a Coordinator KeepAliveResponse.
func LeaseFromProto(p *heartbeatpb.Lease) Lease {
	l := Lease{
		NodeID: p.GetNodeId(), IsLeader: p.GetIsLeader(), FencingToken: p.GetFencingToken(),
		LeaderLeaseRemainingMs:    p.GetLeaderLeaseRemaining().AsDuration().Milliseconds(),
		OwnershipLeaseRemainingMs: p.GetOwnershipLeaseRemaining().AsDuration().Milliseconds(),
		Revision:                  p.GetRevision(),
		Owned:                     make([]OwnedResource, 0, len(p.GetOwned())),
	}
	for _, o := range p.GetOwned() {
		l.Owned = append(l.Owned, OwnedResource{ID: o.GetId(), Epoch: o.GetEpoch()})
	}
	return l
}

// handleLease: GET /v1/lease answers this node's leases (Lease), built by
// the Coordinator exactly as a KeepAlive answer.
func (n *Node) handleLease(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, LeaseFromProto(n.coord.Leases()))
}
