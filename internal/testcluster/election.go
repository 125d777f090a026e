package testcluster

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/internal/faultnet"
	"github.com/heartbeat-sidecar/heartbeat/internal/testport"
	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
	"github.com/heartbeat-sidecar/heartbeat/rpc/transport"
)

// ElectionOptions shape an ElectionCluster. The zero value is a cluster
// with election's default timings, fast failover off, a LogFSM per node.
type ElectionOptions struct {
	// Heartbeat is every node's HeartbeatTimeout, ElectionTimeout and
	// LeaderLeaseTimeout; LeaseDuration is 4/5 of it. Default
	// election.DefaultHeartbeatTimeout. From one second up, node 0 stands
	// at once (TimeoutNowSelf) instead of waiting out a timeout or two.
	Heartbeat time.Duration
	// FastFailover is election.Config.FastFailover.
	FastFailover bool
	// Extra nodes get a transport, a data dir and an id (after the n
	// bootstrapped ones) but are not in the bootstrap list: they wait to be
	// joined.
	Extra int
	// NoStart lists the indexes of nodes whose election node is not
	// started (their transports are); Start starts them.
	NoStart map[int]bool
	// ClusterID is every node's cluster id; default "test-" + t.Name().
	ClusterID string
	// FSM returns the state machine of node id, each start; nil: a new
	// LogFSM.
	FSM func(id string) raft.FSM
	// Register, when set, registers extra services on node id's peer gRPC
	// server (transport.Config.Register), each time its transport opens.
	Register func(id string, s *grpc.Server)
	// Tweak, when set, is applied last to every node's config, each start.
	Tweak func(*election.Config)
}

// ElectionNode is one member of an ElectionCluster. Transport, Fault, Hook
// and Node are nil while the node is down (killed, or never started for
// Node); a restart replaces them.
type ElectionNode struct {
	ID       string
	Addr     raft.ServerAddress // its peer address; the same across restarts
	Dir      string             // its data dir
	Registry *prometheus.Registry
	// Transport is the real gRPC transport; Fault wraps it in the
	// cluster's fault network; Hook wraps Fault and is what the election
	// node is given.
	Transport *transport.Transport
	Fault     *faultnet.Transport
	Hook      *Hook
	Node      *election.Node
	FSM       raft.FSM
}

// ElectionCluster is an in-process cluster of election nodes (package
// election, without the rest of a Heartbeat node) over real gRPC transports
// on loopback, every transport wrapped by one faultnet network, real bolt
// files in t.TempDir(). It is for the tests of election and rpc/api, which
// package node's Cluster would hide behind the node; everything still
// running is closed when the test ends (t.Cleanup).
//
// Nodes are named by index (0..n+Extra-1) and have ids n1, n2, ...; like
// Cluster, it is driven from the test's goroutine.
type ElectionCluster struct {
	t         testing.TB
	opts      ElectionOptions
	net       *faultnet.Network
	clusterID string
	peers     []election.Peer
	log       *Writer
	nodes     []*ElectionNode
}

// StartElections starts n bootstrapped election nodes (plus opts.Extra
// unlisted ones) and returns at once: WaitLeader waits for the election.
func StartElections(t testing.TB, n int, opts ElectionOptions) *ElectionCluster {
	t.Helper()
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = election.DefaultHeartbeatTimeout
	}
	if opts.ClusterID == "" {
		opts.ClusterID = "test-" + t.Name()
	}
	c := &ElectionCluster{t: t, opts: opts, net: faultnet.New(), clusterID: opts.ClusterID, log: NewWriter(t)}
	base := t.TempDir()
	t.Cleanup(c.closeAll)
	for i := 0; i < n+opts.Extra; i++ {
		id := fmt.Sprintf("n%d", i+1)
		en := &ElectionNode{ID: id, Dir: filepath.Join(base, id)}
		c.nodes = append(c.nodes, en)
		if err := c.openTransport(en, testport.Addr(t)); err != nil {
			t.Fatalf("transport %s: %v", id, err)
		}
		if i < n {
			c.peers = append(c.peers, election.Peer{ID: id, Address: string(en.Addr), Voter: true})
		}
	}
	for i := range c.nodes {
		if !opts.NoStart[i] {
			c.Start(i)
		}
	}
	if opts.Heartbeat >= time.Second && !opts.NoStart[0] && n > 0 {
		// With slow timers the first election would wait a whole heartbeat
		// timeout or two; have node 0 stand at once instead.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.nodes[0].Transport.TimeoutNowSelf(ctx); err != nil {
			t.Fatalf("kick-start election: %v", err)
		}
	}
	return c
}

// logger is a node's logger: the test's log at Warn, or at the level
// HEARTBEAT_TEST_LOG names ("debug", "info").
func (c *ElectionCluster) logger(id string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: id, Level: LogLevel(), Output: c.log})
}

// openTransport opens en's transport on bind and wraps it.
func (c *ElectionCluster) openTransport(en *ElectionNode, bind string) error {
	cfg := transport.DefaultConfig()
	cfg.ID = raft.ServerID(en.ID)
	cfg.BindAddr = bind
	cfg.ClusterID = c.clusterID
	cfg.Logger = c.logger(en.ID)
	if reg := c.opts.Register; reg != nil {
		id := en.ID
		cfg.Register = func(s *grpc.Server) { reg(id, s) }
	}
	tr, err := transport.New(cfg)
	if err != nil {
		return err
	}
	en.Transport, en.Addr = tr, tr.LocalAddr()
	en.Fault = c.net.Wrap(tr)
	en.Hook = &Hook{Transport: en.Fault}
	return nil
}

// Config returns node i's election config as the cluster starts it:
// bootstrap list, timings from Options.Heartbeat, acks of its own transport,
// then Options.Tweak.
func (c *ElectionCluster) Config(i int) election.Config {
	en := c.nodes[i]
	hb := c.opts.Heartbeat
	cfg := election.DefaultConfig()
	cfg.ID, cfg.ClusterID, cfg.DataDir = en.ID, c.clusterID, en.Dir
	cfg.Bootstrap = c.Peers()
	cfg.HeartbeatTimeout = hb
	cfg.ElectionTimeout = hb
	cfg.LeaderLeaseTimeout = hb
	cfg.LeaseDuration = hb * 4 / 5
	cfg.FastFailover = c.opts.FastFailover
	cfg.Logger = c.logger(en.ID)
	cfg.Registerer = en.Registry
	ft := en.Fault
	cfg.Acks = func() map[raft.ServerAddress]election.Ack { return ConvertAcks(ft.Acks()) }
	cfg.ErrPeerClosed, cfg.ErrGoodbye = transport.ErrPeerClosed, transport.ErrGoodbye
	if c.opts.Tweak != nil {
		c.opts.Tweak(&cfg)
	}
	return cfg
}

// ConvertAcks turns the transport's acks into the election's, as package
// node does.
func ConvertAcks(in map[raft.ServerAddress]transport.Ack) map[raft.ServerAddress]election.Ack {
	out := make(map[raft.ServerAddress]election.Ack, len(in))
	for a, k := range in {
		out[a] = election.Ack{SentAt: k.SentAt, RepliedAt: k.RepliedAt, Term: k.Term, LastLog: k.LastLog}
	}
	return out
}

// Start starts node i's election node on its open transport, with a new
// metrics registry and a new state machine (Options.FSM).
func (c *ElectionCluster) Start(i int) *election.Node {
	c.t.Helper()
	en := c.nodes[i]
	if en.Node != nil {
		c.t.Fatalf("start %s: already running", en.ID)
	}
	if en.Transport == nil {
		c.t.Fatalf("start %s: its transport is closed (Restart opens it again)", en.ID)
	}
	en.Registry = prometheus.NewRegistry()
	if c.opts.FSM != nil {
		en.FSM = c.opts.FSM(en.ID)
	} else {
		en.FSM = &LogFSM{}
	}
	n, err := election.New(c.Config(i), en.Hook, en.FSM)
	if err != nil {
		c.t.Fatalf("start %s: %v", en.ID, err)
	}
	en.Node = n
	return n
}

// Kill crashes node i: election Close, then its transport's, so that its
// sockets close as a dead process's would.
func (c *ElectionCluster) Kill(i int) {
	c.t.Helper()
	en := c.nodes[i]
	if en.Node != nil {
		if err := en.Node.Close(); err != nil {
			c.t.Errorf("close %s: %v", en.ID, err)
		}
		en.Node = nil
	}
	c.closeTransport(en)
}

// Shutdown stops node i gracefully (election Shutdown: hand-off, goodbye),
// then closes its transport as the node's owner does.
func (c *ElectionCluster) Shutdown(ctx context.Context, i int) error {
	en := c.nodes[i]
	if en.Node == nil {
		return fmt.Errorf("shutdown %s: not running", en.ID)
	}
	err := en.Node.Shutdown(ctx)
	en.Node = nil
	c.closeTransport(en)
	return err
}

// Forget takes node i, which the test stopped itself (say, with Close),
// out of the running nodes and closes its transport.
func (c *ElectionCluster) Forget(i int) {
	en := c.nodes[i]
	en.Node = nil
	c.closeTransport(en)
}

func (c *ElectionCluster) closeTransport(en *ElectionNode) {
	if en.Transport != nil {
		_ = en.Fault.Close()
		_ = en.Transport.Close()
		en.Transport, en.Fault, en.Hook = nil, nil, nil
	}
}

// Restart brings a killed node back: the same data dir, a new transport
// on the same address. It does not wait for an election.
func (c *ElectionCluster) Restart(i int) *election.Node {
	c.t.Helper()
	en := c.nodes[i]
	if en.Node != nil {
		c.t.Fatalf("restart %s: still running", en.ID)
	}
	// The port was ours a moment ago; rebinding can race the kernel briefly.
	testwait.Eventually(c.t, 5*time.Second, "rebind "+string(en.Addr), func() (bool, string) {
		if err := c.openTransport(en, string(en.Addr)); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	return c.Start(i)
}

func (c *ElectionCluster) closeAll() {
	for i := range c.nodes {
		c.Kill(i)
	}
}

// Node returns node i.
func (c *ElectionCluster) Node(i int) *ElectionNode { return c.nodes[i] }

// Len is the number of nodes, Extra ones included.
func (c *ElectionCluster) Len() int { return len(c.nodes) }

// Peers returns the bootstrap list.
func (c *ElectionCluster) Peers() []election.Peer { return append([]election.Peer(nil), c.peers...) }

// ClusterID is every node's cluster id.
func (c *ElectionCluster) ClusterID() string { return c.clusterID }

// Net is the fault network every transport goes through.
func (c *ElectionCluster) Net() *faultnet.Network { return c.net }

// Isolate cuts node i off from every peer; Heal undoes it.
func (c *ElectionCluster) Isolate(i int) { c.net.Isolate(c.nodes[i].Addr) }

// Heal undoes Isolate (and any cut) for node i.
func (c *ElectionCluster) Heal(i int) { c.net.Heal(c.nodes[i].Addr) }

// Alive returns the indexes of the running nodes.
func (c *ElectionCluster) Alive() []int {
	var out []int
	for i, en := range c.nodes {
		if en.Node != nil {
			out = append(out, i)
		}
	}
	return out
}

// Leader returns the index of the one running node that reports IsLeader,
// or -1 if none or more than one does. It does not wait.
func (c *ElectionCluster) Leader() int {
	found := -1
	for _, i := range c.Alive() {
		if c.nodes[i].Node.Leadership().IsLeader {
			if found >= 0 {
				return -1
			}
			found = i
		}
	}
	return found
}

// WaitLeader waits until exactly one running node reports IsLeader and
// every running member names it with the same fencing token, and returns
// its index. Running nodes not (yet) in the configuration are not asked.
func (c *ElectionCluster) WaitLeader(timeout time.Duration) int {
	c.t.Helper()
	var li int
	testwait.Eventually(c.t, timeout, "one leader known to every member", func() (bool, string) {
		li = c.Leader()
		if li < 0 {
			return false, c.Describe()
		}
		want := c.nodes[li].Node.Leadership()
		members, err := c.nodes[li].Node.Members()
		if err != nil {
			return false, err.Error()
		}
		isMember := map[string]bool{}
		for _, m := range members {
			isMember[m.ID] = true
		}
		for _, i := range c.Alive() {
			if !isMember[c.nodes[i].ID] {
				continue // not joined yet: knows no leader
			}
			l := c.nodes[i].Node.Leadership()
			if l.LeaderID != want.LeaderID || l.FencingToken != want.FencingToken {
				return false, c.Describe()
			}
		}
		return true, ""
	})
	return li
}

// Describe renders every node's view, for failure messages.
func (c *ElectionCluster) Describe() string {
	var b bytes.Buffer
	for i, en := range c.nodes {
		if en.Node == nil {
			fmt.Fprintf(&b, "\n  %d %s: down", i, en.ID)
			continue
		}
		fmt.Fprintf(&b, "\n  %d %s: %+v", i, en.ID, en.Node.Leadership())
	}
	return b.String()
}

// Metric returns the value of a counter or gauge on node i's registry (of
// its latest start); it fails the test if there is none.
func (c *ElectionCluster) Metric(i int, name string) float64 {
	c.t.Helper()
	en := c.nodes[i]
	if en.Registry == nil {
		c.t.Fatalf("metric %s: %s never started", name, en.ID)
	}
	mfs, err := en.Registry.Gather()
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
	c.t.Fatalf("metric %s not found on %s", name, en.ID)
	return 0
}
