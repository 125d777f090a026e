package client

// Test helpers: in-process Heartbeat nodes over loopback gRPC, built the way
// node/helpers_test.go and node/membership_test.go build theirs (those are
// not exported), plus a client over chosen nodes.

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"go.uber.org/goleak"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/membership"
	"github.com/heartbeat-sidecar/heartbeat/node"
	"github.com/heartbeat-sidecar/heartbeat/rpc/faultnet"
	"github.com/heartbeat-sidecar/heartbeat/rpc/transport"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitTimeout is generous: the machine is shared and -race is slow.
const waitTimeout = 30 * time.Second

// waitFor polls cond every 20ms until it holds or waitTimeout passes; the
// failure message is cond's last explanation.
func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	var why string
	for time.Now().Before(deadline) {
		var ok bool
		if ok, why = cond(); ok {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s: %s", waitTimeout, what, why)
}

// ctxT is a context that ends with the test (or after waitTimeout).
func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

// freeAddrs reserves n loopback ports and releases them, for peer addresses
// that must be known before the nodes start (the initial cluster).
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var lns []net.Listener
	var out []string
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	for _, ln := range lns {
		ln.Close()
	}
	return out
}

// testWriter sends logs to t.Log (so they show only for failing tests). It
// stops logging once the test ended: a node's late goroutines may still log.
type testWriter struct {
	t    *testing.T
	mu   *sync.Mutex
	done *bool
}

func newTestWriter(t *testing.T) testWriter {
	w := testWriter{t: t, mu: &sync.Mutex{}, done: new(bool)}
	t.Cleanup(func() {
		w.mu.Lock()
		*w.done = true
		w.mu.Unlock()
	})
	return w
}

func (w testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !*w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// cluster is a set of in-process voters n1..nN sharing an initial member
// list, every peer transport wrapped by one fault network.
type cluster struct {
	t      *testing.T
	dir    string
	peers  []election.Peer
	net    *faultnet.Network
	nodes  map[string]*node.Node
	closed map[string]bool
	log    testWriter
	tweak  func(*node.Config) // optional, applied to every node's config
}

// startCluster starts n voters and waits for a leader and for every node's
// membership record (so client addresses are known cluster-wide).
func startCluster(t *testing.T, n int, tweak ...func(*node.Config)) *cluster {
	t.Helper()
	addrs := freeAddrs(t, n)
	c := &cluster{
		t: t, dir: t.TempDir(), net: faultnet.New(),
		nodes: map[string]*node.Node{}, closed: map[string]bool{}, log: newTestWriter(t),
	}
	if len(tweak) > 0 {
		c.tweak = tweak[0]
	}
	for i := 0; i < n; i++ {
		c.peers = append(c.peers, election.Peer{ID: fmt.Sprintf("n%d", i+1), Address: addrs[i], Voter: true})
	}
	t.Cleanup(c.stopAll)
	for _, p := range c.peers {
		c.start(p.ID, p.Address)
	}
	c.leader()
	c.waitMembers()
	return c
}

func (c *cluster) start(id, peerAddr string) *node.Node {
	c.t.Helper()
	cfg := node.DefaultConfig()
	cfg.ID = id
	cfg.DataDir = filepath.Join(c.dir, id)
	cfg.PeerAddr = peerAddr
	cfg.ClientAddr = "127.0.0.1:0"
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.InitialCluster = c.peers
	cfg.JoinRetryMax = 500 * time.Millisecond
	// Lenient timing: the test machine is shared and -race is slow; a false
	// election in the middle of a check would fail it for the wrong reason.
	cfg.HeartbeatTimeout = 1500 * time.Millisecond
	// Detector floors a loaded machine cannot trip by accident.
	cfg.Reconciler.Detector.FirstHeartbeatEstimate = 200 * time.Millisecond
	cfg.Reconciler.Detector.MinTimeout = time.Second
	cfg.Reconciler.Detector.MinDeadTimeout = 1500 * time.Millisecond
	cfg.DrainTimeout = 5 * time.Second
	fn := c.net
	cfg.WrapTransport = func(tr *transport.Transport) node.PeerTransport { return fn.Wrap(tr) }
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: id, Level: hclog.Warn, Output: c.log})
	if c.tweak != nil {
		c.tweak(&cfg)
	}
	delete(c.closed, id)
	n, err := node.New(cfg)
	if err != nil {
		c.t.Fatalf("start %s: %v", id, err)
	}
	c.nodes[id] = n
	return n
}

// stopAll closes every node still running (registered with t.Cleanup).
func (c *cluster) stopAll() {
	for id, n := range c.nodes {
		if !c.closed[id] {
			n.Close()
		}
	}
}

// restart starts a killed node again from its data (new client port).
func (c *cluster) restart(id string) *node.Node {
	c.t.Helper()
	for _, p := range c.peers {
		if p.ID == id {
			return c.start(id, p.Address)
		}
	}
	c.t.Fatalf("restart: unknown node %s", id)
	return nil
}

// kill closes a node abruptly (a crash, to its peers).
func (c *cluster) kill(id string) {
	c.t.Helper()
	c.closed[id] = true
	c.nodes[id].Close()
}

// live returns the running nodes sorted by id.
func (c *cluster) live() []*node.Node {
	var out []*node.Node
	for id, n := range c.nodes {
		if !c.closed[id] {
			out = append(out, n)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID() < out[j].ID() })
	return out
}

// leader waits until every running node names the same leader, and that
// leader claims IsLeader; it returns it.
func (c *cluster) leader() *node.Node {
	c.t.Helper()
	var leader *node.Node
	waitFor(c.t, "one leader known to all", func() (bool, string) {
		leader = nil
		var seen string
		for _, n := range c.live() {
			s := n.Status()
			if s.Leader.ID == "" {
				return false, n.ID() + " knows no leader"
			}
			if seen != "" && s.Leader.ID != seen {
				return false, "nodes disagree: " + seen + " vs " + s.Leader.ID
			}
			seen = s.Leader.ID
			if s.IsLeader {
				leader = n
			}
		}
		if leader == nil || leader.ID() != seen {
			return false, "leader " + seen + " does not claim leadership (yet)"
		}
		return true, ""
	})
	return leader
}

// followers returns the running nodes other than the leader.
func (c *cluster) followers() []*node.Node {
	c.t.Helper()
	leader := c.leader()
	var out []*node.Node
	for _, n := range c.live() {
		if n != leader {
			out = append(out, n)
		}
	}
	return out
}

// waitMembers waits until every running node sees every running node
// registered as alive with its client address.
func (c *cluster) waitMembers() {
	c.t.Helper()
	live := c.live()
	waitFor(c.t, "every node registered alive everywhere", func() (bool, string) {
		for _, n := range live {
			v := n.Membership().View()
			for _, m := range live {
				var found *membership.Member
				for i := range v.Members {
					if v.Members[i].ID == m.ID() {
						found = &v.Members[i]
					}
				}
				if found == nil || found.State != membership.StateAlive || found.ClientAddr != m.ClientAddr() {
					return false, fmt.Sprintf("%s sees %s as %+v", n.ID(), m.ID(), found)
				}
			}
		}
		return true, ""
	})
}

// isolate cuts a node off from every peer (its process keeps running).
func (c *cluster) isolate(id string) {
	c.net.Isolate(raft.ServerAddress(c.nodes[id].PeerAddr()))
}

// newClient returns a client over the client addresses of nodes (the first
// is the local one), closed at the end of the test.
func newClient(t *testing.T, nodes ...*node.Node) *Client {
	t.Helper()
	var eps []string
	for _, n := range nodes {
		eps = append(eps, n.ClientAddr())
	}
	return newClientAt(t, eps...)
}

// newClientAt returns a client over explicit endpoints with short backoff.
func newClientAt(t *testing.T, endpoints ...string) *Client {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Endpoints = endpoints
	cfg.RetryBackoff = Backoff{Min: 20 * time.Millisecond, Max: 300 * time.Millisecond}
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "client", Level: hclog.Debug, Output: newTestWriter(t)})
	cl, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	return freeAddrs(t, 1)[0]
}
