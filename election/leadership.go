package election

import (
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// Leadership is one node's view of who leads the cluster.
type Leadership struct {
	// State is this node's raft state: "leader", "follower", "candidate" or
	// "shutdown".
	State string
	// LeaderID and LeaderAddr name the leader this node knows of; empty when
	// none is known.
	LeaderID   string
	LeaderAddr string
	// Term is this node's current raft term.
	Term uint64
	// FencingToken is the term in which the known leader was elected: every
	// leadership has its own term and terms only grow, so tokens handed out by
	// successive leaders strictly increase. 0 when no leader is known.
	FencingToken uint64
	// IsLeader is true only while raft says this node is the leader AND its
	// lease holds (a quorum acknowledged a heartbeat sent within the lease).
	// A leader cut off from its quorum turns false when the lease lapses,
	// before raft itself steps down.
	IsLeader bool
	// LeaseUntil is when the current lease ends if no further heartbeat is
	// acknowledged; zero unless IsLeader.
	LeaseUntil time.Time
}

// sameView reports whether a and b differ only in LeaseUntil (the lease is
// renewed every few tens of milliseconds; watchers are not told each time).
func sameView(a, b Leadership) bool {
	a.LeaseUntil, b.LeaseUntil = time.Time{}, time.Time{}
	return a == b
}

func stateName(s raft.RaftState) string { return strings.ToLower(s.String()) }

// lease is the leader's current lease: valid in term until until. The node
// claims leadership only from claimFrom on (see Node.claimHoldoff).
type lease struct {
	term      uint64
	until     time.Time
	claimFrom time.Time
}

// leaseEnd computes when the leader's lease ends. Among the voters of the
// configuration, each contributes the send time of its latest heartbeat
// acknowledged in term (self counts as now; acks of another term count as
// nothing). The lease runs to the quorum-th latest of those times, plus
// duration less drift. The zero time means no lease: fewer than a quorum of
// voters acknowledged anything in this term.
func leaseEnd(self raft.ServerID, servers []raft.Server, acks map[raft.ServerAddress]Ack,
	term uint64, now time.Time, duration, drift time.Duration) time.Time {
	var voters int
	times := make([]time.Time, 0, len(servers))
	for _, s := range servers {
		if s.Suffrage != raft.Voter {
			continue
		}
		voters++
		if s.ID == self {
			times = append(times, now)
			continue
		}
		a, ok := acks[s.Address]
		if !ok || a.Term != term || a.SentAt.IsZero() {
			continue
		}
		sent := a.SentAt
		if sent.After(now) {
			sent = now
		}
		times = append(times, sent)
	}
	quorum := voters/2 + 1
	if voters == 0 || len(times) < quorum {
		return time.Time{}
	}
	sort.Slice(times, func(i, j int) bool { return times[i].After(times[j]) })
	return times[quorum-1].Add(duration - drift)
}

// Watcher follows a node's Leadership. It receives the view current when it
// was created, then every change, through a channel of capacity 1 that keeps
// only the latest value: a slow reader skips intermediate views (counted by
// Dropped) and never blocks raft or other watchers. Consumers should treat a
// value as a hint and re-check Node.Leadership when acting on it.
type Watcher struct {
	ch      chan Leadership
	dropped atomic.Uint64
	hub     *hub
	closed  bool // guarded by hub.mu
}

// C returns the channel of views. It is closed when the watcher or the node
// is closed.
func (w *Watcher) C() <-chan Leadership { return w.ch }

// Dropped returns how many views were replaced before this watcher read them.
func (w *Watcher) Dropped() uint64 { return w.dropped.Load() }

// Close releases the watcher and closes its channel. Safe to call twice and
// after the node is closed.
func (w *Watcher) Close() {
	w.hub.mu.Lock()
	defer w.hub.mu.Unlock()
	w.hub.release(w)
}

// send delivers l, replacing an unread value. Called with hub.mu held, so it
// is the only sender; the reader may drain concurrently.
func (w *Watcher) send(l Leadership) {
	for {
		select {
		case w.ch <- l:
			return
		default:
		}
		select {
		case <-w.ch:
			w.dropped.Add(1)
		default:
		}
	}
}

// hub fans views out to watchers. Views are computed under its lock, so the
// order in which watchers see them is the order in which they were computed.
type hub struct {
	mu       sync.Mutex
	last     Leadership
	watchers map[*Watcher]struct{}
	closed   bool
}

func newHub() *hub { return &hub{watchers: make(map[*Watcher]struct{})} }

// refresh computes the view and, if it changed, sends it to every watcher.
func (h *hub) refresh(compute func() Leadership) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	l := compute()
	if sameView(l, h.last) {
		return
	}
	h.last = l
	for w := range h.watchers {
		w.send(l)
	}
}

// subscribe registers a watcher and sends it the view compute returns.
// After close, the watcher's channel is closed at once.
func (h *hub) subscribe(compute func() Leadership) *Watcher {
	h.mu.Lock()
	defer h.mu.Unlock()
	w := &Watcher{ch: make(chan Leadership, 1), hub: h}
	if h.closed {
		w.closed = true
		close(w.ch)
		return w
	}
	w.send(compute())
	h.watchers[w] = struct{}{}
	return w
}

func (h *hub) release(w *Watcher) {
	if w.closed {
		return
	}
	w.closed = true
	delete(h.watchers, w)
	close(w.ch)
}

// close sends the final view to every watcher and closes their channels.
func (h *hub) close(final Leadership) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	h.last = final
	for w := range h.watchers {
		w.send(final)
		h.release(w)
	}
}
