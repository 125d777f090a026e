// Package node assembles one Heartbeat node from its parts and is the Go
// embedding API: node.New builds and starts it, Run serves until a context
// ends, Shutdown stops it gracefully and Close abruptly.
//
// A node is, from the bottom up:
//
//   - the peer transport (rpc/transport) on PeerAddr: raft's RPCs, the held
//     streams of crash detection, and the ClusterAdmin service (rpc/api) that
//     joins and removes nodes — registered on the same gRPC server;
//   - the raft node (election) with its bolt stores under DataDir and the
//     replicated membership state (membership.FSM) as its state machine:
//     members, resources, assignments (Config.FSM may replace it; any other
//     state machine turns the membership features off);
//   - the membership reconciler (the leader's failure detector and
//     assignment loop), fed by the transport's per-peer heartbeat replies
//     and committing through the election; it runs on every node and acts
//     only while the node leads with a valid lease;
//   - the client gRPC server on ClientAddr: the Coordinator service, the
//     standard gRPC health service (SERVING only while the node is ready) and
//     server reflection;
//   - the HTTP server on HTTPAddr: /healthz, /readyz, /metrics (and
//     /debug/pprof/ with EnablePprof) beside the Coordinator API as HTTP/JSON
//     (package gateway, docs/http.md), which calls the Coordinator through a
//     gRPC connection to the node's own client port.
//
// # Membership
//
// Once it is in the raft configuration, every node commits an UpsertMember
// for itself (its peer address exactly as raft knows it, its dialable client
// and HTTP addresses, its suffrage), retrying until a leader accepts it.
// Every write — the node's own and the API's — goes through the leader: a
// follower forwards it once to the leader's client port (found in the
// membership state), and then waits briefly until it has applied the write
// itself, so a read on the same node sees it. Until the leader has
// registered its client address, a follower's writes fail with Unavailable.
//
// A planned stop (Shutdown, SIGTERM) first drains the node: SetDrain, then
// a wait until the leader's reconciler has moved all of its resources to
// live members (bounded by DrainTimeout; skipped when nobody could take
// them), then MarkLeft, then the election's leadership hand-off. A member
// removed through ClusterAdmin is marked left before it leaves the raft
// configuration. So a member that goes away on purpose is left, never dead;
// only a crash (Close, SIGKILL) makes the leader declare it dead.
//
// Application liveness: the local application pushes AppHeartbeat(ttl)
// calls, or the node polls AppHealthURL every AppHealthInterval (2xx is
// healthy; only http:// on loopback or the node's own host). Either unused
// source counts as healthy. When the application turns unhealthy the node
// commits SetAppHealth(false): its resources move to other members, and if
// it leads it hands leadership to another voter (every 2 s while it stays
// unhealthy and leading). Healthy again, it commits SetAppHealth(true) and
// receives its fair share back (rate-limited by the strategy).
//
// Every node has its own Prometheus registry (Go and process collectors plus
// what the transport, election and membership register), so several nodes
// can live in one process, as the tests do.
//
// Readiness means the node can answer from the committed state: it knows a
// leader, and it has applied the log up to the commit index it knew when it
// learned of that leader. /readyz and the gRPC health status both follow it.
//
// Leave (Coordinator.Leave, POST /v1/leave, `heartbeat leave`) is a planned
// stop that also takes the node out of the raft configuration: drain, hand
// off leadership, MarkLeft, removal through the (new) leader; then Left()
// closes and Run returns nil. An embedding program that does not use Run
// waits on Left() and calls Shutdown itself. Leave writes left.json in the
// data dir; started again, the node discards its stale raft state and
// joins again through Join or the other InitialCluster members (rejoin.go).
// A node removed by the leader while it runs is told so (ClusterAdmin
// Removed): Run returns ErrRemoved, and the next start asks to join anew,
// keeping its raft state.
//
// Leader priority: each member has a priority 0..100 (Config.LeaderPriority
// at registration, or SetLeaderPriority at any time). While it leads, a node
// looks every few hundred milliseconds for voters that are alive,
// application-healthy, not draining, heard from within the heartbeat timeout
// and of a higher priority than its own; one that has stayed so for
// PriorityHoldoff is handed leadership (highest priority, then lowest id).
// Equal priorities never move leadership, so the default (all 0) never
// does.
//
// A node started with Join addresses and no raft state of its own asks those
// addresses (any member: a follower forwards to the leader) to add it, with
// backoff, until it succeeds, the request is refused for good, or the node
// stops.
package node
