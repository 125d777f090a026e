// Package transport is hashicorp/raft's Transport over gRPC, the peer port of a
// Heartbeat node. It serves the RaftTransport service of proto/raftpb (and whatever
// Config.Register adds, such as ClusterAdmin) and sends raft's RPCs to peers.
//
// # Connections
//
// For every peer address the transport keeps two gRPC client connections, created on
// first use and closed by Close:
//
//   - control: heartbeats, RequestVote, RequestPreVote, TimeoutNow, Hold and Confirm,
//     all small and latency-sensitive;
//   - bulk: AppendEntries with entries, AppendEntries pipelines and InstallSnapshot.
//
// Each is its own TCP connection and HTTP/2 flow-control window, so a heartbeat never
// waits behind a 30 MiB batch or a snapshot stream. Calls do not wait for a
// connection to become ready (no WaitForReady): a call to a peer that is down fails at
// once and raft's own retry and backoff apply. Reconnect backoff is capped at
// Config.MaxReconnectBackoff (1 s), not gRPC's 120 s, so traffic resumes within about a
// second after a partition heals or a peer restarts. Send and receive limits are
// Config.MaxMsgSize (64 MiB) on both sides.
//
// The server pings connections idle for 30 s and drops those that do not answer
// within 10 s, so handlers of held streams from vanished peers do not pile up; clients
// send no keepalives (a partition closes nothing on the caller's side). Nothing else
// runs while the cluster is idle: no ticker, no polling goroutine; held and heartbeat
// streams cost nothing between messages.
//
// HTTP/2 flow-control windows are static (4 MiB per stream, 16 MiB per connection) on
// both sides. gRPC's default dynamic windows start a bandwidth estimate, a PING and a
// WINDOW_UPDATE each way, on nearly every DATA frame that arrives on a quiet
// connection: for a heartbeat that tripled the frames, syscalls and wake-ups.
//
// Every call carries the metadata "heartbeat-cluster" and "heartbeat-node-id"; the
// server's interceptors reject another cluster with codes.FailedPrecondition naming
// both cluster ids (ErrWrongCluster on the caller's side).
//
// # Heartbeat fast path
//
// raft's heartbeat is an AppendEntries with a term and a leader address and nothing
// else; IsHeartbeat applies the rule raft's NetworkTransport uses. Such a request goes
// on the peer's heartbeat stream: one long-lived HeartbeatStream (bidi) per peer on the
// control connection, opened by the first heartbeat, with cluster and node metadata
// checked once when it opens. A heartbeat is then one small DATA frame each way, with
// no per-call stream setup, metadata, deadline context or server goroutine. With the
// static windows (see Connections) it costs about a third of the CPU of the former
// unary call, 1.2 to 1.5 times raft's own TCP transport (BenchmarkHeartbeat). One
// heartbeat is on a stream at a time; its answer must come within
// Config.HeartbeatTimeout (opening the stream included), and a heartbeat that overruns
// it or fails tears the stream down, so a late answer can never be taken for the next
// request's; the next heartbeat opens a new stream. Messages are reused from one
// heartbeat to the next, and the per-peer RTT histogram is looked up once.
//
// The server reads a heartbeat stream's requests in order, calls the callback raft set
// with SetHeartbeatHandler directly, without queueing on Consumer() behind disk-bound
// work (without a callback, or for a request with entries, it goes through Consumer()),
// and answers each before reading the next. The unary Heartbeat RPC is still served,
// and a client falls back to it, for as long as the transport lives, for a peer that
// answers the stream with codes.Unimplemented (a node from before the stream).
//
// # Pipelines and snapshots
//
// AppendEntriesPipeline opens one bidi stream per pipeline. AppendEntries sends and
// returns a future at once; a receiver goroutine reads answers in order (each within
// Config.RPCTimeout) and delivers the completed futures on the pipeline's Consumer().
// The server reads a pipeline's requests one at a time and answers in order.
// InstallSnapshot streams the request and then the data in Config.SnapshotChunkSize
// pieces; the server feeds raft's RPC.Reader through a pipe limited to the request's
// Size while raft reads it.
//
// # Acks
//
// For every peer the transport records the latest AppendEntries or heartbeat (unary,
// heartbeat or pipelined) whose response came back with the request's term: when it
// was sent (taken before it left), when the answer arrived, the term and the RTT.
// Acks returns a copy; the election package computes the leader lease from the send
// times, so a lease is never longer than what a quorum really acknowledged.
//
// # Ownership grants
//
// The leader attaches an ownership-lease grant to heartbeats on the heartbeat stream
// (grant.go): the stream is lock-step, so a heartbeat left the leader after the
// follower's previous answer, and the follower anchors its lease on that answer's send
// time; a delayed or replayed heartbeat can only make the anchor older. The leader
// records when it sent each peer a grant (Grants); the first heartbeat of a stream and
// unary heartbeats carry none; HoldGrants stops the grants to given peers (the
// reconciler holds an old owner's while it moves that owner's resources directly).
// GrantHooks connect both ends to the node. The
// transport also records the last TimeoutNow it received (LastTimeoutNow), which the
// election uses to hold off a leadership claim after a TimeoutNow election.
//
// # Held streams (fast crash failover)
//
// A follower holds a server stream open to its leader (Hold). The server sends one
// event on open and then nothing, until Goodbye (a graceful stop: a goodbye event) or
// the end of its process (the kernel closes the socket, the stream breaks). The
// holder tells the three apart: nil (its own ctx ended), ErrGoodbye, ErrPeerClosed.
// Reachable tells a dead process from a broken link: it dials a fresh TCP connection,
// sends the HTTP/2 preface and requires the server's first SETTINGS frame within its
// ctx. An accepted TCP connection alone proves nothing: while a killed process's
// descriptors are torn down its kernel still accepts into the listener's backlog.
// ConfirmLost asks another member whether it has lost the leader too, using its own
// held stream and a 50 ms Reachable. TimeoutNowSelf hands the local raft a
// TimeoutNow so it stands for election at once. Holding tells whether a held stream
// is open now (for tests and status). The policy that combines these lives
// in the election package; this package only provides the signals. A Confirm
// is answered only about a server of the node's raft configuration
// (Config.IsMember): the peer port is open to the network, and an outsider must
// not make the node dial anywhere it likes.
//
// # Incoming requests are checked before raft sees them
//
// raft trusts its RPCs, and a term it is sent is a term it adopts: one of
// 2^64-1 wraps to 0 at the next election. A raft RPC whose term is more than
// Config.MaxTermAhead (default 1<<20) beyond the node's own (Config.CurrentTerm),
// or above MaxTerm (1<<62), is refused with codes.InvalidArgument; legitimate terms
// move by one per election, and with pre-vote a cut-off node does not raise its own.
// The conversions of incoming requests never wrap a value: a field that does not fit
// raft's type, or a term out of raft's order (an entry above the request's term), is
// refused too. Refusals are logged, at most once a minute per reason and caller, and
// counted in heartbeat_transport_rejected_total{reason="term"|"malformed"|"confirm"}.
//
// # Lifecycle
//
// New listens and serves at once; Consumer() must be read from then on. Close stops
// everything and waits for every goroutine; calls after it return
// ErrTransportShutdown. Metrics go to Config.Registerer, never the global registry.
package transport
