package main

// Test helpers: in-process Heartbeat nodes over loopback gRPC, built the way
// client/cluster_test.go and node/helpers_test.go build theirs (those are not
// exported). Unlike those, every node gets a reserved client port, so that a
// killed node restarts on the same address and its worker finds it again.

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
	"go.uber.org/goleak"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/membership"
	"github.com/heartbeat-sidecar/heartbeat/node"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitTimeout is generous: the machine is shared and -race is slow.
const waitTimeout = 45 * time.Second

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

// freeAddrs reserves n loopback ports and releases them, for addresses that
// must be known before the nodes start.
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

// testWriter sends logs to t.Log (so they show only for failing tests, or
// with -v). It stops once the test ended: late goroutines may still log.
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
// list; node nI always listens on clientAddrs[I-1].
type cluster struct {
	t           *testing.T
	dir         string
	peers       []election.Peer
	clientAddrs map[string]string
	nodes       map[string]*node.Node
	closed      map[string]bool
	log         testWriter
}

// startCluster starts n voters and waits for a leader and for every node's
// membership record.
func startCluster(t *testing.T, n int) *cluster {
	t.Helper()
	peerAddrs, clientAddrs := freeAddrs(t, n), freeAddrs(t, n)
	c := &cluster{
		t: t, dir: t.TempDir(), clientAddrs: map[string]string{},
		nodes: map[string]*node.Node{}, closed: map[string]bool{}, log: newTestWriter(t),
	}
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("n%d", i+1)
		c.peers = append(c.peers, election.Peer{ID: id, Address: peerAddrs[i], Voter: true})
		c.clientAddrs[id] = clientAddrs[i]
	}
	t.Cleanup(c.stopAll)
	for _, p := range c.peers {
		c.start(p.ID)
	}
	c.leader()
	c.waitMembers()
	return c
}

// start starts (or restarts, from its data) node id.
func (c *cluster) start(id string) *node.Node {
	c.t.Helper()
	cfg := node.DefaultConfig()
	cfg.ID = id
	cfg.DataDir = filepath.Join(c.dir, id)
	for _, p := range c.peers {
		if p.ID == id {
			cfg.PeerAddr = p.Address
		}
	}
	cfg.ClientAddr = c.clientAddrs[id]
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.InitialCluster = c.peers
	cfg.JoinRetryMax = 500 * time.Millisecond
	// Lenient timing: the test machine is shared and -race is slow; a false
	// election in the middle of a check would fail it for the wrong reason.
	// Crash failover does not wait for this timeout.
	cfg.HeartbeatTimeout = 1500 * time.Millisecond
	// Detector floors a loaded machine cannot trip by accident.
	cfg.Reconciler.Detector.FirstHeartbeatEstimate = 200 * time.Millisecond
	cfg.Reconciler.Detector.MinTimeout = time.Second
	cfg.Reconciler.Detector.MinDeadTimeout = 1500 * time.Millisecond
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: id, Level: hclog.Warn, Output: c.log})
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

// kill closes a node abruptly (a crash, to its peers).
func (c *cluster) kill(id string) {
	c.t.Helper()
	c.closed[id] = true
	c.nodes[id].Close()
}

// live returns the ids of the running nodes, sorted.
func (c *cluster) live() []string {
	var out []string
	for id := range c.nodes {
		if !c.closed[id] {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// leader waits until every running node names the same leader, and that
// leader claims IsLeader; it returns its id.
func (c *cluster) leader() string {
	c.t.Helper()
	var leader string
	waitFor(c.t, "one leader known to all", func() (bool, string) {
		leader = ""
		var seen string
		for _, id := range c.live() {
			s := c.nodes[id].Status()
			if s.Leader.ID == "" {
				return false, id + " knows no leader"
			}
			if seen != "" && s.Leader.ID != seen {
				return false, "nodes disagree: " + seen + " vs " + s.Leader.ID
			}
			seen = s.Leader.ID
			if s.IsLeader {
				leader = id
			}
		}
		if leader == "" || leader != seen {
			return false, "leader " + seen + " does not claim leadership (yet)"
		}
		return true, ""
	})
	return leader
}

// waitMembers waits until every running node sees every running node
// registered as alive with its client address.
func (c *cluster) waitMembers() {
	c.t.Helper()
	live := c.live()
	waitFor(c.t, "every node registered alive everywhere", func() (bool, string) {
		for _, id := range live {
			v := c.nodes[id].Membership().View()
			for _, other := range live {
				var found *membership.Member
				for i := range v.Members {
					if v.Members[i].ID == other {
						found = &v.Members[i]
					}
				}
				if found == nil || found.State != membership.StateAlive || found.ClientAddr != c.clientAddrs[other] {
					return false, fmt.Sprintf("%s sees %s as %+v", id, other, found)
				}
			}
		}
		return true, ""
	})
}

// endpoints returns the client addresses with node id's first: what its
// worker is configured with.
func (c *cluster) endpoints(id string) []string {
	out := []string{c.clientAddrs[id]}
	for _, p := range c.peers {
		if p.ID != id {
			out = append(out, c.clientAddrs[p.ID])
		}
	}
	return out
}

// assignments returns what node id's own state says id owns (id -> epoch).
func (c *cluster) assignments(id string) map[string]uint64 {
	out := map[string]uint64{}
	for _, r := range c.nodes[id].Membership().View().Resources {
		if r.Owner == id {
			out[r.ID] = r.Epoch
		}
	}
	return out
}

// runningWorker is a Worker running in its own goroutine.
type runningWorker struct {
	*Worker
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// stop ends the worker and returns Run's result (the same on every call).
func (r *runningWorker) stop() error {
	r.once.Do(func() {
		r.cancel()
		r.err = <-r.done
	})
	return r.err
}

// startWorker runs a worker beside node id, stopped at the end of the test.
// Its endpoints are id's client address first, then the others'; or only
// id's with alone set.
func startWorker(t *testing.T, c *cluster, id, ledger string, alone bool) *runningWorker {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Endpoints = c.endpoints(id)
	if alone {
		cfg.Endpoints = cfg.Endpoints[:1]
	}
	cfg.LedgerPath = ledger
	cfg.TTL = 3 * time.Second
	cfg.WorkInterval = 500 * time.Millisecond
	cfg.LeaderInterval = 100 * time.Millisecond
	cfg.RetryBackoff.Min, cfg.RetryBackoff.Max = 20*time.Millisecond, 300*time.Millisecond
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "worker-" + id, Level: hclog.Info, Output: c.log})
	w, err := NewWorker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningWorker{Worker: w, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- w.Run(ctx) }()
	t.Cleanup(func() {
		if err := r.stop(); err != nil {
			t.Errorf("worker %s: Run returned %v", id, err)
		}
	})
	return r
}
