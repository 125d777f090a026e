// Package membership is Heartbeat's replicated cluster state and the leader's
// control loop over it: who the members are and how they fare, which
// resources exist, and which member owns each of them.
//
// # Replicated state
//
// FSM implements raft.FSM. Its state holds
//
//   - members: id, peer / client / HTTP addresses, voter flag, capacity, state
//     (alive, suspect, dead, left), application health, draining flag,
//     leader priority (0..100);
//   - resources: id (1..256 bytes), weight (1..1000), labels;
//   - assignments: resource -> owner and epoch.
//
// Every change is a versioned protobuf Command (proto/membershippb) in the
// raft log: UpsertMember, MarkSuspect, MarkDead, MarkAlive, MarkLeft,
// SetAppHealth, SetDrain, SetLeaderPriority, RemoveMember, RegisterResources and DeleteResources
// (batches of up to MaxBatch), and Assign (a batch of moves). DecodeCommand
// rejects unknown versions, malformed bytes and out-of-limit fields with an
// error and never panics (FuzzDecodeCommand); the limits are constants, so
// every node accepts and rejects the same entries. A command is checked whole
// before anything applies: a batch with one bad entry, or a state conflict
// (unknown member, invalid transition, address in use), changes nothing, and
// Apply returns the error as its result; an accepted one returns a *Result.
// Assign moves carry the owner and epoch the planner saw; a move whose
// expectation no longer holds, or whose target can no longer take work, is
// skipped (counted in Result.Skipped), so a plan made on an older state can
// never give a resource to the wrong member.
//
// The revision is the raft index of the last applied command. Each accepted
// change emits Events (member changed, resource registered / deleted,
// resource assigned) stamped with that revision into a bounded ring
// (Config.FeedCapacity). Readers list the state (FSM.View, which carries its
// Revision), then follow Changes / Subscribe from that revision without
// missing or repeating an event; a reader older than the ring gets
// ErrCompacted and lists again. Nothing a reader does can block Apply.
//
// Snapshots are complete and deterministic: Snapshot copies the state under
// the read lock (Apply waits only for the copy), Persist writes it sorted by
// id as length-prefixed protobuf frames, and Restore validates a snapshot
// fully before it replaces the state (a bad one changes nothing). Restoring a
// snapshot and taking a new one gives the same bytes.
//
// # Epochs are fencing tokens
//
// An assignment's epoch is the raft index of the Assign entry that made it.
// Indexes only grow, so every new assignment of a resource has a larger epoch
// than any before it, on every node. An owner passes the epoch to whatever it
// guards (a database row, a lock service, a storage bucket), which rejects
// requests with an epoch smaller than the largest it has seen: an old owner
// that has not noticed its loss (paused, partitioned) is fenced off.
//
// # Failure detector
//
// Detector is a phi-accrual detector (Hayashibara et al.; as in Cassandra and
// Akka). The leader's transport records, per peer, when the latest heartbeat
// or AppendEntries reply arrived; the reconciler feeds those times to the
// detector every tick, so detection costs no extra traffic. From a window of
// inter-arrival intervals (WindowSize) it estimates mean and standard
// deviation (floored at MinStdDev) and computes phi = -log10 P(a live peer is
// this late): phi 1 means a 10% chance the peer is merely slow, phi 8 one in
// 10^8. The verdicts:
//
//	elapsed <  MinTimeout                          alive (whatever phi says)
//	phi >= DeadPhi and elapsed >= MinDeadTimeout   dead
//	phi >= SuspectPhi                              suspect
//	otherwise                                      alive
//
// The trade-off: detection time is roughly max(MinDeadTimeout, mean +
// k·stddev) where k grows with DeadPhi (k ≈ 7 at phi 16); shorter means a
// real death is handled sooner but a GC pause, a starved core or a brief
// network hiccup of that length becomes a false death, whose cost is moving
// the member's resources away and back. The floors are the main knobs: no
// pause shorter than MinDeadTimeout (default 300 ms) ever kills a member, and
// no pause shorter than MinTimeout (150 ms) makes it even suspect. MinStdDev
// (25 ms) keeps a very regular peer from being judged on microseconds of
// jitter; a jittery peer earns more patience automatically through its larger
// deviation. With raft heartbeats every 10-100 ms and the 50 ms tick, a crash
// is declared ~300-350 ms after the last reply and its resources are
// reassigned in the same tick. Suspicion is advisory: a suspect keeps its
// resources and receives no new ones, so a flap shorter than MinDeadTimeout
// moves nothing. A reply after an outage resets the peer's history (the
// outage is not an interval), so the next death is seen as fast.
//
// # Assignment strategy
//
// Plan is pure and deterministic: weighted rendezvous (highest random weight)
// hashing, score(m, r) = capacity(m) / -ln(u(m, r)) with u a fixed 64-bit
// hash of member and resource ids. Each resource belongs on its best-scoring
// member. A resource with no owner, or whose owner can no longer keep it
// (dead, left, draining, application unhealthy), moves at once to its best
// member among those that can take work; rendezvous hashing guarantees that
// this moves only that member's resources and spreads them evenly over the
// others. A member that becomes eligible (joins, comes back from the dead,
// is undrained) is the best member of about 1/N of the resources; only those
// move to it, at most PlanConfig.MaxMovesPerRound per round and only while
// its load stays within its fair share (PlanConfig.FairShareSlack), so it is
// not flooded. Suspects keep their resources and receive none. PlanUnowned
// computes the same moves for unowned resources only: while no member has
// changed (State.MemberRevision) and no rebalance is pending, newly
// registered resources are the only ones that can need an owner, so the
// reconciler plans just those and a registration burst does not cost a full
// pass over every resource per tick.
//
// # Reconciler
//
// Reconciler runs on every node but acts only while Leader.IsLeader() says
// this node leads with a valid lease, and re-checks before each commit. Every
// tick (50 ms) it feeds reply times to the detector, commits MarkSuspect,
// MarkDead and MarkAlive (a dead member is revived only by a reply received
// during this leadership; the leader marks itself alive if an earlier leader
// declared it dead), then computes Plan and commits its moves as Assign
// batches. On gaining leadership it starts the detector afresh, ignoring
// replies older than the leadership, so no member is declared dead sooner
// than MinDeadTimeout after a leader change. If the reconciler itself stalls
// (a tick gap above MaxTickGap) it forgives every peer the gap instead of
// blaming them for its own pause. It declares only the interfaces it needs
// (Leader, Applier, HeartbeatSource, Grants, StateReader) and imports neither
// the raft node nor the transport.
//
// With ownership leases (ReconcilerConfig.Grants) the planned moves pass a
// gate before they are committed: a member may work on its resources for up
// to OwnershipLease after the last grant it got, so a resource gets a new
// owner only once that has passed since its old owner's last grant and since
// this leadership began. A dead member's resources wait for that and move in
// one command; a live member's (drain, unhealthy application, rebalance,
// leave) are released first (an Assign move with To "": owner none, epoch
// 0) and placed OwnershipLease after the release was applied, so the old
// owner, which sees the release or whose lease runs out, stops first.
//
// # Invariants
//
// CheckOneOwner checks S3 on any View: each resource appears once, so it has
// at most one owner, every owner is a member, every epoch is at most the
// view's revision. State.Check checks the same for the in-memory owner index.
// Both are tested against planted violations.
//
// # What the API layer exposes
//
// The node wires FSM into election.New, a Reconciler over election's Apply and
// Leadership().IsLeader and the transport's Acks, and on join commits an
// UpsertMember for itself. The Coordinator API and HTTP then offer: register
// resources one or many per call (RegisterCmd; limit errors map to
// InvalidArgument / 400 before anything is committed), delete (DeleteCmd;
// Result.NotFound maps to 404), list with owners and epochs (View), this
// node's assignments (State.Owned), members (View.Members), drain / undrain
// and leave (SetDrainCmd, then MarkLeftCmd once it owns nothing), application
// health from push heartbeats or a polled URL (SetAppHealthCmd), and a watch
// stream of changes that resumes from a revision (Subscribe; ErrCompacted
// maps to a "re-list" status). Writes go through the leader; a follower
// forwards them.
package membership
