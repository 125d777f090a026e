package client

import (
	"context"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
	"github.com/heartbeat-sidecar/heartbeat/membership"
)

// freezeProxy sits between an application's client and its sidecar's client
// port. Frozen, it moves no byte in either direction and keeps every
// connection open: to the application the sidecar looks like a paused
// process (the kernel keeps its sockets; nothing answers).
type freezeProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cond   *sync.Cond
	frozen bool
	closed bool
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newFreezeProxy(t *testing.T, target string) *freezeProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezeProxy{ln: ln, target: target}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *freezeProxy) addr() string { return p.ln.Addr().String() }

func (p *freezeProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			s.Close()
			return
		}
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pump(c, s)
		go p.pump(s, c)
	}
}

// pump copies src to dst, holding each chunk while the proxy is frozen.
func (p *freezeProxy) pump(src, dst net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			for p.frozen && !p.closed {
				p.cond.Wait()
			}
			closed := p.closed
			p.mu.Unlock()
			if closed {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				src.Close()
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				dst.Close()
			} else if tc, ok := dst.(*net.TCPConn); ok {
				tc.CloseWrite()
			}
			return
		}
	}
}

func (p *freezeProxy) setFrozen(f bool) {
	p.mu.Lock()
	p.frozen = f
	p.mu.Unlock()
	p.cond.Broadcast()
}

func (p *freezeProxy) close() {
	p.mu.Lock()
	p.closed = true
	conns := p.conns
	p.mu.Unlock()
	p.cond.Broadcast()
	p.ln.Close()
	for _, c := range conns {
		c.Close()
	}
	p.wg.Wait()
}

// holding is one span of work: node worked on key from start to end (zero
// end: still working).
type holding struct {
	node, key  string
	start, end time.Time
}

// workLedger records the work of every application of a test.
type workLedger struct {
	mu    sync.Mutex
	spans []*holding
}

// hold records a span for node on key that ends when ctx is cancelled.
func (l *workLedger) hold(ctx context.Context, node, key string) error {
	h := &holding{node: node, key: key, start: time.Now()}
	l.mu.Lock()
	l.spans = append(l.spans, h)
	l.mu.Unlock()
	<-ctx.Done()
	l.mu.Lock()
	h.end = time.Now()
	l.mu.Unlock()
	return ctx.Err()
}

// running reports whether a node other than not works on key now.
func (l *workLedger) running(key, not string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, h := range l.spans {
		if h.key == key && h.node != not && h.end.IsZero() {
			return true
		}
	}
	return false
}

// overlaps returns every pair of spans of one key, from two nodes, that
// overlap in time (an open span counts as running until now), and the
// smallest gap seen between one node's end and another's start on a key.
func (l *workLedger) overlaps() (out []string, minGap time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	byKey := map[string][]holding{}
	for _, h := range l.spans {
		c := *h
		if c.end.IsZero() {
			c.end = now
		}
		byKey[c.key] = append(byKey[c.key], c)
	}
	minGap = time.Duration(1<<63 - 1)
	for key, hs := range byKey {
		sort.Slice(hs, func(i, j int) bool { return hs[i].start.Before(hs[j].start) })
		for i := range hs {
			for j := i + 1; j < len(hs); j++ {
				a, b := hs[i], hs[j]
				if a.node == b.node {
					continue
				}
				if gap := b.start.Sub(a.end); gap < 0 {
					out = append(out, fmt.Sprintf("%s: %s worked until %s, %s started at %s (%v overlap)",
						key, a.node, a.end.Format("15:04:05.000"), b.node, b.start.Format("15:04:05.000"), -gap))
				} else if gap < minGap {
					minGap = gap
				}
			}
		}
	}
	return out, minGap
}

// fault is what happens to the chosen sidecar in TestSidecarFaultWorkStopsFirst.
type fault int

const (
	// paused: cut off from its peers (faultnet) and frozen toward its
	// application (freezeProxy): the application hears nothing, neither a
	// push nor a broken stream.
	paused fault = iota
	// cutOff: cut off from its peers only; it still answers its application.
	cutOff
	// killed: the sidecar stops (its streams break).
	killed
)

// TestSidecarFaultWorkStopsFirst: an application beside every node runs
// leader work (RunWhileLeader) and per-resource work (RunWhileOwner). One
// sidecar — the leader's, or a follower's that owns resources — is paused,
// cut off from its quorum, or killed. The other applications take over; at
// no moment do two applications work as leader, or on the same resource.
// With the client's lease timer disabled (the planted violation) the paused
// sidecar's application works on, and the same check reports the overlap.
func TestSidecarFaultWorkStopsFirst(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fault  fault
		leader bool // the leader's sidecar; else an owner's
		unsafe bool
	}{
		{"paused leader", paused, true, false},
		{"paused owner", paused, false, false},
		{"cut-off leader", cutOff, true, false},
		{"cut-off owner", cutOff, false, false},
		{"killed leader", killed, true, false},
		{"killed owner", killed, false, false},
		{"planted: paused leader, no lease timer", paused, true, true},
		{"planted: paused owner, no lease timer", paused, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad, gap := sidecarFaultRun(t, tc.fault, tc.leader, tc.unsafe)
			switch {
			case tc.unsafe && len(bad) == 0:
				t.Fatal("planted violation not caught: no overlap with the lease timer disabled")
			case tc.unsafe:
				t.Logf("planted violation caught: %s", strings.Join(bad, "; "))
			case len(bad) > 0:
				t.Fatalf("two holders at once:\n%s", strings.Join(bad, "\n"))
			default:
				t.Logf("no overlap; smallest hand-over gap %v", gap)
			}
		})
	}
}

// sidecarFaultRun injects f into one sidecar and returns the overlaps found.
func sidecarFaultRun(t *testing.T, f fault, pauseLeader, unsafe bool) ([]string, time.Duration) {
	c := startCluster(t, 3)
	ctx, cancel := context.WithCancel(testcluster.Context(t))
	defer cancel()
	ledger := &workLedger{}
	proxies := map[string]*freezeProxy{}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for _, n := range c.Live() {
		id := n.ID()
		p := newFreezeProxy(t, n.ClientAddr())
		proxies[id] = p
		cfg := DefaultConfig()
		cfg.Endpoints = []string{p.addr()}
		cfg.RetryBackoff = Backoff{Min: 20 * time.Millisecond, Max: 300 * time.Millisecond}
		cfg.UnsafeNoLeaseTimer = unsafe
		cl, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		wg.Add(2)
		go func() {
			defer wg.Done()
			_ = cl.RunWhileLeader(ctx, func(ctx context.Context, token uint64) error {
				return ledger.hold(ctx, id, "leader")
			})
		}()
		go func() {
			defer wg.Done()
			_ = cl.RunWhileOwner(ctx, func(ctx context.Context, res string, epoch uint64) error {
				return ledger.hold(ctx, id, res)
			})
		}()
	}
	admin := newClient(t, c.Live()...)
	var specs []ResourceSpec
	for i := 0; i < 12; i++ {
		specs = append(specs, ResourceSpec{ID: fmt.Sprintf("shard-%02d", i)})
	}
	if _, err := admin.Register(ctx, specs...); err != nil {
		t.Fatal(err)
	}
	leader := c.Leader()
	victim := leader
	var owned []string
	testwait.Eventually(t, testcluster.DefaultWait, "leader work and work on every resource", func() (bool, string) {
		if !ledger.running("leader", "") {
			return false, "no leader work"
		}
		for _, s := range specs {
			if !ledger.running(s.ID, "") {
				return false, "no work on " + s.ID
			}
		}
		return true, ""
	})
	if !pauseLeader {
		for _, n := range c.Followers() {
			n.Membership().Read(func(s *membership.State) {
				if k := s.NumOwned(n.ID()); k > 0 && (victim == leader || k > len(owned)) {
					victim, owned = n, nil
					for _, r := range s.Owned(n.ID()) {
						owned = append(owned, r.ID)
					}
				}
			})
		}
		if victim == leader {
			t.Fatal("no follower owns a resource")
		}
	} else {
		victim.Membership().Read(func(s *membership.State) {
			for _, r := range s.Owned(victim.ID()) {
				owned = append(owned, r.ID)
			}
		})
	}
	id := victim.ID()
	t.Logf("fault %d on %s's sidecar (leader %v), owner of %v", f, id, pauseLeader, owned)
	switch f {
	case paused:
		proxies[id].setFrozen(true)
		c.Isolate(id)
	case cutOff:
		c.Isolate(id)
	case killed:
		c.Kill(id)
	}
	taken := func() (bool, string) {
		if pauseLeader && !ledger.running("leader", id) {
			return false, "no new leader work"
		}
		for _, r := range owned {
			if !ledger.running(r, id) {
				return false, "no new work on " + r
			}
		}
		return true, ""
	}
	testwait.Eventually(t, testcluster.DefaultWait, "the others take over the paused sidecar's work", taken)
	bad, gap := ledger.overlaps() // judged while the fault lasts
	if f != killed {
		proxies[id].setFrozen(false)
		c.Heal(id)
	}
	return bad, gap
}
