// Package client is the Go client of Heartbeat's Coordinator API: what an
// application uses to ask its sidecar (and, through it, the cluster) who
// leads, which resources it owns, and to register, drain, hand off and
// watch.
//
// # Endpoints and the local node
//
// Config.Endpoints lists client (gRPC) addresses of sidecars. Endpoints[0]
// is the LOCAL sidecar, the node the application runs beside; the others
// are fallbacks. Calls differ in which nodes may answer them:
//
//   - About the local node, to Endpoints[0] only: Status, IsLeader,
//     AppHeartbeat, Leave, LocalID, and RunWhileLeader's watch. No other node
//     can say whether the local node holds a lease.
//   - Reads (Leader, Members, Resources, Assignments, MyResources) and the
//     watches: the local sidecar first, the next endpoint when it is
//     unreachable. Each node answers from the state it has applied, so a
//     follower may lag the leader by a moment; Leader.Endpoint and the
//     events' Endpoint say who answered. Calls that default to "this node"
//     on the server (SetDrain, SetLeaderPriority, Assignments with "") are
//     sent with the local node's id, learned once from its Status, so they
//     mean the same node whichever endpoint takes them.
//
// # Writes follow the leader
//
// Writes (Register, Delete, SetDrain, SetLeaderPriority, StepDown,
// TransferLeadership, Join, Remove) may go to any node: a follower forwards
// them to the leader. The client starts where its last write succeeded
// (Endpoints[0] at first). A node that will not forward answers
// FailedPrecondition with reason NOT_LEADER and names the leader; the client
// then retries on the leader's client address (from the answer, or from the
// member list of the node that answered). On Unavailable (node down, no
// leader known yet) or an attempt that outlived CallTimeout it tries the next
// endpoint; once every candidate failed in turn it pauses (RetryBackoff)
// and starts the round again, until the call's context ends. Give every call
// a deadline: the context is the only bound on the whole call. Errors from
// the servers keep their gRPC status (status.Code, ReasonOf); a call whose
// context ended during retries returns an error that wraps both ctx.Err()
// and the last server error, whose code status.Code reports.
//
// No write is repeated after an attempt of unknown outcome: a repeated
// registration is harmless alone, but not around another client's delete of
// the same resource (the registration would reappear after the delete, which
// is not linearizable), and a second StepDown would depose the new leader.
// A write moves to another endpoint, or is tried again, only when the first
// could not be connected to, or the server refused before acting (NOT_LEADER,
// NO_LEADER); otherwise its error (Unavailable, "outcome unknown") goes to
// the caller, who may read to find out. The sidecar follows the same rule
// when it forwards a write to the leader.
//
// # Watches and resumption
//
// WatchLeader, WatchMembers and WatchAssignments each run one goroutine that
// owns a stream and a channel. The channel closes when the watch's context
// ends or the client is closed (Close waits for the goroutines); after a
// final event with Err set when the server cannot serve the watch at all.
// A broken stream is reopened (local endpoint first, then the others, with
// backoff):
//
//   - WatchLeader and WatchMembers are latest-state streams: after a
//     reconnection the current state comes again, with Reconnected set.
//     WatchLeader also sends a Disconnected event when the stream breaks:
//     until the next event the leadership is unknown.
//   - WatchAssignments delivers every change in revision order, each once.
//     After a break it asks the next stream for the last revision it
//     delivered events of and skips the events of that revision already
//     delivered (every node emits a revision's events in the same order, as
//     they all apply the same log), so nothing is lost or repeated, across a
//     leader change or a move to another endpoint alike. When the server's
//     change feed no longer reaches back that far (OutOfRange) the client
//     lists again and sends a KindResync event with the full current set
//     and the listing's revision, then continues after it.
//
// # Security: TLS and tokens
//
// Config.TLS makes every connection TLS (nil: plaintext), to the endpoints
// and to the leader addresses the client learns alike. TLSConfigFromFiles
// builds it from the files of `heartbeat tls init`: the cluster's CA
// bundle, which the sidecar's certificate must verify against (and name a
// node of the cluster; host names are not checked), and the client's own
// certificate and key, whose roles the sidecars grant. The files are read
// again when they change. A caller without a certificate gives the CA
// alone and Config.Token: a bearer token sent as "authorization: Bearer
// <token>" with every call and stream. A token is not sent in the clear:
// without TLS, Validate allows it only to loopback endpoints, and the
// client refuses (Unauthenticated) to send it to a learned non-loopback
// address over plaintext. Sidecars answer Unauthenticated to a caller
// they cannot identify and PermissionDenied to one whose role is too
// weak; neither is retried, and a watch ends with it.
//
// # Leases: RunWhileLeader and RunWhileOwner
//
// RunWhileLeader(ctx, fn) runs fn while the local node is the leader with a
// valid lease, passing the fencing token (the term in which that leader was
// elected: strictly increasing across leaderships). RunWhileOwner(ctx, fn)
// runs fn(resource, epoch) for each resource the local node owns, while it
// holds its ownership lease. Both keep a KeepAlive stream to Endpoints[0]
// (lease.go): every KeepAliveInterval the client asks, and each answer says
// how long the sidecar's leases have left, measured after the question
// arrived. The client's own lease runs from the moment it SENT the question
// for that long, less LeaseMargin, on this process's monotonic clock; so it
// can never outlast the sidecar's, whatever the delays between them, and a
// sidecar that hangs simply stops renewing it. fn's context is cancelled
// when that lease runs out, when an answer or a push says the node no
// longer leads (or owns the resource, or at that epoch), when the stream
// breaks, or when ctx ends. The sidecar claims leadership, and the leader
// moves a resource, only once the previous holder's lease has surely run
// out (README, "Leases"), so the old holder's fn is cancelled before the
// new holder's starts. Cancellation stops fn's context, not fn's code: a
// paused application runs on when it resumes. The fencing token (and a
// resource's epoch) is what makes that safe: pass it to every system fn
// writes to, and have them refuse tokens lower than the highest they have
// seen. Config.UnsafeNoLeaseTimer turns the client's timer off; it exists
// only for tests that show a checker catching the overlap that follows.
package client
