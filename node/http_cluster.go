package node

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/membership"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// memberPrefix is the path of one member: /v1/members/{id} (DELETE: remove
// it) and /v1/members/{id}/priority (PUT: set its leader priority).
const memberPrefix = "/v1/members/"

// leadershipTimeout bounds a step-down or transfer made over HTTP: raft's
// transfer waits for the target to win an election, which on a loaded
// machine can take a few election timeouts.
const leadershipTimeout = 30 * time.Second

// LeaderInfo is the leadership as one node sees it: the body of GET
// /v1/leader and the data of each /v1/watch/leader event. While the serving
// node leads, its leader watch sends the event again every 50 ms with the
// lease's remaining time (a renewal: the rest is unchanged).
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

// clusterRoutes adds the leadership and cluster-change endpoints. The
// Coordinator answers each (Unimplemented, as 501, where it lacks a part).
func (n *Node) clusterRoutes(routes map[string]route) {
	routes["/v1/leader"] = route{http.MethodGet: n.handleGetLeader, http.MethodHead: n.handleGetLeader}
	routes["/v1/leader/step-down"] = route{http.MethodPost: n.handleStepDown}
	routes["/v1/leader/transfer"] = route{http.MethodPost: n.handleTransfer}
	routes["/v1/leave"] = route{http.MethodPost: n.handleLeave}
}

// memberRoute picks the routes of a path under /v1/members/: {id} or
// {id}/priority; ok is false for any other shape.
func memberRoute(n *Node, r *http.Request) (route, bool) {
	rest := strings.TrimPrefix(r.URL.EscapedPath(), memberPrefix)
	_, sub, nested := strings.Cut(rest, "/")
	switch {
	case !nested:
		return route{http.MethodDelete: n.handleRemove}, true
	case sub == "priority":
		return route{http.MethodPut: n.handleSetPriority}, true
	}
	return nil, false
}

// memberID extracts and unescapes the {id} of /v1/members/{id}[/...].
func memberID(r *http.Request) (string, error) {
	raw, _, _ := strings.Cut(strings.TrimPrefix(r.URL.EscapedPath(), memberPrefix), "/")
	id, err := url.PathUnescape(raw)
	if err != nil {
		return "", status.Errorf(codes.InvalidArgument, "bad member id in path: %v", err)
	}
	if id == "" {
		return "", status.Error(codes.InvalidArgument, "empty member id")
	}
	return id, nil
}

// handleGetLeader: GET /v1/leader.
func (n *Node) handleGetLeader(w http.ResponseWriter, r *http.Request) {
	mode, err := readMode(r)
	if err != nil {
		writeStatusError(w, err)
		return
	}
	ev, err := n.coord.GetLeader(r.Context(), &heartbeatpb.GetLeaderRequest{Consistency: mode})
	if err == nil {
		setReadHeaders(w, ev.GetRead())
	}
	reply(w, err, func() any { return LeaderInfoFromProto(ev.GetLeadership(), false, ev.GetRead()) })
}

// handleStepDown: POST /v1/leader/step-down (no body).
func (n *Node) handleStepDown(w http.ResponseWriter, r *http.Request) {
	var body struct{}
	if err := decodeBody(r, &body, true); err != nil {
		writeStatusError(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), leadershipTimeout)
	defer cancel()
	resp, err := n.coord.StepDown(ctx, &heartbeatpb.StepDownRequest{})
	reply(w, err, func() any { return LeadershipChangeFromProto(resp.GetChange()) })
}

// handleTransfer: POST /v1/leader/transfer with {"id": "n2"}.
func (n *Node) handleTransfer(w http.ResponseWriter, r *http.Request) {
	var body struct {
		ID string `json:"id"`
	}
	if err := decodeBody(r, &body, false); err != nil {
		writeStatusError(w, err)
		return
	}
	if body.ID == "" {
		writeStatusError(w, status.Error(codes.InvalidArgument, `missing "id": the voter that should lead`))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), leadershipTimeout)
	defer cancel()
	resp, err := n.coord.TransferLeadership(ctx, &heartbeatpb.TransferLeadershipRequest{NodeId: body.ID})
	reply(w, err, func() any { return LeadershipChangeFromProto(resp.GetChange()) })
}

// handleSetPriority: PUT /v1/members/{id}/priority with {"priority": N},
// N in 0..100. The priority is signed and a pointer so that a negative or
// missing one is reported as such.
func (n *Node) handleSetPriority(w http.ResponseWriter, r *http.Request) {
	id, err := memberID(r)
	if err != nil {
		writeStatusError(w, err)
		return
	}
	var body struct {
		Priority *int64 `json:"priority"`
	}
	if err := decodeBody(r, &body, false); err != nil {
		writeStatusError(w, err)
		return
	}
	switch {
	case body.Priority == nil:
		writeStatusError(w, status.Error(codes.InvalidArgument, `missing "priority" (0..100)`))
		return
	case *body.Priority < 0 || *body.Priority > membership.MaxLeaderPriority:
		writeStatusError(w, status.Errorf(codes.InvalidArgument, "priority %d outside 0..%d", *body.Priority, membership.MaxLeaderPriority))
		return
	}
	ctx, cancel := writeCtx(r)
	defer cancel()
	resp, err := n.coord.SetLeaderPriority(ctx, &heartbeatpb.SetLeaderPriorityRequest{NodeId: id, Priority: uint32(*body.Priority)})
	reply(w, err, func() any { return writeResult(resp) })
}

// joinBody is the JSON body of POST /v1/members. Voter defaults to true.
type joinBody struct {
	ID          string `json:"id"`
	PeerAddress string `json:"peer_address"`
	Voter       *bool  `json:"voter"`
}

// handleJoin: POST /v1/members with {"id", "peer_address", "voter"} adds a
// node to the raft configuration.
func (n *Node) handleJoin(w http.ResponseWriter, r *http.Request) {
	var body joinBody
	if err := decodeBody(r, &body, false); err != nil {
		writeStatusError(w, err)
		return
	}
	switch {
	case body.ID == "":
		writeStatusError(w, status.Error(codes.InvalidArgument, `missing "id": the joining node's id`))
		return
	case body.PeerAddress == "":
		writeStatusError(w, status.Error(codes.InvalidArgument, `missing "peer_address": the joining node's peer host:port`))
		return
	}
	voter := body.Voter == nil || *body.Voter
	ctx, cancel := writeCtx(r)
	defer cancel()
	resp, err := n.coord.Join(ctx, &heartbeatpb.JoinRequest{NodeId: body.ID, PeerAddress: body.PeerAddress, Nonvoter: !voter})
	reply(w, err, func() any { return map[string]any{"index": resp.GetRevision()} })
}

// handleRemove: DELETE /v1/members/{id} removes another member.
func (n *Node) handleRemove(w http.ResponseWriter, r *http.Request) {
	id, err := memberID(r)
	if err != nil {
		writeStatusError(w, err)
		return
	}
	ctx, cancel := writeCtx(r)
	defer cancel()
	resp, err := n.coord.Remove(ctx, &heartbeatpb.RemoveRequest{NodeId: id})
	reply(w, err, func() any { return map[string]any{"index": resp.GetRevision()} })
}

// handleLeave: POST /v1/leave (no body) makes this node leave the cluster:
// it drains, hands off leadership, is recorded as left, removed, and stops.
// The wait is bounded by the drain timeout plus the usual write timeout.
func (n *Node) handleLeave(w http.ResponseWriter, r *http.Request) {
	var body struct{}
	if err := decodeBody(r, &body, true); err != nil {
		writeStatusError(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), n.cfg.DrainTimeout+httpWriteTimeout)
	defer cancel()
	resp, err := n.coord.Leave(ctx, &heartbeatpb.LeaveRequest{})
	reply(w, err, func() any { return map[string]any{"node_id": resp.GetNodeId(), "moved": resp.GetMoved()} })
}
