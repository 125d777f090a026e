package faultnet

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"go.uber.org/goleak"

	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
	"github.com/heartbeat-sidecar/heartbeat/rpc/transport"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// electionTransport is the interface the election package declares; both the real
// transport and the wrapper must satisfy it.
type electionTransport interface {
	raft.Transport
	raft.WithPreVote
	raft.WithClose
	Acks() map[raft.ServerAddress]transport.Ack
	Hold(ctx context.Context, target raft.ServerAddress) error
	Reachable(ctx context.Context, target raft.ServerAddress) error
	ConfirmLost(ctx context.Context, via, target raft.ServerAddress) (bool, error)
	TimeoutNowSelf(ctx context.Context) error
	Goodbye()
}

var (
	_ electionTransport = (*transport.Transport)(nil)
	_ electionTransport = (*Transport)(nil)
)

const (
	// Short enough for quick tests, long enough for a loaded 2-core machine.
	hbTimeout  = 300 * time.Millisecond
	rpcTimeout = time.Second
)

// node is a wrapped transport whose consumer answers like echo and counts requests.
type node struct {
	*Transport
	got atomic.Int32 // requests handled through Consumer or the heartbeat handler
}

func newNode(t *testing.T, n *Network, id string) *node {
	t.Helper()
	cfg := transport.DefaultConfig()
	cfg.ID = raft.ServerID(id)
	cfg.BindAddr = "127.0.0.1:0"
	cfg.ClusterID = "faultnet"
	cfg.HeartbeatTimeout = hbTimeout
	cfg.RPCTimeout = rpcTimeout
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Level: hclog.Off})
	tr, err := transport.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	nd := &node{Transport: n.Wrap(tr)}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case rpc := <-nd.Consumer():
				nd.got.Add(1)
				answer(rpc)
			case <-stop:
				return
			}
		}
	}()
	t.Cleanup(func() {
		_ = nd.Close()
		close(stop)
		wg.Wait()
	})
	return nd
}

// connect makes one successful call of each kind from a to b, so that both of a's
// connections to b are up before a test injects faults (the first dial on a loaded
// machine can take longer than a short heartbeat deadline).
func connect(t *testing.T, a, b *node) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		errVote := vote(a, b)
		req := &raft.AppendEntriesRequest{Term: 1, PrevLogEntry: 1}
		errAppend := a.AppendEntries("x", b.LocalAddr(), req, &raft.AppendEntriesResponse{})
		if errVote == nil && errAppend == nil && heartbeat(a, b) == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cannot connect %s to %s: %v / %v", a.LocalAddr(), b.LocalAddr(), errVote, errAppend)
		}
	}
}

// cluster starts nodes with the given ids and connects every ordered pair.
func cluster(t *testing.T, n *Network, ids ...string) []*node {
	t.Helper()
	ns := make([]*node, len(ids))
	for i, id := range ids {
		ns[i] = newNode(t, n, id)
	}
	for _, a := range ns {
		for _, b := range ns {
			if a != b {
				connect(t, a, b)
			}
		}
	}
	return ns
}

func pair(t *testing.T, n *Network) (a, b *node) {
	t.Helper()
	ns := cluster(t, n, "a", "b")
	return ns[0], ns[1]
}

func answer(rpc raft.RPC) {
	switch req := rpc.Command.(type) {
	case *raft.AppendEntriesRequest:
		rpc.Respond(&raft.AppendEntriesResponse{Term: req.Term, Success: true}, nil)
	case *raft.RequestVoteRequest:
		rpc.Respond(&raft.RequestVoteResponse{Term: req.Term, Granted: true}, nil)
	case *raft.RequestPreVoteRequest:
		rpc.Respond(&raft.RequestPreVoteResponse{Term: req.Term, Granted: true}, nil)
	case *raft.TimeoutNowRequest:
		rpc.Respond(&raft.TimeoutNowResponse{}, nil)
	case *raft.InstallSnapshotRequest:
		n, _ := io.Copy(io.Discard, rpc.Reader)
		rpc.Respond(&raft.InstallSnapshotResponse{Term: req.Term, Success: n == req.Size}, nil)
	default:
		rpc.Respond(nil, errors.New("unexpected"))
	}
}

func vote(from, to *node) error {
	return from.RequestVote("x", to.LocalAddr(), &raft.RequestVoteRequest{Term: 1}, &raft.RequestVoteResponse{})
}

func heartbeat(from, to *node) error {
	req := &raft.AppendEntriesRequest{Term: 1, Leader: []byte(from.LocalAddr())}
	return from.AppendEntries("x", to.LocalAddr(), req, &raft.AppendEntriesResponse{})
}

// timed runs f and returns its duration and error.
func timed(f func() error) (time.Duration, error) {
	start := time.Now()
	err := f()
	return time.Since(start), err
}

func TestCutBlocksUntilDeadline(t *testing.T) {
	n := New()
	a, b := pair(t, n)
	if err := vote(a, b); err != nil {
		t.Fatalf("vote before cut: %v", err)
	}
	before := b.got.Load()
	cutAt := time.Now()
	n.Cut(a.LocalAddr(), b.LocalAddr())

	d, err := timed(func() error { return vote(a, b) })
	if !errors.Is(err, ErrLinkDown) || d < rpcTimeout*9/10 {
		t.Fatalf("vote through cut = %v after %v; want ErrLinkDown after ~%v", err, d, rpcTimeout)
	}
	d, err = timed(func() error { return heartbeat(a, b) })
	if !errors.Is(err, ErrLinkDown) || d < hbTimeout*9/10 || d > rpcTimeout {
		t.Fatalf("heartbeat through cut = %v after %v; want ErrLinkDown after ~%v", err, d, hbTimeout)
	}
	if got := b.got.Load(); got != before {
		t.Fatalf("b handled %d requests through a cut", got-before)
	}
	// The other direction is not cut for requests; only its replies are lost.
	if ack := a.Acks()[b.LocalAddr()]; !ack.SentAt.Before(cutAt) {
		t.Fatalf("a recorded an ack through a cut: %+v", ack)
	}
}

func TestOneWayCutLosesReplies(t *testing.T) {
	n := New()
	a, b := pair(t, n)
	cutAt := time.Now()
	n.Cut(b.LocalAddr(), a.LocalAddr()) // replies from b to a are lost
	before := b.got.Load()
	d, err := timed(func() error { return heartbeat(a, b) })
	if !errors.Is(err, ErrReplyLost) || d < hbTimeout*9/10 {
		t.Fatalf("heartbeat with reply cut = %v after %v; want ErrReplyLost after ~%v", err, d, hbTimeout)
	}
	if b.got.Load() != before+1 {
		t.Fatal("the request was not delivered")
	}
	if ack := a.Acks()[b.LocalAddr()]; !ack.SentAt.Before(cutAt) {
		t.Fatalf("an ack was recorded for a lost reply: %+v", ack)
	}
	// The real transport underneath did get the reply; the wrapper hides it.
	if ack := a.Inner().Acks()[b.LocalAddr()]; ack.SentAt.Before(cutAt) {
		t.Fatalf("the real transport saw no reply: %+v", ack)
	}
	// b -> a requests vanish.
	if err := vote(b, a); !errors.Is(err, ErrLinkDown) {
		t.Fatalf("vote b->a = %v, want ErrLinkDown", err)
	}
}

func TestIsolateAndHeal(t *testing.T) {
	n := New()
	ns := cluster(t, n, "a", "b", "c")
	a, b, c := ns[0], ns[1], ns[2]
	n.Isolate(b.LocalAddr())
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i, pair := range [][2]*node{{a, b}, {b, a}, {c, b}, {b, c}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = heartbeat(pair[0], pair[1])
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err == nil {
			t.Fatalf("pair %d went through an isolation", i)
		}
	}
	testwait.Eventually(t, 5*time.Second, "a->c with b isolated", func() (bool, string) { return errString(heartbeat(a, c)) })
	n.Heal(b.LocalAddr())
	for _, pair := range [][2]*node{{a, b}, {b, a}, {c, b}, {b, c}} {
		testwait.Eventually(t, 5*time.Second, "heartbeat after Heal", func() (bool, string) { return errString(heartbeat(pair[0], pair[1])) })
	}
	if ack := a.Acks()[b.LocalAddr()]; ack.Term != 1 || ack.RepliedAt.Before(ack.SentAt) {
		t.Fatalf("ack after heal = %+v", ack)
	}
	n.Cut(a.LocalAddr(), c.LocalAddr())
	n.Isolate(b.LocalAddr())
	n.HealAll()
	testwait.Eventually(t, 5*time.Second, "a->c after HealAll", func() (bool, string) { return errString(heartbeat(a, c)) })
	testwait.Eventually(t, 5*time.Second, "a->b after HealAll", func() (bool, string) { return errString(heartbeat(a, b)) })
}

func TestDelay(t *testing.T) {
	n := New()
	a, b := pair(t, n)
	n.Delay(a.LocalAddr(), b.LocalAddr(), 300*time.Millisecond)
	n.Delay(b.LocalAddr(), a.LocalAddr(), 200*time.Millisecond)
	d, err := timed(func() error { return vote(a, b) })
	if err != nil || d < 500*time.Millisecond {
		t.Fatalf("delayed vote = %v after %v; want success after >= 500ms", err, d)
	}
	// A delay beyond the heartbeat deadline fails the heartbeat.
	n.Delay(a.LocalAddr(), b.LocalAddr(), 2*hbTimeout)
	if err := heartbeat(a, b); !errors.Is(err, ErrDeadline) {
		t.Fatalf("heartbeat delayed past its deadline = %v, want ErrDeadline", err)
	}
	n.Delay(a.LocalAddr(), b.LocalAddr(), 0)
	n.Delay(b.LocalAddr(), a.LocalAddr(), 0)
	if d, err := timed(func() error { return vote(a, b) }); err != nil || d >= 500*time.Millisecond {
		t.Fatalf("vote after removing delays = %v after %v", err, d)
	}
}

func TestDrop(t *testing.T) {
	n := New()
	a, b := pair(t, n)
	n.Drop(a.LocalAddr(), b.LocalAddr(), 1)
	if err := heartbeat(a, b); !errors.Is(err, ErrLinkDown) {
		t.Fatalf("heartbeat with drop 1 = %v, want ErrLinkDown", err)
	}
	n.Drop(a.LocalAddr(), b.LocalAddr(), 0.5)
	const calls = 20
	ok := 0
	for i := 0; i < calls; i++ {
		if heartbeat(a, b) == nil {
			ok++
		}
	}
	if ok < 2 || ok > calls-2 { // P(fail) < 1e-4 each way
		t.Fatalf("%d of %d heartbeats passed a 50%% drop", ok, calls)
	}
	n.Drop(a.LocalAddr(), b.LocalAddr(), 0)
	testwait.Eventually(t, 5*time.Second, "heartbeat after removing the drop", func() (bool, string) { return errString(heartbeat(a, b)) })
}

func TestPipelineThroughCut(t *testing.T) {
	n := New()
	a, b := pair(t, n)
	p, err := a.AppendEntriesPipeline("b", b.LocalAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	send := func(i uint64) raft.AppendFuture {
		t.Helper()
		req := &raft.AppendEntriesRequest{Term: 2, PrevLogEntry: i, Entries: []*raft.Log{{Index: i + 1, Term: 2}}}
		f, err := p.AppendEntries(req, &raft.AppendEntriesResponse{})
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		return f
	}
	next := func() raft.AppendFuture {
		t.Helper()
		select {
		case f := <-p.Consumer():
			return f
		case <-time.After(5 * time.Second):
			t.Fatal("no future delivered")
			return nil
		}
	}
	f1 := send(1)
	if got := next(); got != f1 || got.Error() != nil {
		t.Fatalf("first append: %v", got.Error())
	}
	n.Cut(a.LocalAddr(), b.LocalAddr())
	before := b.got.Load()
	f2 := send(2)
	if got := next(); got != f2 || !errors.Is(got.Error(), ErrLinkDown) {
		t.Fatalf("append through cut = %v, want ErrLinkDown", got.Error())
	}
	if b.got.Load() != before {
		t.Fatal("a pipelined append went through a cut")
	}
	n.HealAll()
	f3 := send(3)
	if got := next(); got != f3 || got.Error() != nil {
		t.Fatalf("append after heal: %v", got.Error())
	}
	if ack := a.Acks()[b.LocalAddr()]; ack.Term != 2 {
		t.Fatalf("pipelined ack = %+v", ack)
	}
}

func TestInstallSnapshotThroughCut(t *testing.T) {
	n := New()
	a, b := pair(t, n)
	data := bytes.Repeat([]byte("s"), 1<<20)
	snap := func() error {
		req := &raft.InstallSnapshotRequest{Term: 1, Size: int64(len(data))}
		return a.InstallSnapshot("b", b.LocalAddr(), req, &raft.InstallSnapshotResponse{}, bytes.NewReader(data))
	}
	if err := snap(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	n.Cut(a.LocalAddr(), b.LocalAddr())
	if err := snap(); !errors.Is(err, ErrLinkDown) {
		t.Fatalf("snapshot through cut = %v, want ErrLinkDown", err)
	}
}

func TestHoldSilentThroughCut(t *testing.T) {
	n := New()
	a, b := pair(t, n)

	// A held stream whose link is cut, and whose peer then really dies, stays silent.
	ctx, cancel := context.WithCancel(t.Context())
	res := make(chan error, 1)
	go func() { res <- a.Hold(ctx, b.LocalAddr()) }()
	waitOpen(t, a, b)
	n.Cut(b.LocalAddr(), a.LocalAddr())
	_ = b.Inner().Close() // the real stream breaks underneath
	select {
	case err := <-res:
		t.Fatalf("Hold returned %v through a cut", err)
	case <-time.After(300 * time.Millisecond):
	}
	cancel()
	select {
	case err := <-res:
		if err != nil {
			t.Fatalf("Hold after ctx end = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Hold did not return after ctx end")
	}

	// A Hold started through a cut blocks until its ctx ends.
	c := newNode(t, n, "c")
	connect(t, a, c)
	n.Cut(a.LocalAddr(), c.LocalAddr())
	hctx, hcancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer hcancel()
	if d, err := timed(func() error { return a.Hold(hctx, c.LocalAddr()) }); err != nil || d < 190*time.Millisecond {
		t.Fatalf("Hold through cut = %v after %v, want nil at ctx end", err, d)
	}

	// Without a cut, the death of the peer shows.
	n.HealAll()
	res = make(chan error, 1)
	go func() { res <- a.Hold(t.Context(), c.LocalAddr()) }()
	waitOpen(t, a, c)
	_ = c.Close()
	select {
	case err := <-res:
		if !errors.Is(err, transport.ErrPeerClosed) {
			t.Fatalf("Hold = %v, want ErrPeerClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Hold did not see the peer close")
	}
}

// waitOpen waits until a's real transport holds a stream to b.
func waitOpen(t *testing.T, a, b *node) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !a.Holding(b.LocalAddr()) {
		if time.Now().After(deadline) {
			t.Fatal("held stream never opened")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestReachableAndConfirmThroughCut(t *testing.T) {
	n := New()
	ns := cluster(t, n, "a", "b", "c")
	a, b, c := ns[0], ns[1], ns[2]
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if err := a.Reachable(ctx, b.LocalAddr()); err != nil {
		t.Fatalf("Reachable: %v", err)
	}
	if lost, err := a.ConfirmLost(ctx, c.LocalAddr(), b.LocalAddr()); err != nil || lost {
		t.Fatalf("ConfirmLost = %v, %v; want false", lost, err)
	}
	n.Cut(c.LocalAddr(), a.LocalAddr())
	n.Cut(b.LocalAddr(), a.LocalAddr())
	short, scancel := context.WithTimeout(t.Context(), 150*time.Millisecond)
	defer scancel()
	if err := a.Reachable(short, b.LocalAddr()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Reachable through cut = %v, want a timeout", err)
	}
	short2, scancel2 := context.WithTimeout(t.Context(), 150*time.Millisecond)
	defer scancel2()
	if _, err := a.ConfirmLost(short2, c.LocalAddr(), b.LocalAddr()); err == nil {
		t.Fatal("ConfirmLost through a cut succeeded")
	}
	if err := a.TimeoutNowSelf(ctx); err != nil {
		t.Fatalf("TimeoutNowSelf is local and must work: %v", err)
	}
}

// errString turns an error into a testwait.Eventually answer.
func errString(err error) (bool, string) {
	if err != nil {
		return false, err.Error()
	}
	return true, ""
}
