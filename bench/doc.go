// Package bench measures Heartbeat against hashicorp/raft on its own TCP transport, with the
// method the project's issue fixes, and prints figures rather than passing or failing a test.
//
// The parts, in the order a run uses them:
//
//   - Cluster (cluster.go) starts N node processes of one System on 127.0.0.1, each with a
//     fresh data dir and its own log file, and can SIGKILL, SIGSTOP, SIGCONT and restart them.
//     A System is a binary plus the flags that set its timing: Heartbeat's bin/heartbeat, or
//     bench/cmd/rafttcp (stock hashicorp/raft v1.7.3 on raft.NewTCPTransport). A TLS System
//     (heartbeat-tls) runs the nodes with mutual TLS on certificates MakeTLS made (pki.Init),
//     and every HTTP call of the benchmark is HTTPS with the admin client certificate.
//   - Poller (poller.go) polls GET /v1/status of every node concurrently, every ~2 ms, over
//     keep-alive HTTP with a short timeout, and records each reply (or failure) as a Sample.
//   - ComputeFailover (failover.go) turns the samples around one fault into a figure: from
//     the victim's last successful reply to the first moment every survivor names the same
//     leader, other than the victim.
//   - ReadProc / CPUPercent (procstat.go) read utime+stime and VmRSS from /proc for the idle
//     phase; Summarize (stats.go) gives nearest-rank p50/p99/max.
//   - Runner (runner.go) drives the phases for one system: idle, crash (SIGKILL), silent
//     (SIGSTOP), busy (a CPU burner on both cores, counting elections); Report (report.go)
//     puts the systems side by side, computes Heartbeat's ratios and marks the issue's
//     targets met or missed, as JSON and Markdown.
//   - Reassign (reassign.go) is issue 3's membership phase, Heartbeat only, on a fresh
//     cluster per resource count: register N resources through POST /v1/resources in
//     batches of membership.MaxBatch (registration resources/s), SIGKILL a follower that
//     owns resources, and time until every survivor's GET /v1/members shows it owning
//     nothing; ReassignMoment and CheckMoves (reassign_calc.go) compute that moment from
//     the poll samples and check, against GET /v1/resources before and after, that exactly
//     the dead node's resources moved. The busy phase also polls GET /v1/members and
//     counts false deaths (FalseDeathCounter).
//   - Lease (lease.go) is issue 9's lease phase, Heartbeat only, on a fresh cluster: beside
//     every node one application (LeaseApps, a client.Client whose Endpoints[0] is that
//     node) runs RunWhileLeader and RunWhileOwner with fns that record their start and
//     their context's cancellation in a WorkLog; the leader's sidecar, then a sidecar that
//     owns resources, is SIGSTOPped until the work has started elsewhere. ComputeHandover
//     (lease_calc.go) gives each hand-over's gap, from the old work's cancellation to the
//     new work's start, which must be positive; Overlaps checks every run of the phase for
//     two runs of one key at once, and Restarts counts work that stopped and resumed in
//     place (a lease that lapsed and was renewed).
//
// Apply throughput is measured in process by package bench/throughput, since Heartbeat has
// no user write API yet. The command is bench/cmd/hbbench; bench/README.md explains the
// figures.
//
// The measurement is only as quiet as the machine: everything here runs on loopback beside
// whatever else the host is doing, and the pollers themselves cost CPU during fault phases
// (they are stopped during the idle phase).
package bench
