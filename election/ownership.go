package election

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Grant is an ownership-lease grant from the leader, as the transport hands
// it over (see rpc/transport, "Ownership grants").
type Grant struct {
	// Anchor is a time on this node's clock that the leader's grant is known
	// to follow (this node's previous heartbeat answer).
	Anchor time.Time
	// Revision is the leader's membership revision at the grant.
	Revision uint64
	// Term is the leader's term.
	Term uint64
}

// maxPendingGrants bounds the grants kept while this node applies its way up
// to their revisions; older ones are superseded by newer ones anyway.
const maxPendingGrants = 8

// ownership is this node's ownership lease: until when it may work on the
// resources its applied membership state gives it. A grant extends it to
// Anchor + OwnershipLease - LeaseDriftMargin, but only once the node has
// applied the grant's revision: a release of one of its resources that the
// leader committed before granting is then in the state the node answers
// from, so the grant never covers a resource that was already taken away.
type ownership struct {
	mu       sync.Mutex
	until    time.Time
	pending  []Grant // not yet applied far enough, oldest first
	lastSelf time.Time
}

// grant records g; applied is the node's membership revision now.
func (o *ownership) grant(g Grant, applied uint64, length time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if g.Revision <= applied {
		o.extend(g.Anchor.Add(length))
		return
	}
	if len(o.pending) == maxPendingGrants {
		o.pending = o.pending[1:]
	}
	o.pending = append(o.pending, g)
}

func (o *ownership) extend(until time.Time) {
	if until.After(o.until) {
		o.until = until
	}
}

// lease promotes the pending grants that applied now covers and returns the
// end of the lease (zero if none was ever granted).
func (o *ownership) lease(applied uint64, length time.Duration) time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	keep := o.pending[:0]
	for _, g := range o.pending {
		if g.Revision <= applied {
			o.extend(g.Anchor.Add(length))
		} else {
			keep = append(keep, g)
		}
	}
	o.pending = keep
	return o.until
}

func (o *ownership) setLastSelf(t time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.lastSelf = t
}

func (o *ownership) selfGrantedAt() time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.lastSelf
}

// ownershipLength is how long a grant lasts past its anchor on this node.
func (n *Node) ownershipLength() time.Duration {
	return n.cfg.ownershipLease() - n.cfg.LeaseDriftMargin
}

// applied is the membership revision this node has applied (0 without a
// Revision hook).
func (n *Node) applied() uint64 {
	if n.cfg.Revision == nil {
		return 0
	}
	return n.cfg.Revision()
}

// ReceiveGrant records a grant the transport received from the leader. Only
// grants whose term is this node's current term count.
func (n *Node) ReceiveGrant(g Grant) {
	if n.cfg.Revision == nil || g.Term != n.raft.CurrentTerm() {
		return
	}
	n.own.grant(g, n.applied(), n.ownershipLength())
}

// GrantSource tells the transport whether this node may grant ownership
// leases now and its membership revision, read after that check. It may
// while it leads with a valid leader lease and has applied everything its
// predecessors committed (the first barrier of its term has completed, as
// for read indexes): before that its revision could predate a move it has
// not applied yet, and a member whose state is just as old (restarted,
// replaying its log) would take the grant for ownership of a resource that
// has moved on. Grants do not wait for a new leader's claim hold-off: the
// lease, not the claim, bounds them.
func (n *Node) GrantSource() (revision uint64, ok bool) {
	if n.cfg.Revision == nil || !n.grantReady(time.Now()) {
		return 0, false
	}
	return n.applied(), true
}

// grantReady: this node leads with a valid lease and its term's first
// barrier has completed.
func (n *Node) grantReady(now time.Time) bool {
	return n.leaseValid(now) && n.readyTerm.Load() == n.raft.CurrentTerm()
}

// leaseValid reports whether this node is the raft leader with a valid
// leader lease at now (whether or not it claims leadership yet).
func (n *Node) leaseValid(now time.Time) bool {
	if n.stopped.Load() || n.raft.State() != raft.Leader {
		return false
	}
	ls := n.lease.Load()
	return ls != nil && ls.term == n.raft.CurrentTerm() && now.Before(ls.until)
}

// selfGrant gives the leader its own ownership lease, as a follower gets one
// from each heartbeat: anchored now, at the revision read after now.
func (n *Node) selfGrant() {
	now := time.Now()
	if n.cfg.Revision == nil || !n.grantReady(now) {
		return
	}
	n.own.setLastSelf(now)
	n.own.grant(Grant{Anchor: now, Revision: n.applied(), Term: n.raft.CurrentTerm()}, n.applied(), n.ownershipLength())
}

// OwnershipLease returns until when this node may work on the resources its
// membership state says it owns, as of a revision at least the one it has
// applied when it returns: read the owned set AFTER calling it. The zero time
// (or a past one) means no lease: do no work on any resource. Without a
// Revision hook it is always zero.
func (n *Node) OwnershipLease() time.Time {
	if n.cfg.Revision == nil {
		return time.Time{}
	}
	return n.own.lease(n.applied(), n.ownershipLength())
}

// SelfGrantedAt returns when this node, as leader, last gave itself an
// ownership lease (zero if never). The reconciler waits LeaseDuration past it
// before it gives this node's resources to another member.
func (n *Node) SelfGrantedAt() time.Time { return n.own.selfGrantedAt() }

// OwnershipLeaseDuration is Config.OwnershipLease with its default applied:
// a member may work on its resources for at most this long after the
// leader's last grant to it, so the leader waits that long before it gives
// them to another member.
func (n *Node) OwnershipLeaseDuration() time.Duration { return n.cfg.ownershipLease() }

// LeaseDuration is Config.LeaseDuration: the length of the leader lease.
func (n *Node) LeaseDuration() time.Duration { return n.cfg.LeaseDuration }
