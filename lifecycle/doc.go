// Package lifecycle runs this node's own membership lifecycle: join,
// register, drain, leave, and rejoin after a departure.
//
// The cluster's membership is two records: the raft configuration (who
// votes, package election) and the replicated membership state (members,
// resources, assignments, package membership). A node's passage through
// both is a sequence, and this package is that sequence for the local node
// (type Local):
//
//   - Join: a node started with Join addresses and no raft state of its own
//     asks those addresses (any member: a follower forwards to the leader)
//     to add it, with backoff, until it succeeds, the cluster refuses for
//     good (ErrJoinRefused: an id or address taken, another cluster), or
//     the node stops. A voter enters as a learner; Join then waits until
//     the leader has promoted it, asking again now and then (a new leader
//     does not know it waits).
//   - Register: once in the raft configuration, the node commits an
//     UpsertMember for itself (its peer address exactly as raft knows it,
//     its dialable client and HTTP addresses, its suffrage, its leader
//     priority), retrying until a leader accepts it.
//   - Planned stop (PlannedStop, called by the node's Shutdown): drain (its
//     resources move to live members, bounded by Config.DrainTimeout;
//     skipped when nobody could take them), then record it as left, so
//     nobody declares it dead. Only a crash makes the leader declare a
//     member dead.
//   - Leave: a planned stop that also takes the node out of the raft
//     configuration: check that the cluster can do without it, drain, hand
//     leadership off (election.Node.TransferLeadership), record it as left,
//     ask the (new) leader to remove it; then Left() closes. Leave writes
//     left.json in the data dir (see Marker).
//   - Rejoin: started again after a Leave, PrepareRejoin discards the stale
//     raft state and the node joins afresh through Join or the other
//     InitialCluster members. A node removed by the leader while it runs is
//     told so (OnRemoved): it stops with ErrRemoved and its next start asks
//     to join anew, keeping its raft state.
//   - BeforeRemove: on the leader, a member that is being removed from the
//     raft configuration is first recorded as left.
//
// Every retry here goes through internal/retry (one rule for what is
// retryable). What the package needs of the node is declared as small
// interfaces: the election (Election), the membership state (State), the
// way to commit to it through the leader (Committer), and the ClusterAdmin
// server that removes members (Remover).
package lifecycle
