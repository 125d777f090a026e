// Command rafttcp is the benchmark's reference peer: one hashicorp/raft v1.7.3 node on raft's
// own TCP transport (raft.NewTCPTransport), written for the benchmark so that Heartbeat can be
// compared, process for process, with stock hashicorp/raft.
//
// It keeps its log and stable store in a raft-boltdb/v2 file and its snapshots in a file
// snapshot store under --data-dir, bootstraps from a static member list given identically to
// every node (--initial-cluster "n1=127.0.0.1:7410,n2=..."), and serves on --http-addr:
//
//	GET  /v1/status      a heartbeat.v1.GetStatusResponse in protojson (node_id, state, term,
//	                     leader, commit_index; the rest zero) — the same shape as Heartbeat's
//	                     /v1/status, so one poller reads both
//	POST /v1/apply?n=N   on the leader: applies N small entries (all in flight at once) and
//	                     reports how long it took; 409 with the leader's id on a follower
//
// Timing flags map one to one onto raft.Config: --heartbeat-timeout, --election-timeout,
// --leader-lease-timeout; their defaults are raft.DefaultConfig()'s (1s, 1s, 500ms).
// Nothing else is tuned: this is the baseline as a user of the library gets it.
//
// SIGINT or SIGTERM shuts raft down (not a leadership hand-off) and exits 0.
package main
