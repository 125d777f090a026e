package transport

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Ownership grants ride the heartbeat stream. A member may work on the
// resources it owns only while it holds an ownership lease, and the leader may
// give those resources to another member only once that lease has surely run
// out. Clocks of different hosts cannot be compared, so the lease is anchored
// on the member's own clock at a moment the leader's grant is known to follow:
//
//   - The heartbeat stream is lock-step: the leader sends heartbeat k only
//     after answer k-1 reached it. So heartbeat k left the leader after the
//     member sent answer k-1.
//   - The leader marks heartbeat k as a grant (AppendEntriesRequest.grant)
//     only when answer k-1 came back on the same stream and its own leader
//     lease is valid, and records the time just before sending it (Grants).
//   - The member, on an accepted heartbeat k marked as a grant, takes the time
//     it sent answer k-1 (taken before the send) as the anchor: its lease runs
//     to anchor + the ownership lease, which is never later than the leader's
//     recorded grant time + the ownership lease.
//
// A delayed or replayed heartbeat only makes the anchor older, never newer.
// The first heartbeat of every stream carries no grant (there is no answer
// before it), and neither does a unary heartbeat.

// Grant is an ownership-lease grant received from the leader.
type Grant struct {
	// Leader is the granting leader's address, Term its term.
	Leader raft.ServerAddress
	Term   uint64
	// Anchor is when this node sent its previous answer on the heartbeat
	// stream: the leader sent the grant after that, so a lease measured from
	// Anchor cannot outlast one measured from the leader's grant.
	Anchor time.Time
	// Revision is the leader's membership revision when it sent the grant: a
	// member may extend its lease by this grant only once it has applied that
	// far, so that a release the leader committed before the grant is known.
	Revision uint64
}

// GrantHooks connect the transport's ownership grants to the node above it.
type GrantHooks struct {
	// Source is asked before each heartbeat that could carry a grant: ok is
	// true while this node leads with a valid leader lease, and revision is
	// its membership revision (read after the lease check). nil: no grants
	// are sent.
	Source func() (revision uint64, ok bool)
	// Receive is called on a follower for each grant carried by a heartbeat
	// that raft accepted (the answer has the request's term). It runs on the
	// heartbeat stream's goroutine and must not block. nil: grants are
	// ignored.
	Receive func(Grant)
}

// SetGrantHooks installs the grant hooks (see GrantHooks); call it before
// the node starts leading or following. Safe to call again.
func (t *Transport) SetGrantHooks(h GrantHooks) {
	t.grantMu.Lock()
	defer t.grantMu.Unlock()
	t.grantHooks = h
}

func (t *Transport) hooks() GrantHooks {
	t.grantMu.Lock()
	defer t.grantMu.Unlock()
	return t.grantHooks
}

// Grants returns, per peer address, when this node last sent that peer a
// grant (a time taken before the send). A peer's ownership lease can last at
// most the ownership lease past that time.
func (t *Transport) Grants() map[raft.ServerAddress]time.Time { return t.grants.snapshot() }

// HoldGrants stops the grants to the peers at addrs until release is called,
// and returns at once; Grants called after it returns sees every grant sent
// to them. The leader's reconciler holds a member's grants while it gives
// that member's resources to another directly (its lease having run out):
// a grant sent meanwhile would carry a revision from before the move and
// renew the member's lease on resources that are being taken away.
func (t *Transport) HoldGrants(addrs []raft.ServerAddress) (release func()) {
	return t.grants.hold(addrs)
}

// LastTimeoutNow returns when this node last received a TimeoutNow (from a
// leader handing off, or from its own fast failover); zero if never. An
// election that follows one may have bypassed the votes that keep a new
// leader from being elected inside the old leader's lease.
func (t *Transport) LastTimeoutNow() time.Time {
	ns := t.timeoutNowAt.Load()
	if ns == 0 {
		return time.Time{}
	}
	return t.epoch.Add(time.Duration(ns))
}

// noteTimeoutNow records the arrival of a TimeoutNow (monotonic, relative to
// t.epoch so the reading keeps Go's monotonic clock).
func (t *Transport) noteTimeoutNow() {
	t.timeoutNowAt.Store(int64(time.Since(t.epoch)) | 1)
}

// grantTable records the latest grant time per peer, and which peers' grants
// are held (HoldGrants). Safe for concurrent use.
type grantTable struct {
	mu   sync.Mutex
	at   map[raft.ServerAddress]time.Time
	held map[raft.ServerAddress]int
}

// issue decides whether the heartbeat about to go to target carries a grant
// and, if it does, records the time. The decision (src) and the record are
// made under one lock, so a snapshot taken after hold returns sees every
// grant decided before it, and none is decided for a held peer after it.
func (g *grantTable) issue(target raft.ServerAddress, src func() (uint64, bool)) (rev uint64, ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.held[target] > 0 {
		return 0, false
	}
	if rev, ok = src(); ok {
		g.recordLocked(target, time.Now())
	}
	return rev, ok
}

func (g *grantTable) recordLocked(target raft.ServerAddress, at time.Time) {
	if g.at == nil {
		g.at = make(map[raft.ServerAddress]time.Time)
	}
	if prev, ok := g.at[target]; ok && at.Before(prev) {
		return
	}
	g.at[target] = at
}

// hold stops grants to targets until release is called (holds nest).
func (g *grantTable) hold(targets []raft.ServerAddress) (release func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.held == nil {
		g.held = make(map[raft.ServerAddress]int)
	}
	for _, a := range targets {
		g.held[a]++
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			defer g.mu.Unlock()
			for _, a := range targets {
				if g.held[a]--; g.held[a] <= 0 {
					delete(g.held, a)
				}
			}
		})
	}
}

func (g *grantTable) snapshot() map[raft.ServerAddress]time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[raft.ServerAddress]time.Time, len(g.at))
	for k, v := range g.at {
		out[k] = v
	}
	return out
}
