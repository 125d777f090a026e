// Package chaos attacks a docker-compose Heartbeat cluster from the host and
// checks, from what every node said throughout, that the election stayed safe
// and live.
//
// The package has two halves.
//
// The pure half (no build tag, so plain `go test ./test/chaos/` runs its unit
// tests): History, a time-ordered record of what each node reported (role,
// term, leader, fencing token, whether it claims leadership) and of the fault
// windows the suite opened; the checkers that read a History and return
// Violations (S1 one leader per term, S2 fencing tokens only grow, no two
// leaders claiming at once, L1 a new leader within the bound, L2 no election
// when nothing failed, S4 nothing acknowledged lost after a full restart, A1
// no two nodes' applications holding the leader job or a resource at once, R1
// the reads-and-writes history is linearizable (linearize.go, porcupine)); the
// measurements per fault window; and the report (report.md) and timeline
// (timeline.svg) writers. Every checker has a unit test that plants a
// violation and sees it caught.
//
// The docker half (build tag `chaos`): a Compose wrapper that works with the
// standalone docker-compose and the `docker compose` plugin alike, a Cluster
// driver that kills, pauses, restarts, disconnects and partitions containers
// from the host (iptables and tc netem run inside a container's network
// namespace through nsenter; only the filter table is touched), a Recorder that
// follows every node's WatchLeader stream and polls its /v1/status every ~20 ms,
// a Workload (an application beside every node: a client running a leader job
// and per-resource work, recording when each fn starts and is cancelled),
// and TestChaos, which builds the image, brings the cluster up under the
// project name heartbeat-chaos, runs every fault, checks, and writes the report.
// cmd/chaos-replay re-checks a saved history without Docker.
//
// Timestamps are the host's monotonic clock, as durations since the History
// began; every container shares the host's clock, so observations of different
// nodes are comparable up to the latency of reading them, which the checkers
// allow for with an explicit tolerance.
package chaos
