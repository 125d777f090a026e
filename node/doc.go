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
//     state machine of Config.FSM — by default a placeholder that only
//     counts applied entries (the membership layer replaces it);
//   - the client gRPC server on ClientAddr: the Coordinator service, the
//     standard gRPC health service (SERVING only while the node is ready) and
//     server reflection;
//   - the HTTP server on HTTPAddr: /healthz, /readyz, /metrics, /v1/status,
//     /v1/members.
//
// Every node has its own Prometheus registry (Go and process collectors plus
// what the transport and election register), so several nodes can live in
// one process, as the tests do.
//
// Readiness means the node can answer from the committed state: it knows a
// leader, and it has applied the log up to the commit index it knew when it
// learned of that leader. /readyz and the gRPC health status both follow it.
//
// A node started with Join addresses and no raft state of its own asks those
// addresses (any member: a follower forwards to the leader) to add it, with
// backoff, until it succeeds, the request is refused for good, or the node
// stops.
package node
