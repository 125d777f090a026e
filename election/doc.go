// Package election is the raft node of a Heartbeat sidecar: storage,
// bootstrap and membership changes, the leader lease, the leadership view
// that any number of watchers follow, fast crash failover and graceful
// hand-off. It runs hashicorp/raft over a Transport it declares itself
// (rpc/transport implements it); it imports no transport implementation.
//
// # Storage
//
// Everything lives in Config.DataDir: raft.db (raft-boltdb v2: the log and
// the stable store, with a small in-memory log cache in front), the file
// snapshot store's snapshots/ directory, and cluster.json, which records the
// cluster id and node id that own the directory. Opening a directory written
// for another cluster or another node id fails with ErrClusterMismatch naming
// both; a directory whose bolt file another process (or node) holds fails with
// ErrDataDirLocked after a second, instead of hanging on the file lock.
//
// # Storage faults
//
// Every write to raft.db (log appends, term and vote) and to the snapshot
// store passes through the storage alarm (storagehealth.go). The first
// failed write raises it: one error log line, heartbeat_storage_alarm 1,
// Node.StorageAlarm (node's /readyz shows it). A later successful log
// append, a snapshot written in full, or a probe write clears it: while it
// is raised the node writes, syncs and removes a file in the data dir every
// second (as large as the failed write, 64 KiB to 4 MiB), so a node that no
// leader sends entries to (a one-node cluster, a cluster that lost its
// quorum) recovers too. Successful term and vote writes do not clear it: on
// a full disk bolt fits those few bytes into pages it already has while
// log entries need new ones.
//
// While the alarm is raised the node stands for no election. Before, a full
// disk churned leadership: the leader failed to append, raft stepped it
// down (raft does that on a failed StoreLogs), its log was as long as any,
// so it won the next election, failed its first append again, and so on —
// term 2 -> 41 in 15 s, inflating the fencing tokens. The guard sits in the
// view of the transport given to raft (raftTransport): this node's own
// RequestPreVote and RequestVote are answered locally with a refusal in the
// request's term and nothing is sent, so raft's pre-vote is never won and
// the term is never raised by this node; it still votes for others, and a
// leader's appends and heartbeats reach it as before, so it catches up as
// soon as writes work. Before it asks for votes at all, a node also probes
// (one small write and fsync per election round, as much as raft's own term
// write): a follower of an idle cluster may have written nothing for long
// and would otherwise learn of its broken disk only by winning. The fast
// failover checks the same before it stands. A sole voter asks no one for
// votes, so for it the guard is raft's own timer: while its alarm is up its
// heartbeat and election timeouts are reloaded to an hour (holdElections;
// a stepping-down leader counts its last contact as now, so it stays a
// follower) and restored when the alarm clears. Two alternatives were weighed:
// reloading raft's timeouts to an hour on every sick node would also keep a
// follower believing in its old leader and refusing votes to the others for
// that hour (so it is done for a sole voter only); refusing votes inside raft
// is not possible without a fork.
//
// Limits: a leader that transfers leadership to a sick node (a TimeoutNow,
// which skips pre-vote) still costs one term before the node's own vote
// requests are refused; raft's leadership transfer picks the most
// up-to-date follower, which a sick one is not. raft panics when it cannot
// persist a new term (setCurrentTerm); on a full disk those few bytes have
// fitted into bolt's free pages in every run of TestDiskFull, but a disk
// that refuses every write (I/O errors) still ends the process there.
//
// # Bootstrap and join
//
// Config.Bootstrap is the static initial cluster, given identically to every
// node (like etcd's initial-cluster). A node that has no raft state and finds
// itself in the list writes the whole list as the configuration entry at index
// 1; every listed node doing so with the same list is safe, as they all start
// from the same entry. A node not in the list starts empty and waits to be
// joined; a node with existing state never bootstraps again, so a full
// restart keeps the log. Join, Remove and Transfer run on the leader; anywhere
// else they return a *NotLeaderError that names the leader, so callers can
// retry there. Join is idempotent for the same id and address; the same id
// with another address is ErrIDInUse.
//
// # Learners and the quorum guard
//
// A Join as a voter adds a learner: a non-voter that the leader promotes
// once it answers and has caught up (promote.go), so a voter that never
// answers never raises the quorum. Removing or demoting a voter is
// refused with ErrQuorumAtRisk when the new configuration's voters that
// answer could not reach its quorum.
//
// # The leader lease
//
// Raft alone cannot tell a leader that it has been deposed: a leader cut off
// from its quorum keeps saying Leader until its own LeaderLeaseTimeout. The
// node therefore keeps a lease. The transport records, per peer, the send
// time and term of the latest AppendEntries or heartbeat that the peer
// acknowledged in the sender's term (Config.Acks). Among the current voters,
// with the leader counting as now and acks of any other term counting as
// nothing, the lease ends at the quorum-th latest of those send times plus
// LeaseDuration less LeaseDriftMargin. A follower that heard the leader at
// time s grants no normal vote before s + HeartbeatTimeout (it rejects votes
// while it knows a leader, and pre-vote makes candidates ask first), and
// LeaseDuration <= HeartbeatTimeout, so no other leader can be elected by a
// normal vote inside a valid lease.
//
// The lease loop on the leader recomputes the lease every HeartbeatTimeout/10
// (raft's heartbeat interval) or at the lease's end if that is sooner; when
// the lease lapses, IsLeader turns false at once, even while raft still says
// Leader. One path bypasses the normal vote: a TimeoutNow (leadership
// transfer, and the fast failover below) makes voters vote although they
// still know a leader. So a leader stops claiming leadership for as long as
// a transfer it started runs (Transfer and Shutdown), and claims it again if
// the transfer fails. The node that wins such an election, or a fast
// failover's, may have been elected inside the old leader's lease, so it
// holds off its claim (claimHoldoff): a leader elected within ten heartbeat
// timeouts of a TimeoutNow it received (the transport records them) claims
// leadership only LeaseDuration after it noticed its win. The old lease
// ended before the win plus LeaseDuration: some voter of the new quorum
// acknowledged the old leader's last lease-bearing heartbeat before it
// voted. So even if a fast failover's evidence lied (a live leader whose
// sockets were reset and whose port refused a redial), the two claims never
// overlap. The hold-off delays the claim only; raft leadership, grants and
// the named leader are not delayed.
//
// # The ownership lease
//
// A member works on its resources only while it holds an ownership lease
// (ownership.go), and the leader's reconciler gives a resource to another
// member only once its old owner's lease has surely run out. The leader
// grants on the heartbeat stream (rpc/transport, "Ownership grants") while
// its leader lease is valid (GrantSource), and grants itself in the lease
// loop. A member extends its lease to the grant's anchor (its own previous
// heartbeat answer) plus LeaseDuration less LeaseDriftMargin, but only once
// it has applied the leader's membership revision carried by the grant
// (Config.Revision): a release of one of its resources committed before the
// grant is then already in its state. OwnershipLease reports the end.
//
// # Leadership view and watchers
//
// Leadership is computed on demand from raft's state, term and known leader
// plus the stored lease: a few atomic reads. FencingToken is the term in which
// the known leader was elected. It is read consistently: raft clears its known
// leader before it raises its term and sets a leader only after, so a leader
// read between two equal term reads was elected in that term.
//
// Watch returns a Watcher whose channel first carries the current view and
// then every change. Changes come from a non-blocking raft observer (leader
// and state changes) and from the lease loop; the view is recomputed from raft
// each time rather than trusted from the observation, so a dropped
// observation costs nothing. Each watcher has a latest-wins buffer of one: a
// slow reader skips intermediate views (counted by Dropped) and never blocks
// raft, the publisher or other watchers. Lease renewals alone are not
// published (LeaseUntil moves every few tens of milliseconds); a lapse is.
// Consumers should re-check Leadership before acting.
//
// # Fast crash failover
//
// A crashed process announces itself: the kernel closes its sockets. While
// this node is a voter follower with a known leader, a loop holds a stream to
// the leader (Transport.Hold). When it starts holding a new leader it also
// asks each other member once whether it lost that leader (they say no), so
// the connections the crash check needs are open before a crash. When the
// leader closes the stream (ErrPeerClosed), the node redials the leader
// (RedialTimeout, 20 ms): an accepted connection means no crash. Otherwise it
// asks the other members in parallel whether they lost the leader too
// (ConfirmLost, ConfirmTimeout) and needs at least one to agree, so a single
// bad link cannot depose a leader the others still hear. Then it waits rank x
// FailoverRankStep, rank being the number of voters with a lower id (the dead
// leader left out) that may still be alive — a lower voter whose query was
// refused outright is dead; one that answered, or had not answered by the
// deadline, is presumed alive and standing itself — so the lowest live voter
// stands at once and the others only if its election fails; and if raft still follows the same (or no) leader in
// the same term, it hands its own raft a TimeoutNow: raft stands at once,
// skipping pre-vote, and the others vote for it although their heartbeat
// timers have not fired. A timeout alone, a dial that fails before the stream
// opens, or a goodbye (graceful stop) never triggers it; silent failures
// (pause, partition) are left to raft's heartbeat timeout and pre-vote. Every
// step is logged at info with its timing, and triggers are counted in
// heartbeat_fast_failover_triggers_total.
//
// The rank step must exceed the time one node's stand takes to reach the
// others (its TimeoutNow through raft's main loop, then its vote requests
// through theirs): raft acts on a TimeoutNow whatever its term, so a later
// rank whose TimeoutNow is processed after an earlier rank has won deposes
// the winner and costs an election timeout. On an idle machine a stand
// propagates in a few milliseconds; under heavy CPU load it has been seen to
// take hundreds (the tests, run with -race on a loaded machine, use 400 ms).
//
// # Shutdown
//
// Shutdown is graceful: the node stops claiming leadership at once (IsLeader
// false, watchers told); if it leads, it hands leadership to another voter
// and waits for the hand-off (bounded by ctx); it sends goodbye on the held
// streams it serves (followers then wait for the next leader instead of
// suspecting a crash); then raft shuts down, the node's goroutines are joined,
// watchers get a final "shutdown" view and are closed, metrics are
// unregistered and the stores closed. Close is abrupt, as a crash: no
// hand-off, no goodbye. Neither closes the transport: its owner closes it
// after the node (raft would close a transport that implements
// raft.WithClose, so raft is given a view without Close).
//
// # Logging and metrics
//
// Every line the node and raft write carries "node" and the current "term"
// (read atomically on each call) through a wrapper around Config.Logger.
// Metrics go to Config.Registerer only: raft state, term, commit and applied
// index (read at scrape time), elections started, leader changes, lease valid
// and remaining, the held-stream gauge and fast-failover triggers.
package election
