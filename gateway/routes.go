package gateway

import (
	"net/http"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// Timeouts of the calls made over HTTP: a write (forwarding to the leader
// included), and a step-down or transfer (raft's transfer waits for the
// target to win an election, which on a loaded machine can take a few
// election timeouts). Reads are bounded by the Coordinator's own read
// deadline; the leave of the serving node by Config.Timeouts.
const (
	WriteTimeout      = 15 * time.Second
	LeadershipTimeout = 30 * time.Second
)

// Keys of the node's own handlers in Config.Handlers.
const (
	HandlerHealthz = "healthz"
	HandlerReadyz  = "readyz"
	HandlerMetrics = "metrics"
	HandlerPprof   = "pprof"
	// handlerOpenAPI is served by the gateway itself.
	handlerOpenAPI = "openapi"
)

// OpenAPIPath is where the gateway serves its OpenAPI document.
const OpenAPIPath = "/v1/openapi.json"

// Unrouted lists the Coordinator RPCs that have no HTTP route, and why: a
// test checks that every RPC of the service is either routed or listed here.
var Unrouted = map[string]string{
	heartbeatpb.Coordinator_KeepAlive_FullMethodName: "bidirectional stream: HTTP clients poll GET /v1/lease instead",
	heartbeatpb.Coordinator_Snapshot_FullMethodName:  "binary backup stream (chunks + digest): use 'heartbeat snapshot save' over gRPC",
}

// Routes returns the route table: every HTTP route the node serves, RPC
// routes first. A new RPC needs one entry here and nothing else in this
// package. The table is a fresh copy on each call.
func Routes() []Route {
	sse := func(s SSE) *SSE { return &s }
	return []Route{
		// The node's view and the leadership.
		{Method: http.MethodGet, Pattern: "/v1/status", RPC: heartbeatpb.Coordinator_GetStatus_FullMethodName,
			Summary: "This node's view of the cluster."},
		{Method: http.MethodGet, Pattern: "/v1/leader", RPC: heartbeatpb.Coordinator_GetLeader_FullMethodName,
			Summary: "The leader as this node knows it."},
		{Method: http.MethodPost, Pattern: "/v1/leader/step-down", RPC: heartbeatpb.Coordinator_StepDown_FullMethodName,
			Body: BodyAll, Timeout: LeadershipTimeout, Summary: "The leader hands leadership to another voter."},
		{Method: http.MethodPost, Pattern: "/v1/leader/transfer", RPC: heartbeatpb.Coordinator_TransferLeadership_FullMethodName,
			Body: BodyAll, Timeout: LeadershipTimeout, Summary: "Hand leadership to the named voter."},
		{Method: http.MethodGet, Pattern: "/v1/lease", RPC: heartbeatpb.Coordinator_GetLease_FullMethodName,
			Summary: "This node's leader and ownership leases, measured after the request arrived."},

		// Members.
		{Method: http.MethodGet, Pattern: "/v1/members", RPC: heartbeatpb.Coordinator_ListMembers_FullMethodName,
			Summary: "The members: raft configuration merged with membership records."},
		{Method: http.MethodPost, Pattern: "/v1/members", RPC: heartbeatpb.Coordinator_Join_FullMethodName,
			Body: BodyAll, Timeout: WriteTimeout, Summary: "Add a node to the cluster."},
		{Method: http.MethodDelete, Pattern: "/v1/members/{node_id}", RPC: heartbeatpb.Coordinator_Remove_FullMethodName,
			Timeout: WriteTimeout, Summary: "Remove another member and record it as left."},
		{Method: http.MethodPut, Pattern: "/v1/members/{node_id}/priority", RPC: heartbeatpb.Coordinator_SetLeaderPriority_FullMethodName,
			Body: BodyAll, Timeout: WriteTimeout, Summary: "Set a member's leader priority (0..100)."},
		{Method: http.MethodPut, Pattern: "/v1/members/{node_id}/drain", RPC: heartbeatpb.Coordinator_SetDrain_FullMethodName,
			Body: BodyAll, Timeout: WriteTimeout, Summary: "Drain or undrain a member."},
		{Method: http.MethodPost, Pattern: "/v1/leave", RPC: heartbeatpb.Coordinator_Leave_FullMethodName,
			Body: BodyAll, Summary: "This node leaves the cluster gracefully and stops."},
		{Method: http.MethodPost, Pattern: "/v1/app/heartbeat", RPC: heartbeatpb.Coordinator_AppHeartbeat_FullMethodName,
			Body: BodyAll, Summary: "The local application is alive for ttl more."},

		// Resources.
		{Method: http.MethodGet, Pattern: "/v1/resources", RPC: heartbeatpb.Coordinator_ListResources_FullMethodName,
			Summary: "Every resource with its owner and epoch."},
		{Method: http.MethodPost, Pattern: "/v1/resources", RPC: heartbeatpb.Coordinator_RegisterResources_FullMethodName,
			Body: BodyAll, Timeout: WriteTimeout, Summary: "Register or update resources: all of them or none."},
		{Method: http.MethodGet, Pattern: "/v1/resources/{id...}", RPC: heartbeatpb.Coordinator_GetResource_FullMethodName,
			Summary: "One resource (its id path-escaped)."},
		{Method: http.MethodDelete, Pattern: "/v1/resources/{id...}", RPC: heartbeatpb.Coordinator_DeleteResources_FullMethodName,
			Fields: map[string]string{"id": "ids"}, Timeout: WriteTimeout, Summary: "Delete one resource (its id path-escaped)."},
		{Method: http.MethodGet, Pattern: "/v1/assignments", RPC: heartbeatpb.Coordinator_ListAssignments_FullMethodName,
			Summary: "The resources one member owns (default: this node)."},

		// Server-sent-event watches.
		{Method: http.MethodGet, Pattern: "/v1/watch/leader", RPC: heartbeatpb.Coordinator_WatchLeader_FullMethodName,
			SSE: sse(SSE{Event: "leader"}), Summary: "Leadership events: the current one first, then every change."},
		{Method: http.MethodGet, Pattern: "/v1/watch/members", RPC: heartbeatpb.Coordinator_WatchMembers_FullMethodName,
			SSE: sse(SSE{Event: "members", IDField: "revision"}), Summary: "The member list first, then again after every change."},
		{Method: http.MethodGet, Pattern: "/v1/watch/assignments", RPC: heartbeatpb.Coordinator_WatchAssignments_FullMethodName,
			SSE:     sse(SSE{Event: "change", EventField: "kind", IDField: "revision", WholeRevisions: true, ResumeField: "from_revision"}),
			Summary: "Resource changes after a revision, in order, none missed."},

		// The node's own routes.
		{Method: http.MethodGet, Pattern: "/healthz", Handler: HandlerHealthz, Produces: "text/plain",
			Summary: "200 while the process serves HTTP."},
		{Method: http.MethodGet, Pattern: "/readyz", Handler: HandlerReadyz, Produces: "text/plain",
			Summary: "200 when the node knows a leader and has applied the committed state, else 503; the body lists each check."},
		{Method: http.MethodGet, Pattern: "/metrics", Handler: HandlerMetrics, Produces: "text/plain",
			Summary: "Prometheus metrics."},
		{Method: http.MethodGet, Pattern: OpenAPIPath, Handler: handlerOpenAPI, Produces: "application/json",
			Summary: "This document."},
		{Method: http.MethodGet, Pattern: "/debug/pprof/{profile...}", Handler: HandlerPprof, Produces: "application/octet-stream",
			Optional: true, Summary: "Go runtime profiles (only when the node runs with profiling enabled)."},
	}
}
