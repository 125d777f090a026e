package transport

import (
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// grantLog records the grants a follower-side transport hands over.
type grantLog struct {
	mu     sync.Mutex
	grants []Grant
}

func (g *grantLog) receive(x Grant) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.grants = append(g.grants, x)
}

func (g *grantLog) all() []Grant {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]Grant(nil), g.grants...)
}

// TestGrantsRideTheHeartbeatStream: the first heartbeat of a stream grants
// nothing (no earlier answer to anchor on); every later one, sent while the
// source allows it, hands the follower a grant anchored at the follower's
// previous answer — no later than the time the leader recorded for it, no
// earlier than the previous heartbeat's send. A source that says no, and a
// heartbeat raft refuses (another term), grant nothing; a torn-down stream
// starts again without a grant.
func TestGrantsRideTheHeartbeatStream(t *testing.T) {
	a, b := newTestTransport(t, "a"), newTestTransport(t, "b")
	var refuseTerm uint64 = 99
	b.SetHeartbeatHandler(func(rpc raft.RPC) {
		req := rpc.Command.(*raft.AppendEntriesRequest)
		term := req.Term
		if term == refuseTerm {
			term++ // raft is in a later term: it refuses
		}
		rpc.Respond(&raft.AppendEntriesResponse{Term: term, Success: term == req.Term}, nil)
	})
	var mu sync.Mutex
	allow := true
	a.SetGrantHooks(GrantHooks{Source: func() (uint64, bool) {
		mu.Lock()
		defer mu.Unlock()
		return 42, allow
	}})
	log := &grantLog{}
	b.SetGrantHooks(GrantHooks{Receive: log.receive})
	beat := func(term uint64) time.Time {
		t.Helper()
		sent := time.Now()
		var resp raft.AppendEntriesResponse
		if err := a.AppendEntries("b", b.LocalAddr(), heartbeatReq(a, term), &resp); err != nil {
			t.Fatalf("heartbeat: %v", err)
		}
		return sent
	}

	s1 := beat(7)
	if g := log.all(); len(g) != 0 {
		t.Fatalf("the first heartbeat of a stream granted %+v", g)
	}
	beat(7)
	g := log.all()
	if len(g) != 1 {
		t.Fatalf("after the second heartbeat: %d grants, want 1", len(g))
	}
	recorded := a.Grants()[b.LocalAddr()]
	if got := g[0]; got.Revision != 42 || got.Term != 7 || got.Leader != a.LocalAddr() ||
		got.Anchor.Before(s1) || got.Anchor.After(recorded) {
		t.Fatalf("grant %+v: want revision 42, term 7, leader %s, anchor in [%v, %v]", got, a.LocalAddr(), s1, recorded)
	}

	mu.Lock()
	allow = false
	mu.Unlock()
	beat(7)
	if n := len(log.all()); n != 1 {
		t.Fatalf("a heartbeat sent while the source said no granted (%d grants)", n)
	}
	mu.Lock()
	allow = true
	mu.Unlock()
	beat(refuseTerm)
	if n := len(log.all()); n != 1 {
		t.Fatalf("a heartbeat raft refused granted (%d grants)", n)
	}
	beat(7)
	if n := len(log.all()); n != 2 {
		t.Fatalf("after an accepted granting heartbeat: %d grants, want 2", n)
	}
	// A new stream (the old one torn down) starts without a grant.
	pc, err := a.peer(b.LocalAddr())
	if err != nil {
		t.Fatal(err)
	}
	pc.hb.mu.Lock()
	pc.hb.teardown()
	pc.hb.mu.Unlock()
	beat(7)
	if n := len(log.all()); n != 2 {
		t.Fatalf("the first heartbeat of a new stream granted (%d grants)", n)
	}
	beat(7)
	if n := len(log.all()); n != 3 {
		t.Fatalf("the second heartbeat of the new stream: %d grants, want 3", n)
	}

	// Held (HoldGrants): heartbeats to b carry no grant, and the source is
	// not even asked; a hold of another peer changes nothing for b; after
	// the release b is granted again.
	last := a.Grants()[b.LocalAddr()]
	other := a.HoldGrants([]raft.ServerAddress{"elsewhere"})
	release := a.HoldGrants([]raft.ServerAddress{b.LocalAddr()})
	again := a.HoldGrants([]raft.ServerAddress{b.LocalAddr()}) // holds nest
	beat(7)
	beat(7)
	if n := len(log.all()); n != 3 {
		t.Fatalf("heartbeats to a held peer granted (%d grants, want 3)", n)
	}
	if got := a.Grants()[b.LocalAddr()]; !got.Equal(last) {
		t.Fatalf("a held peer's last grant moved from %v to %v", last, got)
	}
	release()
	release() // a second call is a no-op
	beat(7)
	if n := len(log.all()); n != 3 {
		t.Fatalf("granted while one of two holds remained (%d grants)", n)
	}
	again()
	other()
	beat(7)
	if n := len(log.all()); n != 4 {
		t.Fatalf("after the release: %d grants, want 4", n)
	}
}

// TestTimeoutNowNoted: a TimeoutNow received, or handed to its own raft,
// is recorded for the election's claim hold-off.
func TestTimeoutNowNoted(t *testing.T) {
	a, b := newTestTransport(t, "a"), newTestTransport(t, "b")
	stop, done := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() { close(stop); <-done })
	go func() { // plays b's raft: answers the TimeoutNow
		defer close(done)
		for {
			select {
			case rpc := <-b.Consumer():
				rpc.Respond(&raft.TimeoutNowResponse{}, nil)
			case <-stop:
				return
			}
		}
	}()
	if !b.LastTimeoutNow().IsZero() {
		t.Fatal("LastTimeoutNow set before any TimeoutNow")
	}
	before := time.Now()
	var resp raft.TimeoutNowResponse
	if err := a.TimeoutNow("b", b.LocalAddr(), &raft.TimeoutNowRequest{RPCHeader: header(a)}, &resp); err != nil {
		t.Fatal(err)
	}
	if at := b.LastTimeoutNow(); at.Before(before) || at.After(time.Now()) {
		t.Fatalf("LastTimeoutNow %v not within the call", at)
	}
	if !a.LastTimeoutNow().IsZero() {
		t.Fatal("the sender noted a TimeoutNow it only sent")
	}
}
