// Package api serves Heartbeat's two gRPC surfaces that sit above raft:
//
//   - Coordinator (proto/heartbeatpb), on the client port: what an application
//     or the heartbeat CLI asks of its sidecar — this node's status, the
//     members (raft configuration merged with the membership state), a
//     stream of leadership changes, and, over the membership state
//     (package membership): register / delete / list resources, one
//     member's assignments, a resumable watch of assignment changes, drain
//     and undrain, and the application's push heartbeats. Writes go through
//     the leader: a follower forwards each once to the leader's peer
//     address, raft's leader address (ClusterAdmin.ForwardCommand, which
//     accepts only what the API can write, never the leader's own
//     decisions; it is internal and not on the client port); bad input is refused with
//     InvalidArgument / NotFound before anything is committed, and a batch
//     is one command, applied whole or not at all. Cluster calls too: the
//     leader with its client and HTTP addresses (GetLeader), a watch of the
//     full member list, StepDown and TransferLeadership (a follower
//     forwards them to the leader's client port; the answer comes once the
//     serving node knows the new leader), leader priorities (a membership
//     command; the node's leader hands leadership to a healthy voter of
//     higher priority), Join and Remove (ClusterAdmin's, reached through
//     CoordinatorConfig.Admin) and Leave of the serving node (the node's
//     hook, CoordinatorConfig.Leave).
//   - ClusterAdmin (proto/raftpb), on the peer port beside the raft transport:
//     the calls between nodes. How nodes join and leave the cluster: only the
//     leader can change the raft configuration, so a follower forwards each
//     call once to the leader it knows (over the leader's peer address); a
//     forwarded call is never forwarded again, which rules out loops while
//     leadership moves. ForwardCommand (a follower's write, committed by the
//     leader's Coordinator), ReadIndex (a follower's consistent read),
//     GetConfiguration (leader only). Removed, the leader's notice to a node
//     it removed, is believed only when it names the raft leader the node
//     knows and the removal is committed (the node's own committed
//     configuration, or else the leader asked at raft's address for it,
//     no longer holds the node); otherwise it is refused and logged and the
//     node keeps running.
//
// Both servers read the raft node through the small Election interface, which
// *election.Node implements; neither owns the node. Errors leave as proper gRPC
// status codes (see codeOf): FailedPrecondition for "not leader" (with the
// leader's address in the message) and for a wrong cluster id, InvalidArgument
// for malformed input, AlreadyExists for an id already in use, NotFound for an
// unknown member, Unavailable when no leader is known.
//
// The leadership stream never slows the node down: it reads an election
// Watcher, which keeps only the latest state for a slow reader, and tells the
// reader so with fell_behind=true on the next event it receives. The member
// watch works alike: a goroutine of the stream computes the lists and leaves
// the latest one in a single slot for the sender.
package api
