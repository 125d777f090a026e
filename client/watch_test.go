package client

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
	"github.com/heartbeat-sidecar/heartbeat/node"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// collector gathers a watch channel's events until it closes.
type collector[T any] struct {
	mu   sync.Mutex
	evs  []T
	done chan struct{}
}

func collect[T any](ch <-chan T) *collector[T] {
	c := &collector[T]{done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for ev := range ch {
			c.mu.Lock()
			c.evs = append(c.evs, ev)
			c.mu.Unlock()
		}
	}()
	return c
}

func (c *collector[T]) snapshot() []T {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]T(nil), c.evs...)
}

// writer registers resources one at a time (and deletes every fourth one
// after a while) through its own client until stopped, recording the
// revision of every write that changed something.
type writer struct {
	cl        *Client
	stop      chan struct{}
	done      chan struct{}
	mu        sync.Mutex
	revisions []uint64
	errs      []error
	unknown   map[string]bool // ids whose registration had an unknown outcome
}

func startWriter(cl *Client) *writer {
	w := &writer{cl: cl, stop: make(chan struct{}), done: make(chan struct{}), unknown: map[string]bool{}}
	go func() {
		defer close(w.done)
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			var res WriteResult
			var err error
			if i%4 == 3 {
				res, err = cl.Delete(ctx, fmt.Sprintf("r-%04d", i-3))
			} else {
				res, err = cl.Register(ctx, ResourceSpec{ID: fmt.Sprintf("r-%04d", i), Weight: uint32(1 + i%3)})
			}
			cancel()
			w.mu.Lock()
			switch {
			case err != nil && status.Code(err) == codes.Unavailable && strings.Contains(err.Error(), "outcome unknown"):
				// A write in flight when its leader went away: not repeated
				// (it may have been applied); the next delete of it may
				// find nothing.
				w.unknown[fmt.Sprintf("r-%04d", i)] = true
			case err != nil && i%4 == 3 && status.Code(err) == codes.NotFound && w.unknown[fmt.Sprintf("r-%04d", i-3)]:
			case err != nil:
				w.errs = append(w.errs, fmt.Errorf("write %d: %w", i, err))
			case res.Changed > 0:
				w.revisions = append(w.revisions, res.Revision)
			}
			w.mu.Unlock()
			time.Sleep(10 * time.Millisecond) // pace: a few hundred writes per test
		}
	}()
	return w
}

func (w *writer) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.revisions)
}

func (w *writer) last() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.revisions) == 0 {
		return 0
	}
	return w.revisions[len(w.revisions)-1]
}

func (w *writer) finish(t *testing.T) []uint64 {
	close(w.stop)
	<-w.done
	for _, err := range w.errs {
		t.Errorf("writer: %v", err)
	}
	return w.revisions
}

// waitWrites waits until the writer has made n more writes.
func (w *writer) waitWrites(t *testing.T, n int) {
	t.Helper()
	want := w.count() + n
	testwait.Eventually(t, testcluster.DefaultWait, fmt.Sprintf("%d writes", want), func() (bool, string) {
		return w.count() >= want, fmt.Sprintf("%d writes", w.count())
	})
}

func lastRevision(evs []AssignmentEvent) uint64 {
	if len(evs) == 0 {
		return 0
	}
	return evs[len(evs)-1].Revision
}

type owned struct {
	owner string
	epoch uint64
}

// replay builds the resource state from assignment events up to revision
// rev, checking that each event fits the state before it (an assignment or
// deletion names the owner the state has: a missed event breaks that) and
// that revisions never go back and no event comes twice.
func replay(t *testing.T, evs []AssignmentEvent, rev uint64) map[string]owned {
	t.Helper()
	state := map[string]owned{}
	type eventKey struct {
		rev             uint64
		kind            EventKind
		id, owner, prev string
		epoch           uint64
	}
	seen := map[eventKey]bool{}
	var prev uint64
	for i, ev := range evs {
		if ev.Err != nil {
			t.Fatalf("event %d: watch error %v", i, ev.Err)
		}
		if ev.Revision < prev {
			t.Fatalf("event %d: revision %d after %d", i, ev.Revision, prev)
		}
		prev = ev.Revision
		if ev.Revision > rev {
			break
		}
		key := eventKey{ev.Revision, ev.Kind, ev.ResourceID, ev.Owner, ev.PrevOwner, ev.Epoch}
		if seen[key] {
			t.Fatalf("event %d delivered twice: %+v", i, ev)
		}
		seen[key] = true
		cur, exists := state[ev.ResourceID]
		switch ev.Kind {
		case KindRegistered:
			if exists && cur.owner != ev.Owner {
				t.Fatalf("event %d: %s re-registered with owner %q, state says %q", i, ev.ResourceID, ev.Owner, cur.owner)
			}
			if !exists {
				state[ev.ResourceID] = owned{owner: ev.Owner}
			}
		case KindAssigned:
			if !exists || cur.owner != ev.PrevOwner {
				t.Fatalf("event %d: %s assigned from %q, state has %+v (exists %v): an event is missing", i, ev.ResourceID, ev.PrevOwner, cur, exists)
			}
			state[ev.ResourceID] = owned{owner: ev.Owner, epoch: ev.Epoch}
		case KindDeleted:
			if !exists || cur.owner != ev.PrevOwner {
				t.Fatalf("event %d: %s deleted from %q, state has %+v (exists %v): an event is missing", i, ev.ResourceID, ev.PrevOwner, cur, exists)
			}
			delete(state, ev.ResourceID)
		default:
			t.Fatalf("event %d: unexpected kind %q", i, ev.Kind)
		}
	}
	return state
}

// TestWatchesAcrossFailures runs an assignment watch and a leadership watch
// on a client whose endpoints are two followers, while a writer registers
// and deletes resources without pause, through two failures: the leader
// crashes (a leader change; the watches' node stays up), then, with the old
// leader back and leadership transferred to the node the watches are
// connected to, that node crashes (a leader change, and the watches must
// reconnect to the second endpoint). The assignment events must be every
// change in revision order, none twice, none missing: each write's revision
// shows up, each assignment and deletion names the owner the previous
// events gave, and the state they build equals the final listing. The
// leadership watch must start with the current state, report the new
// leader, and after the reconnection report the leader again from the
// other endpoint.
func TestWatchesAcrossFailures(t *testing.T) {
	c := startCluster(t, 3)
	leader := c.Leader()
	fs := c.Followers()
	f1, f2 := fs[0], fs[1]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	wc := newClient(t, f1, f2)
	start, err := wc.Resources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	assign := collect(wc.WatchAssignments(ctx, "", start.Revision))
	leaders := collect(wc.WatchLeader(ctx))
	defer func() {
		cancel()
		<-assign.done
		<-leaders.done
	}()

	testwait.Eventually(t, testcluster.DefaultWait, "the first leader event", func() (bool, string) { return len(leaders.snapshot()) > 0, "none yet" })
	first := leaders.snapshot()[0]
	if first.ID != leader.ID() || first.IsSelf || !first.Local || first.Endpoint != f1.ClientAddr() ||
		first.Reconnected || first.Disconnected || first.FencingToken != leader.Status().FencingToken {
		t.Fatalf("first leader event %+v; want the current leader %s (token %d) as seen by %s", first, leader.ID(), leader.Status().FencingToken, f1.ID())
	}

	w := startWriter(newClient(t, f2, f1))
	w.waitWrites(t, 20)

	// 1. The leader crashes; the watches' node stays up.
	oldToken := first.FencingToken
	c.Kill(leader.ID())
	newLeader := c.Leader()
	testwait.Eventually(t, testcluster.DefaultWait, "the leader watch to report the new leader", func() (bool, string) {
		for _, ev := range leaders.snapshot() {
			if ev.ID == newLeader.ID() && ev.FencingToken > oldToken && ev.Endpoint == f1.ClientAddr() {
				return true, ""
			}
		}
		return false, fmt.Sprintf("events %+v", leaders.snapshot())
	})
	w.waitWrites(t, 20)

	// 2. With the old leader back, leadership is handed to the node the
	// watches use, and that node crashes: the watches must reconnect to the
	// second endpoint and the leadership watch report a newer leader.
	c.Restart(leader.ID())
	c.Leader()
	if _, err := newClient(t, f2).TransferLeadership(ctx, f1.ID()); err != nil {
		t.Fatalf("transfer to %s: %v", f1.ID(), err)
	}
	if l := c.Leader(); l.ID() != f1.ID() {
		t.Fatalf("leader after the transfer is %s, want %s", l.ID(), f1.ID())
	}
	w.waitWrites(t, 10)
	beforeKill := w.last()
	f1Token := f1.Status().FencingToken
	nLeaderEvents := len(leaders.snapshot())
	c.Kill(f1.ID())
	w.waitWrites(t, 20)
	testwait.Eventually(t, testcluster.DefaultWait, "assignment events written after the reconnection", func() (bool, string) {
		last := lastRevision(assign.snapshot())
		return last >= w.last() && w.last() > beforeKill, fmt.Sprintf("last event revision %d, last write %d", last, w.last())
	})
	current := c.Leader()
	testwait.Eventually(t, testcluster.DefaultWait, "the leader watch to reconnect to the second endpoint", func() (bool, string) {
		evs := leaders.snapshot()[nLeaderEvents:]
		disconnected, reconnected := false, false
		for _, ev := range evs {
			switch {
			case ev.Disconnected:
				disconnected = ev.Endpoint == f1.ClientAddr() && ev.Err != nil
			case ev.Reconnected:
				reconnected = disconnected && ev.Endpoint == f2.ClientAddr()
			}
			if reconnected && !ev.Disconnected && ev.Endpoint == f2.ClientAddr() && ev.ID == current.ID() && ev.FencingToken > f1Token {
				return true, ""
			}
		}
		return false, fmt.Sprintf("events since the kill: %+v", evs)
	})

	// The writes end; two fences bound the final listing: the listing is
	// taken after the first, and the second's event proves that every event
	// up to the listing has been delivered.
	revisions := w.finish(t)
	lc := newClient(t, f2)
	if _, err := lc.Register(ctx, ResourceSpec{ID: "fence-1"}); err != nil {
		t.Fatal(err)
	}
	final, err := lc.Resources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fence2, err := lc.Register(ctx, ResourceSpec{ID: "fence-2"})
	if err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, testcluster.DefaultWait, "the second fence's event", func() (bool, string) {
		last := lastRevision(assign.snapshot())
		return last >= fence2.Revision, fmt.Sprintf("last event revision %d < %d", last, fence2.Revision)
	})
	evs := assign.snapshot()
	state := replay(t, evs, final.Revision)
	want := map[string]owned{}
	for _, r := range final.Resources {
		want[r.ID] = owned{owner: r.Owner, epoch: r.Epoch}
	}
	if len(state) != len(want) {
		t.Errorf("events build %d resources, the listing at revision %d has %d", len(state), final.Revision, len(want))
	}
	for id, o := range want {
		if got, ok := state[id]; !ok || got != o {
			t.Errorf("%s: events say %+v (present %v), listing says %+v", id, got, ok, o)
		}
	}
	eventRevs := map[uint64]bool{}
	for _, ev := range evs {
		eventRevs[ev.Revision] = true
	}
	for _, r := range revisions {
		if !eventRevs[r] {
			t.Errorf("write at revision %d has no event", r)
		}
	}
	t.Logf("%d writes, %d assignment events, %d leader events, %d resources at revision %d",
		len(revisions), len(evs), len(leaders.snapshot()), len(want), final.Revision)
}

// TestAssignResume checks the resume arithmetic on its own: a watch that
// broke inside a revision asks for that revision again and skips exactly the
// events of it already delivered.
func TestAssignResume(t *testing.T) {
	cl := newClientAt(t, deadAddr(t))
	w := &assignWatch{c: cl, last: 10}
	out := make(chan AssignmentEvent, 16)
	ev := func(rev uint64, id string) *heartbeatpb.WatchAssignmentsResponse {
		return &heartbeatpb.WatchAssignmentsResponse{Revision: rev, Kind: heartbeatpb.ChangeKind_CHANGE_KIND_REGISTERED, ResourceId: id}
	}
	ctx := testcluster.Context(t)
	feed := func(evs ...*heartbeatpb.WatchAssignmentsResponse) {
		from, skip := w.resumePoint()
		t.Logf("resume after %d skipping %d", from, skip)
		for _, e := range evs {
			if e.GetRevision() <= from {
				t.Fatalf("test feeds revision %d to a stream after %d", e.GetRevision(), from)
			}
			if !w.deliver(ctx, e, &skip, out) {
				t.Fatal("deliver: context ended")
			}
		}
	}
	feed(ev(11, "a"), ev(11, "b"), ev(12, "c")) // breaks after c, inside revision 12
	if from, skip := w.resumePoint(); from != 11 || skip != 1 {
		t.Fatalf("resume point after a break inside revision 12 = %d, %d; want 11, 1", from, skip)
	}
	feed(ev(12, "c"), ev(12, "d"), ev(13, "e")) // the server resends all of 12
	feed(ev(13, "e"), ev(14, "f"))
	close(out)
	var got []string
	for e := range out {
		got = append(got, fmt.Sprintf("%d%s", e.Revision, e.ResourceID))
	}
	want := []string{"11a", "11b", "12c", "12d", "13e", "14f"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("delivered %v, want %v", got, want)
	}
	w2 := &assignWatch{c: cl, fromNow: true}
	if from, skip := w2.resumePoint(); from != 0 || skip != 0 {
		t.Errorf("a watch from now starts at %d, %d", from, skip)
	}
}

// TestWatchAssignmentsResync: a watch from a revision the node's change feed
// no longer holds gets OutOfRange from the server; the client lists again,
// sends one resync event with the full set at the listing's revision, and
// then continues with the changes after it (for every resource, and for one
// node's assignments).
func TestWatchAssignmentsResync(t *testing.T) {
	c := startCluster(t, 1, func(cfg *node.Config) { cfg.Membership.FeedCapacity = 10000 })
	n := c.Leader()
	cl := newClient(t, n)
	ctx := testcluster.Context(t)
	before, err := cl.Resources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// 6000 registrations and 6000 assignments overflow a 10000-event feed.
	var specs []ResourceSpec
	for i := 0; i < 6000; i++ {
		specs = append(specs, ResourceSpec{ID: fmt.Sprintf("bulk-%04d", i)})
	}
	if _, err := cl.Register(ctx, specs...); err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, testcluster.DefaultWait, "all 6000 assigned", func() (bool, string) {
		l, err := cl.MyResources(ctx)
		if err != nil {
			return false, err.Error()
		}
		return len(l.Resources) == 6000, fmt.Sprintf("%d owned", len(l.Resources))
	})

	for i, nodeID := range []string{"", n.ID()} {
		want := 6000 + i // the earlier subtest registered one more
		t.Run("node="+nodeID, func(t *testing.T) {
			wctx, cancel := context.WithCancel(ctx)
			defer cancel()
			ch := cl.WatchAssignments(wctx, nodeID, before.Revision)
			var resync AssignmentEvent
			select {
			case resync = <-ch:
			case <-time.After(waitTimeout):
				t.Fatal("no event")
			}
			if resync.Kind != KindResync || len(resync.Resources) != want || resync.Revision <= before.Revision {
				t.Fatalf("first event kind %q, %d resources, revision %d (err %v); want a resync with %d", resync.Kind, len(resync.Resources), resync.Revision, resync.Err, want)
			}
			var ids []string
			for _, r := range resync.Resources {
				if r.Owner != n.ID() || r.Epoch == 0 {
					t.Fatalf("resync lists %+v", r)
				}
				if strings.HasPrefix(r.ID, "bulk-") {
					ids = append(ids, r.ID)
				}
			}
			sort.Strings(ids)
			if len(ids) != 6000 || ids[0] != "bulk-0000" || ids[5999] != "bulk-5999" {
				t.Errorf("resync lists %d bulk ids", len(ids))
			}
			id := "after-resync-" + nodeID
			res, err := cl.Register(ctx, ResourceSpec{ID: id})
			if err != nil {
				t.Fatal(err)
			}
			// Only the node-less watch sees the registration itself; both see
			// the assignment to n.
			for {
				select {
				case ev := <-ch:
					if ev.Revision < res.Revision || ev.ResourceID != id {
						t.Fatalf("after the resync: %+v (want %s at %d or later)", ev, id, res.Revision)
					}
					if ev.Kind == KindAssigned {
						return
					}
				case <-time.After(waitTimeout):
					t.Fatal("no event after the resync")
				}
			}
		})
	}
}
