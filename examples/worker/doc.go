// Command worker is an example application that runs beside a Heartbeat
// sidecar and uses the Go client (package client) the way a real service
// would:
//
//   - liveness: it pushes an application heartbeat (AppHeartbeat) every
//     ttl/3. If it stops (it crashed, it hangs), the sidecar reports the
//     application unhealthy after ttl and the cluster moves its resources to
//     other nodes.
//   - ownership: it works on its own node's resources only, and only while
//     its node's ownership lease holds. RunWhileOwner runs one goroutine per
//     owned resource ("acquired shard-3 epoch 17") and cancels it when the
//     resource moves, when the lease runs out without a renewal (a hung or
//     cut-off sidecar), or when the sidecar goes away ("released shard-3
//     epoch 17"): before any other node's worker can start on it. Every
//     --work-interval the work appends a record to the resource's own fenced
//     ledger with the epoch as its token, and a summary line lists what the
//     worker works on.
//   - leader-only work: RunWhileLeader runs a job while the local node
//     leads. The job appends a record to a fenced ledger (a file standing
//     for a downstream system) every second, with the leadership's fencing
//     token.
//
// The ledgers refuse a token (or epoch) below the highest they have seen:
// cancellation stops the work's context, not a paused process, and the
// fencing is what makes a stale leader or owner that still runs harmless.
//
// Usage (beside node n1 of scripts/local-cluster.sh):
//
//	go run ./examples/worker --sidecar 127.0.0.1:7411 --peers 127.0.0.1:7421,127.0.0.1:7431 --ledger /tmp/hb-ledger
//
// SIGINT or SIGTERM stops it cleanly. The ledgers use flock(2): Unix only.
package main
