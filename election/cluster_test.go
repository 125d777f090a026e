package election

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/heartbeat-sidecar/heartbeat/internal/testport"
	"github.com/heartbeat-sidecar/heartbeat/internal/faultnet"
	"github.com/heartbeat-sidecar/heartbeat/rpc/transport"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// clusterOpts shapes a test cluster.
type clusterOpts struct {
	heartbeat    time.Duration // HeartbeatTimeout = ElectionTimeout; default DefaultHeartbeatTimeout
	fastFailover bool
	// extra nodes get transports and data dirs but are not in the bootstrap
	// list: they wait to be joined.
	extra int
	// noStart lists nodes that are not started by newCluster.
	noStart map[int]bool
	// tweak adjusts each node's config.
	tweak func(*Config)
}

// testNode is one member of a test cluster.
type testNode struct {
	id   string
	addr raft.ServerAddress
	dir  string
	reg  *prometheus.Registry
	tr   *transport.Transport
	ft   *faultnet.Transport
	hook *hookTransport // what the node is given: ft plus test hooks
	node *Node
	fsm  *testFSM
}

// testCluster is an in-process cluster over real gRPC on loopback, each
// transport wrapped by one faultnet, real bolt files in t.TempDir().
type testCluster struct {
	t         *testing.T
	opts      clusterOpts
	net       *faultnet.Network
	clusterID string
	peers     []Peer
	nodes     []*testNode
}

// newCluster starts n bootstrapped nodes (plus opts.extra unlisted ones).
// Cleanup closes everything.
func newCluster(t *testing.T, n int, opts clusterOpts) *testCluster {
	t.Helper()
	if opts.heartbeat == 0 {
		opts.heartbeat = DefaultHeartbeatTimeout
	}
	c := &testCluster{t: t, opts: opts, net: faultnet.New(), clusterID: "test-" + t.Name()}
	base := t.TempDir()
	for i := 0; i < n+opts.extra; i++ {
		tn := &testNode{id: fmt.Sprintf("n%d", i+1), dir: filepath.Join(base, fmt.Sprintf("n%d", i+1))}
		c.nodes = append(c.nodes, tn)
		c.openTransport(tn, testport.Addr(t))
		if i < n {
			c.peers = append(c.peers, Peer{ID: tn.id, Address: string(tn.addr), Voter: true})
		}
	}
	t.Cleanup(c.closeAll)
	for i := range c.nodes {
		if !opts.noStart[i] {
			c.start(i)
		}
	}
	if opts.heartbeat >= time.Second && !opts.noStart[0] {
		// With slow timers the first election would wait a whole heartbeat
		// timeout or two; have node 0 stand at once instead.
		if err := c.nodes[0].tr.TimeoutNowSelf(ctxFor(t, 5*time.Second)); err != nil {
			t.Fatalf("kick-start election: %v", err)
		}
	}
	return c
}

func (c *testCluster) openTransport(tn *testNode, bind string) {
	c.t.Helper()
	cfg := transport.DefaultConfig()
	cfg.ID = raft.ServerID(tn.id)
	cfg.BindAddr = bind
	cfg.ClusterID = c.clusterID
	cfg.Logger = testLogger(c.t)
	tr, err := transport.New(cfg)
	if err != nil {
		c.t.Fatalf("transport %s: %v", tn.id, err)
	}
	tn.tr, tn.addr = tr, tr.LocalAddr()
	tn.ft = c.net.Wrap(tr)
}

// config returns node tn's election config.
func (c *testCluster) config(tn *testNode) Config {
	cfg := DefaultConfig()
	cfg.ID, cfg.ClusterID, cfg.DataDir = tn.id, c.clusterID, tn.dir
	cfg.Bootstrap = c.peers
	cfg.HeartbeatTimeout = c.opts.heartbeat
	cfg.ElectionTimeout = c.opts.heartbeat
	cfg.LeaderLeaseTimeout = c.opts.heartbeat
	cfg.LeaseDuration = c.opts.heartbeat * 4 / 5
	cfg.FastFailover = c.opts.fastFailover
	cfg.Logger = testLogger(c.t)
	cfg.Registerer = tn.reg
	ft := tn.ft
	cfg.Acks = func() map[raft.ServerAddress]Ack { return convertAcks(ft.Acks()) }
	cfg.ErrPeerClosed, cfg.ErrGoodbye = transport.ErrPeerClosed, transport.ErrGoodbye
	if c.opts.tweak != nil {
		c.opts.tweak(&cfg)
	}
	return cfg
}

// convertAcks is the adapter the node package uses too: the transport's Ack
// to the election's.
func convertAcks(in map[raft.ServerAddress]transport.Ack) map[raft.ServerAddress]Ack {
	out := make(map[raft.ServerAddress]Ack, len(in))
	for a, k := range in {
		out[a] = Ack{SentAt: k.SentAt, Term: k.Term}
	}
	return out
}

// start starts node i's election node on its current transport.
func (c *testCluster) start(i int) {
	c.t.Helper()
	tn := c.nodes[i]
	tn.reg = prometheus.NewRegistry()
	tn.fsm = &testFSM{}
	tn.hook = &hookTransport{Transport: tn.ft}
	n, err := New(c.config(tn), tn.hook, tn.fsm)
	if err != nil {
		c.t.Fatalf("start %s: %v", tn.id, err)
	}
	tn.node = n
}

// kill crashes node i: node Close, then transport Close, so its sockets close
// as a dead process's would.
func (c *testCluster) kill(i int) {
	c.t.Helper()
	tn := c.nodes[i]
	if tn.node != nil {
		if err := tn.node.Close(); err != nil {
			c.t.Errorf("close %s: %v", tn.id, err)
		}
		tn.node = nil
	}
	if tn.tr != nil {
		_ = tn.ft.Close()
		_ = tn.tr.Close()
		tn.tr = nil
	}
}

// restart brings a killed node back: same data dir, a new transport on the
// same address.
func (c *testCluster) restart(i int) {
	c.t.Helper()
	tn := c.nodes[i]
	if tn.node != nil {
		c.t.Fatalf("restart %s: still running", tn.id)
	}
	addr := tn.addr
	var lastErr error
	// The port was ours a moment ago; rebinding can race the kernel briefly.
	waitFor(c.t, 5*time.Second, func() bool {
		cfg := transport.DefaultConfig()
		cfg.ID, cfg.BindAddr, cfg.ClusterID, cfg.Logger = raft.ServerID(tn.id), string(addr), c.clusterID, testLogger(c.t)
		tr, err := transport.New(cfg)
		if err != nil {
			lastErr = err
			return false
		}
		tn.tr, tn.ft = tr, c.net.Wrap(tr)
		return true
	}, func() string { return fmt.Sprintf("rebind %s: %v", addr, lastErr) })
	c.start(i)
}

func (c *testCluster) closeAll() {
	for i := range c.nodes {
		c.kill(i)
	}
}

func (c *testCluster) alive() []int {
	var out []int
	for i, tn := range c.nodes {
		if tn.node != nil {
			out = append(out, i)
		}
	}
	return out
}

// leader returns the index of the one live node that reports IsLeader, or -1
// if none or more than one does.
func (c *testCluster) leader() int {
	found := -1
	for _, i := range c.alive() {
		if c.nodes[i].node.Leadership().IsLeader {
			if found >= 0 {
				return -1
			}
			found = i
		}
	}
	return found
}

// waitLeader waits until exactly one live node reports IsLeader and every
// live member names it with the same fencing token, and returns its index.
func (c *testCluster) waitLeader(timeout time.Duration) int {
	c.t.Helper()
	var li int
	waitFor(c.t, timeout, func() bool {
		li = c.leader()
		if li < 0 {
			return false
		}
		want := c.nodes[li].node.Leadership()
		members, err := c.nodes[li].node.Members()
		if err != nil {
			return false
		}
		isMember := map[string]bool{}
		for _, m := range members {
			isMember[m.ID] = true
		}
		for _, i := range c.alive() {
			if !isMember[c.nodes[i].id] {
				continue // not joined yet: knows no leader
			}
			l := c.nodes[i].node.Leadership()
			if l.LeaderID != want.LeaderID || l.FencingToken != want.FencingToken {
				return false
			}
		}
		return true
	}, c.describe)
	return li
}

// describe renders every node's view for failure messages.
func (c *testCluster) describe() string {
	var b bytes.Buffer
	for i, tn := range c.nodes {
		if tn.node == nil {
			fmt.Fprintf(&b, "\n  %s: down", tn.id)
			continue
		}
		fmt.Fprintf(&b, "\n  %d %s: %+v", i, tn.id, tn.node.Leadership())
	}
	return b.String()
}

// metric returns the value of a counter or gauge on node i's registry.
func (c *testCluster) metric(i int, name string) float64 {
	c.t.Helper()
	mfs, err := c.nodes[i].reg.Gather()
	if err != nil {
		c.t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			if m.Gauge != nil {
				return m.Gauge.GetValue()
			}
		}
	}
	c.t.Fatalf("metric %s not found on %s", name, c.nodes[i].id)
	return 0
}

// triggers sums the fast-failover trigger counters of the live nodes.
func (c *testCluster) triggers() float64 {
	var sum float64
	for _, i := range c.alive() {
		sum += c.metric(i, "heartbeat_fast_failover_triggers_total")
	}
	return sum
}

func (c *testCluster) isolate(i int) { c.net.Isolate(c.nodes[i].addr) }
func (c *testCluster) heal(i int)    { c.net.Heal(c.nodes[i].addr) }

// waitFor polls cond every 10ms until it holds or timeout passes; then it
// fails the test with what() (which may be nil).
func waitFor(t *testing.T, timeout time.Duration, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			msg := ""
			if what != nil {
				msg = what()
			}
			t.Fatalf("condition not met within %s: %s", timeout, msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testLogger writes the nodes' logs to the test log when ELECTION_TEST_LOG
// is set ("debug" for debug level), and discards them otherwise.
func testLogger(t *testing.T) hclog.Logger {
	level := hclog.Info
	if os.Getenv("ELECTION_TEST_LOG") == "debug" {
		level = hclog.Debug
	}
	return hclog.New(&hclog.LoggerOptions{
		Level:  level,
		Output: &testWriter{t: t},
	})
}

type testWriter struct {
	mu sync.Mutex
	t  *testing.T
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if os.Getenv("ELECTION_TEST_LOG") != "" {
		w.t.Log(string(bytes.TrimRight(p, "\n")))
	}
	return len(p), nil
}

// testFSM records applied entries.
type testFSM struct {
	mu      sync.Mutex
	entries []string
	delay   atomic.Int64 // nanoseconds each Apply takes, to let raft's FSM queue fill
}

func (f *testFSM) Apply(l *raft.Log) any {
	if d := f.delay.Load(); d > 0 {
		time.Sleep(time.Duration(d))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries = append(f.entries, string(l.Data))
	return len(f.entries)
}

func (f *testFSM) list() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.entries...)
}

func (f *testFSM) Snapshot() (raft.FSMSnapshot, error) {
	return &testSnapshot{entries: f.list()}, nil
}

func (f *testFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var entries []string
	if err := json.NewDecoder(rc).Decode(&entries); err != nil {
		return err
	}
	f.mu.Lock()
	f.entries = entries
	f.mu.Unlock()
	return nil
}

type testSnapshot struct{ entries []string }

func (s *testSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode(s.entries); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *testSnapshot) Release() {}

// ctx returns a context that ends after d (and at test end).
func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// hookTransport passes everything to the faultnet transport, except that a
// test can break the node's held stream as a connection reset would (the
// peer stays alive) and make its redials fail.
type hookTransport struct {
	*faultnet.Transport
	mu      sync.Mutex
	breakCh chan struct{} // closed to break the running Hold; nil: none
	refuse  bool          // Reachable fails
}

// Hold runs the real Hold; breakHold ends it with ErrPeerClosed.
func (h *hookTransport) Hold(ctx context.Context, target raft.ServerAddress) error {
	h.mu.Lock()
	brk := make(chan struct{})
	h.breakCh = brk
	h.mu.Unlock()
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- h.Transport.Hold(hctx, target) }()
	select {
	case err := <-done:
		return err
	case <-brk:
		cancel()
		<-done
		return fmt.Errorf("test: connection reset: %w", transport.ErrPeerClosed)
	}
}

// breakHold breaks the running Hold, if any; it reports whether one ran.
func (h *hookTransport) breakHold() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.breakCh == nil {
		return false
	}
	close(h.breakCh)
	h.breakCh = nil
	return true
}

// setRefuse makes Reachable fail (true) or pass through (false).
func (h *hookTransport) setRefuse(v bool) {
	h.mu.Lock()
	h.refuse = v
	h.mu.Unlock()
}

func (h *hookTransport) Reachable(ctx context.Context, target raft.ServerAddress) error {
	h.mu.Lock()
	refuse := h.refuse
	h.mu.Unlock()
	if refuse {
		return fmt.Errorf("test: redial to %s refused", target)
	}
	return h.Transport.Reachable(ctx, target)
}
