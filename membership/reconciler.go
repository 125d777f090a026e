package membership

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	pb "github.com/heartbeat-sidecar/heartbeat/proto/membershippb"
)

// Leader tells the reconciler whether this node may decide. IsLeader must be
// true only while this node is the raft leader AND its leader lease is valid
// (election's Leadership().IsLeader).
type Leader interface {
	IsLeader() bool
}

// Applier commits an encoded command through raft and returns the FSM's
// result (a *Result or an error value) once it is applied on this node
// (election's Node.Apply). It returns an error when the entry could not be
// committed (not leader, timeout).
type Applier interface {
	Apply(ctx context.Context, cmd []byte) (any, error)
}

// HeartbeatSource reports when each peer last answered a heartbeat or
// AppendEntries from this node, keyed by the peer's raft address
// (Member.PeerAddr): the transport's Acks()[addr].RepliedAt. A zero time
// means never. It must not block.
type HeartbeatSource interface {
	LastReplies() map[string]time.Time
}

// Grants tells the reconciler when this node, as leader, last granted each
// member an ownership lease (see election's OwnershipLease and rpc/transport's
// "Ownership grants"). It must not block.
type Grants interface {
	// LastGrants returns, keyed by peer address (Member.PeerAddr), when this
	// node last sent each member a grant.
	LastGrants() map[string]time.Time
	// SelfGranted returns when this node last granted itself one.
	SelfGranted() time.Time
}

// LeaderFunc adapts a function to Leader.
type LeaderFunc func() bool

// IsLeader calls f.
func (f LeaderFunc) IsLeader() bool { return f() }

// HeartbeatSourceFunc adapts a function to HeartbeatSource.
type HeartbeatSourceFunc func() map[string]time.Time

// LastReplies calls f.
func (f HeartbeatSourceFunc) LastReplies() map[string]time.Time { return f() }

// StateReader gives read access to the replicated state (*FSM implements it).
type StateReader interface {
	Read(fn func(*State))
}

// ReconcilerConfig configures a Reconciler.
type ReconcilerConfig struct {
	// SelfID is this node's member id. The reconciler never judges itself by
	// heartbeats; it marks itself alive if a previous leader declared it
	// suspect or dead.
	SelfID string
	// Tick is the period of Run's loop: detection and reassignment react
	// within one tick. Default 50 ms.
	Tick time.Duration
	// ApplyTimeout bounds each commit. Default 2 s.
	ApplyTimeout time.Duration
	// MaxTickGap: a longer gap between two ticks means this node itself was
	// stalled; the excess over Tick is forgiven to every peer (see
	// Detector.Forgive). Default 4 × Tick.
	MaxTickGap time.Duration
	// Detector tunes the failure detector.
	Detector DetectorConfig
	// Plan tunes the assignment strategy.
	Plan PlanConfig
	// Grants and OwnershipLease turn on the ownership-lease rule: a member
	// may work on its resources for up to OwnershipLease after the last grant
	// it got (from this leader or an earlier one), so the reconciler gives a
	// resource to a new owner only once OwnershipLease has passed since its
	// old owner's last grant and since this leadership began. A resource of a
	// member that still holds a lease (alive, suspect, draining, unhealthy,
	// left) is first released (owner "") and placed OwnershipLease after the
	// release was applied; a dead member's resources wait until its lease has
	// run out and then move in one step. Nil Grants: no rule (moves are made
	// at once, as before ownership leases).
	Grants         Grants
	OwnershipLease time.Duration
	// Logger; nil: no logging.
	Logger hclog.Logger
	// Now is the clock; nil: time.Now. Tests inject a fake one.
	Now func() time.Time
}

// DefaultReconcilerConfig returns defaults; SelfID must still be set.
func DefaultReconcilerConfig() ReconcilerConfig {
	return ReconcilerConfig{
		Tick:         50 * time.Millisecond,
		ApplyTimeout: 2 * time.Second,
		MaxTickGap:   200 * time.Millisecond,
		Detector:     DefaultDetectorConfig(),
		Plan:         DefaultPlanConfig(),
	}
}

// Validate checks the configuration.
func (c ReconcilerConfig) Validate() error {
	if err := checkMemberID(c.SelfID); err != nil {
		return fmt.Errorf("%w: SelfID: %v", ErrInvalidConfig, err)
	}
	if c.Tick <= 0 || c.ApplyTimeout <= 0 || c.MaxTickGap < c.Tick {
		return fmt.Errorf("%w: want Tick > 0, ApplyTimeout > 0, MaxTickGap >= Tick", ErrInvalidConfig)
	}
	if c.Grants != nil && c.OwnershipLease <= 0 {
		return fmt.Errorf("%w: OwnershipLease %v must be > 0 with Grants", ErrInvalidConfig, c.OwnershipLease)
	}
	if err := c.Detector.Validate(); err != nil {
		return err
	}
	return c.Plan.Validate()
}

// ReconcilerStats counts what a reconciler has done since it was created.
type ReconcilerStats struct {
	Ticks         uint64 // steps taken while leader
	MarkedSuspect uint64
	MarkedDead    uint64
	MarkedAlive   uint64
	Moves         uint64 // moves committed (applied, not skipped)
	Skipped       uint64 // moves the FSM skipped as stale
	Released      uint64 // resources released (owner "") so that their old owner's lease runs out first
	LeaseWaits    uint64 // planned moves held back a round because an ownership lease had not run out
	Rejected      uint64 // commands the FSM rejected
	Stalls        uint64 // tick gaps over MaxTickGap
	Errors        uint64 // commits that failed
	FullPlans     uint64 // plans over all resources (the others cover only unowned ones)
}

// Reconciler is the leader's control loop: it turns heartbeat arrivals into
// member states (MarkSuspect / MarkDead / MarkAlive) and the assignment plan
// into Assign commands, committing both through the Applier. It acts only
// while Leader.IsLeader() holds, and re-checks before every commit. Because
// every decision is a committed command carrying its expectations, a stale
// leader's late commands are rejected or skipped by the FSM.
type Reconciler struct {
	cfg    ReconcilerConfig
	state  StateReader
	apply  Applier
	leader Leader
	hb     HeartbeatSource
	log    hclog.Logger
	now    func() time.Time
	det    *Detector

	mu          sync.Mutex // serializes Step; guards the fields below
	leading     bool
	leaderSince time.Time
	lastTick    time.Time
	plannedRev  uint64
	planned     bool
	plannedMRev uint64               // MemberRevision at the last full plan
	pending     bool                 // the last full plan was rate-limited or could not place something
	held        bool                 // the last plan held moves back for ownership leases: plan again
	deadSince   map[string]time.Time // member id -> when this leadership first saw it dead
	releasedAt  map[string]time.Time // resource id -> when this leadership's release of it was applied

	stats reconcilerCounters // atomics: Stats never waits for a Step
}

type reconcilerCounters struct {
	ticks, suspect, dead, alive, moves, skipped, rejected, stalls, errors, fullPlans, released, leaseWaits atomic.Uint64
}

// NewReconciler builds a reconciler; it starts nothing (call Run).
func NewReconciler(cfg ReconcilerConfig, state StateReader, ap Applier, leader Leader, hb HeartbeatSource) (*Reconciler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if state == nil || ap == nil || leader == nil || hb == nil {
		return nil, fmt.Errorf("%w: state, applier, leader and heartbeat source are required", ErrInvalidConfig)
	}
	det, err := NewDetector(cfg.Detector)
	if err != nil {
		return nil, err
	}
	r := &Reconciler{cfg: cfg, state: state, apply: ap, leader: leader, hb: hb, log: cfg.Logger, now: cfg.Now, det: det,
		deadSince: make(map[string]time.Time), releasedAt: make(map[string]time.Time)}
	if r.log == nil {
		r.log = hclog.NewNullLogger()
	}
	if r.now == nil {
		r.now = time.Now
	}
	return r, nil
}

// Run steps every Tick until ctx ends, then returns nil. It blocks: the
// caller owns the goroutine and waits for Run to return on shutdown. A
// failed step is logged and retried on the next tick.
func (r *Reconciler) Run(ctx context.Context) error {
	t := time.NewTicker(r.cfg.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := r.Step(ctx); err != nil && ctx.Err() == nil {
				r.log.Debug("reconcile step failed", "error", err)
			}
		}
	}
}

// gatedRecheck is how often RunGated re-checks the leadership while it
// sleeps without being told of a change.
const gatedRecheck = time.Second

// RunGated is Run for a node that spends most of its time not leading:
// while the Leader says no, it sleeps until changes delivers (instead of
// waking every Tick to find it still does not lead), then re-checks. changes
// must deliver after every change of the Leader's answer — a watch of the
// node's leadership (election.Node.Watch().C()), which keeps the latest
// value for a slow reader; it also re-checks every second in case a change
// went untold. A closed changes falls back to Run's ticking.
// It returns nil when ctx ends.
func RunGated[T any](ctx context.Context, r *Reconciler, changes <-chan T) error {
	t := time.NewTicker(r.cfg.Tick)
	defer t.Stop()
	for {
		if changes != nil && !r.leader.IsLeader() {
			// One step forgets the detector's history if this node was
			// leading until now; then sleep until the leadership changes.
			if err := r.Step(ctx); err != nil && ctx.Err() == nil {
				r.log.Debug("reconcile step failed", "error", err)
			}
			// A re-check now and then in case a change went untold (the
			// leadership came back between two reads of it).
			recheck := time.NewTimer(gatedRecheck)
			select {
			case <-ctx.Done():
				recheck.Stop()
				return nil
			case _, ok := <-changes:
				if !ok {
					changes = nil
				}
			case <-recheck.C:
			}
			recheck.Stop()
			t.Reset(r.cfg.Tick)
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := r.Step(ctx); err != nil && ctx.Err() == nil {
				r.log.Debug("reconcile step failed", "error", err)
			}
		}
	}
}

// Stats returns the counters; it never blocks on a running Step.
func (r *Reconciler) Stats() ReconcilerStats {
	c := &r.stats
	return ReconcilerStats{
		Ticks: c.ticks.Load(), MarkedSuspect: c.suspect.Load(), MarkedDead: c.dead.Load(),
		MarkedAlive: c.alive.Load(), Moves: c.moves.Load(), Skipped: c.skipped.Load(),
		Rejected: c.rejected.Load(), Stalls: c.stalls.Load(), Errors: c.errors.Load(), FullPlans: c.fullPlans.Load(),
		Released: c.released.Load(), LeaseWaits: c.leaseWaits.Load(),
	}
}

// errLostLeadership stops a step whose node stopped leading mid-way.
var errLostLeadership = errors.New("membership: lost leadership during reconcile")

// Step runs one reconcile round at the configured clock's now: update the
// detector, commit member state changes, then plan and commit moves. It does
// nothing (and forgets the detector's history) when this node is not the
// leader with a valid lease. It returns the first commit error.
func (r *Reconciler) Step(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if !r.leader.IsLeader() {
		if r.leading {
			r.leading = false
			r.det.Reset()
		}
		return nil
	}
	if !r.leading {
		r.leading, r.leaderSince, r.planned = true, now, false
		r.det.Reset()
		clear(r.deadSince)
		clear(r.releasedAt)
	} else if gap := now.Sub(r.lastTick); gap > r.cfg.MaxTickGap {
		r.det.Forgive(gap - r.cfg.Tick)
		r.stats.stalls.Add(1)
		r.log.Warn("reconciler stalled; forgiving peers the gap", "gap", gap)
	}
	r.lastTick = now
	r.stats.ticks.Add(1)

	if err := r.detect(ctx, now); err != nil {
		return err
	}
	return r.assign(ctx, now)
}

// detect feeds replies to the detector and commits state changes.
func (r *Reconciler) detect(ctx context.Context, now time.Time) error {
	replies := r.hb.LastReplies()
	var members []Member
	r.state.Read(func(s *State) { members = s.Members() })
	known := make(map[string]struct{}, len(members))
	type change struct {
		cmd   *pb.Command
		count *atomic.Uint64
		what  string
		id    string
	}
	var changes []change
	for _, m := range members {
		if m.State == StateLeft {
			continue
		}
		if m.ID == r.cfg.SelfID {
			if m.State != StateAlive {
				changes = append(changes, change{MarkAliveCmd(m.ID), &r.stats.alive, "alive", m.ID})
			}
			continue
		}
		addr := m.PeerAddr
		known[addr] = struct{}{}
		if m.State == StateDead {
			if _, ok := r.deadSince[m.ID]; !ok {
				r.deadSince[m.ID] = now
			}
		} else {
			delete(r.deadSince, m.ID)
		}
		// Replies from before this leadership (the transport keeps the last
		// reply of an earlier term) say nothing about now.
		if t, ok := replies[addr]; ok && t.After(r.leaderSince) {
			r.det.Observe(addr, t)
		}
		// A member first seen now (present at the leadership's start, or
		// added since) gets MinDeadTimeout from now to answer.
		r.det.Seed(addr, now)
		switch v := r.det.Verdict(addr, now); {
		case v == VerdictDead && m.State != StateDead:
			changes = append(changes, change{MarkDeadCmd(m.ID), &r.stats.dead, "dead", m.ID})
		case v == VerdictSuspect && m.State == StateAlive:
			changes = append(changes, change{MarkSuspectCmd(m.ID), &r.stats.suspect, "suspect", m.ID})
		case v == VerdictAlive && m.State == StateSuspect,
			v == VerdictAlive && m.State == StateDead && r.repliedSinceDeath(m.ID, addr):
			changes = append(changes, change{MarkAliveCmd(m.ID), &r.stats.alive, "alive", m.ID})
		}
	}
	for addr := range r.det.peers {
		if _, ok := known[addr]; !ok {
			r.det.Forget(addr)
		}
	}
	for id := range r.deadSince {
		if m, ok := byID(members, id); !ok || m.State != StateDead {
			delete(r.deadSince, id)
		}
	}
	for _, c := range changes {
		res, err := r.commit(ctx, c.cmd)
		if err != nil {
			return err
		}
		if res != nil {
			c.count.Add(1)
			r.log.Info("member state changed", "member", c.id, "state", c.what, "revision", res.Revision)
		}
	}
	return nil
}

// repliedSinceDeath: only a real reply that arrived after this leadership
// saw the member dead revives it (not a fresh detector, not a forgiven gap).
func (r *Reconciler) repliedSinceDeath(id, addr string) bool {
	at, ok := r.det.LastReply(addr)
	return ok && at.After(r.deadSince[id])
}

// assign plans on the current state, holds back or turns into releases the
// moves that an ownership lease forbids (gate), and commits the rest in
// batches.
func (r *Reconciler) assign(ctx context.Context, now time.Time) error {
	var plan PlanResult
	var rev, mrev uint64
	var members []Member
	var gone map[string]bool // unowned resources planned here whose id was deleted while owned
	full, skip := false, false
	r.state.Read(func(s *State) {
		defer func() {
			if r.cfg.Grants == nil {
				return
			}
			members = s.Members()
			for _, mv := range plan.Moves {
				if mv.From == "" && s.Gone(mv.ResourceID) {
					if gone == nil {
						gone = map[string]bool{}
					}
					gone[mv.ResourceID] = true
				}
			}
		}()
		rev, mrev = s.Revision(), s.MemberRevision()
		switch {
		case r.planned && rev == r.plannedRev && !r.held:
			skip = true // nothing changed since the last plan
		case !r.planned || mrev != r.plannedMRev || r.pending || r.held:
			full = true
			plan = Plan(s, r.cfg.Plan)
		case s.NumUnowned() == 0:
			skip = true // only resource updates or our own moves
		default:
			plan = PlanUnowned(s, r.cfg.Plan) // new resources only
		}
	})
	if skip {
		r.plannedRev = rev
		return nil
	}
	if full {
		r.plannedMRev, r.pending = mrev, plan.Deferred > 0 || plan.Unplaceable > 0
		// (Capped moves wait for the next member change: only that changes
		// fair shares enough to matter.)
		r.stats.fullPlans.Add(1)
	}
	moves := plan.Moves
	if r.cfg.Grants != nil {
		// A resource deleted while owned and registered again: its old
		// owner may still work on the old one; wait as after a release.
		for id := range gone {
			if _, ok := r.releasedAt[id]; !ok {
				r.releasedAt[id] = now
			}
		}
		var held int
		moves, held = r.gate(moves, members, now)
		// Plan everything again next round, when the leases may have run out.
		r.held = held > 0
		r.stats.leaseWaits.Add(uint64(held))
	}
	for _, batch := range AssignBatches(moves) {
		res, err := r.commit(ctx, AssignCmd(batch))
		if err != nil {
			r.planned = false // the next step plans everything again
			return err
		}
		if res != nil {
			r.stats.moves.Add(uint64(res.Changed))
			r.stats.skipped.Add(uint64(res.Skipped))
			r.noteReleases(batch)
		}
	}
	if len(plan.Moves) > 0 {
		r.log.Debug("assignment plan committed", "placed", plan.Placed, "rebalanced", plan.Rebalanced,
			"deferred", plan.Deferred, "unplaceable", plan.Unplaceable)
	}
	r.planned, r.plannedRev = true, rev
	return nil
}

// moveOverhead is an upper bound of the encoding of one Move beside its
// strings: field tags and lengths, the epoch, the repeated field's framing.
const moveOverhead = 32

// AssignBatches splits moves into the batches of the Assign commands that
// carry them: at most MaxBatch moves and about MaxAssignBytes encoded each
// (every batch holds at least one move).
func AssignBatches(moves []Move) [][]Move {
	var out [][]Move
	start, size := 0, 0
	for i, m := range moves {
		n := moveOverhead + len(m.ResourceID) + len(m.To) + len(m.From)
		if i > start && (i-start >= MaxBatch || size+n > MaxAssignBytes) {
			out = append(out, moves[start:i])
			start, size = i, 0
		}
		size += n
	}
	if start < len(moves) {
		out = append(out, moves[start:])
	}
	return out
}

// gate applies the ownership-lease rule (ReconcilerConfig.Grants) to the
// planned moves: a move whose old owner's lease has surely run out goes
// ahead; one from a dead member waits for that; one from any other member
// becomes a release (To ""), so that the member stops working on the resource
// (it sees the release, or its lease runs out) before anyone else starts; an
// unowned resource is placed once OwnershipLease has passed since this
// leadership released it. Nothing moves before OwnershipLease has passed
// since this leadership began: grants of an earlier leader are unknown here,
// but all were sent before it.
func (r *Reconciler) gate(moves []Move, members []Member, now time.Time) (out []Move, held int) {
	wait := r.cfg.OwnershipLease
	if now.Before(r.leaderSince.Add(wait)) {
		return nil, len(moves)
	}
	grants := r.cfg.Grants.LastGrants()
	self := r.cfg.Grants.SelfGranted()
	byMember := make(map[string]Member, len(members))
	for _, m := range members {
		byMember[m.ID] = m
	}
	out = moves[:0:0]
	for _, mv := range moves {
		if mv.From == "" {
			if at, ok := r.releasedAt[mv.ResourceID]; ok && now.Before(at.Add(wait)) {
				held++
				continue
			}
			out = append(out, mv)
			continue
		}
		last := self
		m := byMember[mv.From]
		if mv.From != r.cfg.SelfID {
			last = grants[m.PeerAddr]
		}
		switch {
		case !now.Before(last.Add(wait)):
			out = append(out, mv)
		case m.State == StateDead:
			held++
		default:
			out = append(out, Move{ResourceID: mv.ResourceID, From: mv.From, FromEpoch: mv.FromEpoch})
		}
	}
	return out, held
}

// noteReleases records when the releases among batch were applied, and
// forgets resources that were placed.
func (r *Reconciler) noteReleases(batch []Move) {
	if r.cfg.Grants == nil {
		return
	}
	at := r.now()
	for _, mv := range batch {
		switch {
		case mv.To == "":
			r.releasedAt[mv.ResourceID] = at
			r.stats.released.Add(1)
		case mv.From == "":
			delete(r.releasedAt, mv.ResourceID)
		}
	}
	// A released resource that was deleted before it was placed.
	for id, t := range r.releasedAt {
		if at.Sub(t) > 100*r.cfg.OwnershipLease {
			delete(r.releasedAt, id)
		}
	}
}

// commit re-checks leadership and applies cmd. A command the FSM rejected is
// counted and logged and returns (nil, nil).
func (r *Reconciler) commit(ctx context.Context, cmd *pb.Command) (*Result, error) {
	if !r.leader.IsLeader() {
		return nil, errLostLeadership
	}
	actx, cancel := context.WithTimeout(ctx, r.cfg.ApplyTimeout)
	defer cancel()
	res, err := Commit(actx, r.apply, cmd)
	var rej *RejectedError
	switch {
	case errors.As(err, &rej):
		r.stats.rejected.Add(1)
		r.log.Warn("membership command rejected", "error", err)
		return nil, nil
	case err != nil:
		r.stats.errors.Add(1)
		return nil, err
	}
	return res, nil
}

// RejectedError is returned by Commit when the command was committed but the
// FSM rejected it (it changed nothing). Err wraps the sentinel (for example
// ErrUnknownMember); errors.Is sees through it.
type RejectedError struct {
	Err error
}

func (e *RejectedError) Error() string { return "membership: command rejected: " + e.Err.Error() }
func (e *RejectedError) Unwrap() error { return e.Err }

// Commit encodes cmd, applies it through ap and unpacks the FSM's answer:
// the *Result of an accepted command; a *RejectedError for a command the FSM
// rejected; an encoding error (ErrInvalidCommand, nothing sent); or the
// Applier's own error (not leader, timeout: the command may or may not have
// been committed). The API layer uses it for every write.
func Commit(ctx context.Context, ap Applier, cmd *pb.Command) (*Result, error) {
	data, err := EncodeCommand(cmd)
	if err != nil {
		return nil, err
	}
	out, err := ap.Apply(ctx, data)
	if err != nil {
		return nil, fmt.Errorf("membership: commit: %w", err)
	}
	switch v := out.(type) {
	case *Result:
		return v, nil
	case error:
		return nil, &RejectedError{Err: v}
	}
	return nil, fmt.Errorf("membership: commit: unexpected FSM result %T", out)
}

func byID(ms []Member, id string) (Member, bool) {
	for _, m := range ms {
		if m.ID == id {
			return m, true
		}
	}
	return Member{}, false
}
