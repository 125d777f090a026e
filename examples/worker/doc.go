// Command worker is an example application that runs beside a Heartbeat
// sidecar and uses the Go client (package client) the way a real service
// would:
//
//   - liveness: it pushes an application heartbeat (AppHeartbeat) every
//     ttl/3. If it stops (it crashed, it hangs), the sidecar reports the
//     application unhealthy after ttl and the cluster moves its resources to
//     other nodes.
//   - ownership: it works on its own node's resources only. It lists them
//     (MyResources), then follows WatchAssignments from the listing's
//     revision and logs "acquired shard-3 epoch 17" / "released shard-3
//     (moved to n2)"; a resync event replaces the whole set. Every
//     --work-interval it works on each owned resource (a log line). When
//     the local sidecar has not answered for longer than ttl, the worker can
//     no longer know that its node still owns anything (the cluster may
//     have declared it dead and reassigned its resources), so it drops the
//     whole set, and lists again once the sidecar answers.
//   - leader-only work: RunWhileLeader runs a job while the local node
//     leads. The job appends a record to a fenced ledger (a file standing
//     for a downstream system) every second, with the leadership's fencing
//     token; the ledger refuses tokens below the highest it has seen, which
//     is what makes a deposed leader that still runs harmless.
//
// Usage (beside node n1 of scripts/local-cluster.sh):
//
//	go run ./examples/worker --sidecar 127.0.0.1:7411 --peers 127.0.0.1:7421,127.0.0.1:7431 --ledger /tmp/hb-ledger
//
// SIGINT or SIGTERM stops it cleanly. The ledger uses flock(2): Unix only.
package main
