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
//   - the node's own membership lifecycle (package lifecycle): join,
//     register, drain on a planned stop, Leave, rejoin after a departure;
//   - the leader-priority loop and the membership veto on leadership
//     transfers (package leadership);
//   - the application-health watcher (package apphealth): push TTL and
//     polled URL, an unhealthy application drains the node;
//   - security (security.go): with CAFile, CertFile and KeyFile, mutual TLS
//     on every port from one pki.Store (files reloaded on change): the peer
//     port admits only nodes of the cluster, the client and HTTP ports
//     verify client certificates when presented; the authz.Authorizer
//     (certificates, TokensFile, roles) guards every client-port call, which
//     HTTP calls are too; off loopback, no TLS needs Insecure;
//   - the client gRPC server on ClientAddr: the Coordinator service, the
//     standard gRPC health service (SERVING only while the node is ready) and
//     server reflection;
//   - the HTTP server on HTTPAddr: /healthz, /readyz, /metrics (and
//     /debug/pprof/ with EnablePprof) beside the Coordinator API as HTTP/JSON
//     (package gateway, docs/http.md), which calls the Coordinator through a
//     gRPC connection to the node's own client port.
//
// Each part does one job and declares the small interfaces it needs; this
// package builds the parts, wires them (New, in dependency order: ports,
// admin, transport, rejoin preparation, election, lifecycle, application
// health, coordinator, membership loops, servers) and stops them in the
// order Shutdown documents. Leadership is handed over in one place,
// election.Node.TransferLeadership; retries follow one rule,
// internal/retry.
//
// # Membership
//
// Every write — the node's own and the API's — goes through the leader: a
// follower forwards it once to the leader's client port (found in the
// membership state), and then waits briefly until it has applied the write
// itself, so a read on the same node sees it. Until the leader has
// registered its client address, a follower's writes fail with Unavailable.
// A member that goes away on purpose (Shutdown, Leave, a removal through
// ClusterAdmin) is recorded left, never dead; only a crash (Close, SIGKILL)
// makes the leader declare it dead. See package lifecycle for the steps,
// package apphealth for application liveness and package leadership for
// leader priority.
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
// stop that also takes the node out of the raft configuration
// (lifecycle.Local.Leave); then Left() closes and Run returns nil. An
// embedding program that does not use Run waits on Left() and calls
// Shutdown itself. A node removed by the leader while it runs is told so:
// Run returns ErrRemoved, and the next start asks to join anew.
package node
