package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
	"github.com/heartbeat-sidecar/heartbeat/node"
)

// run is one call of a RunWhileLeader fn.
type run struct {
	token              uint64
	started, cancelled time.Time
}

// runner runs RunWhileLeader on a client with an fn that records each run
// and blocks until its context is cancelled.
type runner struct {
	name string
	mu   sync.Mutex
	runs []run
	done chan error // RunWhileLeader's result
}

func startRunner(ctx context.Context, name string, cl *Client) *runner {
	return startLingeringRunner(ctx, name, cl, 0)
}

// startRunners starts a runner on each node's own client, by node id.
func startRunners(t *testing.T, ctx context.Context, nodes []*node.Node) map[string]*runner {
	runners := map[string]*runner{}
	for _, n := range nodes {
		runners[n.ID()] = startRunner(ctx, n.ID(), newClient(t, n))
	}
	return runners
}

// startLingeringRunner's fn takes linger to return after its context is
// cancelled (a slow clean-up).
func startLingeringRunner(ctx context.Context, name string, cl *Client, linger time.Duration) *runner {
	r := &runner{name: name, done: make(chan error, 1)}
	go func() {
		r.done <- cl.RunWhileLeader(ctx, func(ctx context.Context, token uint64) error {
			r.mu.Lock()
			i := len(r.runs)
			r.runs = append(r.runs, run{token: token, started: time.Now()})
			r.mu.Unlock()
			<-ctx.Done()
			r.mu.Lock()
			r.runs[i].cancelled = time.Now()
			r.mu.Unlock()
			time.Sleep(linger)
			return ctx.Err()
		})
	}()
	return r
}

func (r *runner) snapshot() []run {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]run(nil), r.runs...)
}

// waitRuns waits until fn has started n times and returns the runs.
func (r *runner) waitRuns(t *testing.T, n int) []run {
	t.Helper()
	var runs []run
	testwait.Eventually(t, testcluster.DefaultWait, fmt.Sprintf("%s: %d runs of fn", r.name, n), func() (bool, string) {
		runs = r.snapshot()
		return len(runs) >= n, fmt.Sprintf("%d runs", len(runs))
	})
	return runs
}

// waitCancelled waits until run i has been cancelled and returns it.
func (r *runner) waitCancelled(t *testing.T, i int) run {
	t.Helper()
	var got run
	testwait.Eventually(t, testcluster.DefaultWait, fmt.Sprintf("%s: run %d cancelled", r.name, i), func() (bool, string) {
		runs := r.snapshot()
		if len(runs) <= i {
			return false, "not started"
		}
		got = runs[i]
		return !got.cancelled.IsZero(), "still running"
	})
	return got
}

// claimWatch records the first moment any of nodes is raft leader or claims
// leadership (sampled every 2ms, straight from the node).
type claimWatch struct {
	stop chan struct{}
	done chan struct{}
	at   time.Time
	who  string
}

func watchClaims(nodes []*node.Node) *claimWatch {
	cw := &claimWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(cw.done)
		for {
			for _, n := range nodes {
				if s := n.Status(); s.State == "leader" || s.IsLeader {
					cw.at, cw.who = time.Now(), n.ID()
					return
				}
			}
			select {
			case <-cw.stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	return cw
}

// wait returns when a claim was seen (or the watch stopped after waitTimeout).
func (cw *claimWatch) wait(t *testing.T) (time.Time, string) {
	t.Helper()
	select {
	case <-cw.done:
	case <-time.After(waitTimeout):
		close(cw.stop)
		<-cw.done
		t.Fatal("no other node claimed leadership")
	}
	return cw.at, cw.who
}

// TestRunWhileLeader: fn runs on the leader's client with the current
// fencing token, never on a follower's; when the leader is cut off from the
// majority its fn is cancelled within the lease, before any other node
// becomes leader, and the new leader's client runs fn with a higher token;
// when the leader process dies, its fn is cancelled (the stream broke) and
// the next leader's client takes over; RunWhileLeader returns ctx.Err()
// when ctx ends.
func TestRunWhileLeader(t *testing.T) {
	c := startCluster(t, 3)
	leader := c.Leader()
	fs := c.Followers()
	ctx := testcluster.Context(t)

	t.Run("fn error ends the call", func(t *testing.T) {
		boom := errors.New("boom")
		err := newClient(t, leader).RunWhileLeader(ctx, func(context.Context, uint64) error { return boom })
		if !errors.Is(err, boom) {
			t.Fatalf("RunWhileLeader = %v, want fn's error", err)
		}
	})
	t.Run("fn that returns runs once per leadership", func(t *testing.T) {
		rctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
		defer cancel()
		runs := 0
		err := newClient(t, leader).RunWhileLeader(rctx, func(context.Context, uint64) error { runs++; return nil })
		if !errors.Is(err, context.DeadlineExceeded) || runs != 1 {
			t.Fatalf("RunWhileLeader = %v after %d runs; want DeadlineExceeded after 1", err, runs)
		}
	})

	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runners := startRunners(t, rctx, c.Live())
	first := runners[leader.ID()].waitRuns(t, 1)[0]
	if want := leader.Status().FencingToken; first.token != want || want == 0 {
		t.Fatalf("fn started with token %d, the leader's fencing token is %d", first.token, want)
	}

	// The leader is cut off from both followers: its lease lapses and it
	// must give up before either of them becomes leader.
	claims := watchClaims(fs)
	cutAt := time.Now()
	c.Isolate(leader.ID())
	cancelled := runners[leader.ID()].waitCancelled(t, 0)
	claimAt, newID := claims.wait(t)
	t.Logf("cut at 0; fn cancelled after %v; %s claimed leadership after %v", cancelled.cancelled.Sub(cutAt), newID, claimAt.Sub(cutAt))
	if !cancelled.cancelled.Before(claimAt) {
		t.Errorf("the cut-off leader's fn was cancelled %v after %s became leader", cancelled.cancelled.Sub(claimAt), newID)
	}
	if d := cancelled.cancelled.Sub(cutAt); d > 5*time.Second {
		t.Errorf("fn cancelled %v after the cut; the lease is about 1.2s", d)
	}
	next := runners[newID].waitRuns(t, 1)[0]
	if next.token <= first.token || next.started.Before(cancelled.cancelled) {
		t.Errorf("new leader's fn: token %d (old %d), started %v after the old one was cancelled", next.token, first.token, next.started.Sub(cancelled.cancelled))
	}

	// Heal: the old leader comes back as a follower; its fn stays off.
	c.Heal(leader.ID())
	current := c.Leader()
	if current.ID() != newID {
		t.Logf("leadership moved on to %s after the heal", current.ID())
	}

	// The leader process dies: its stream breaks and fn is cancelled; the
	// next leader's client runs fn.
	curRunner := runners[current.ID()]
	curRuns := curRunner.waitRuns(t, 1)
	curToken := curRuns[len(curRuns)-1].token
	if r := curRuns[len(curRuns)-1]; !r.cancelled.IsZero() {
		t.Fatalf("%s's fn is not running before the kill: %+v", current.ID(), curRuns)
	}
	before := map[string]int{}
	for id, r := range runners {
		before[id] = len(r.snapshot())
	}
	killAt := time.Now()
	c.Kill(current.ID())
	killed := curRunner.waitCancelled(t, len(curRuns)-1)
	t.Logf("fn of the closed leader cancelled %v after the kill", killed.cancelled.Sub(killAt))
	after := c.Leader()
	nr := runners[after.ID()]
	runs := nr.waitRuns(t, before[after.ID()]+1)
	if last := runs[len(runs)-1]; last.token <= curToken {
		t.Errorf("fn on %s after the crash got token %d, not above %d", after.ID(), last.token, curToken)
	}

	// Runs never overlap in time across nodes, and every fn of a node that
	// never led was never run.
	type span struct {
		id   string
		r    run
		open bool
	}
	var spans []span
	for id, r := range runners {
		for _, x := range r.snapshot() {
			spans = append(spans, span{id: id, r: x, open: x.cancelled.IsZero()})
		}
	}
	for i, a := range spans {
		for _, b := range spans[i+1:] {
			aEnd, bEnd := a.r.cancelled, b.r.cancelled
			if a.open {
				aEnd = time.Now()
			}
			if b.open {
				bEnd = time.Now()
			}
			if a.id != b.id && a.r.started.Before(bEnd) && b.r.started.Before(aEnd) {
				t.Errorf("fn ran on %s (token %d) and %s (token %d) at the same time", a.id, a.r.token, b.id, b.r.token)
			}
		}
	}

	for id, r := range runners {
		for _, x := range r.snapshot() {
			t.Logf("%s ran fn with token %d from %s to %s", id, x.token, x.started.Format("15:04:05.000"), x.cancelled.Format("15:04:05.000"))
		}
	}
	cancel()
	for id, r := range runners {
		select {
		case err := <-r.done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("%s: RunWhileLeader = %v, want context.Canceled", id, err)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("%s: RunWhileLeader did not return after ctx ended", id)
		}
	}
}
