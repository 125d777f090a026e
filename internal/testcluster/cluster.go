package testcluster

import (
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/internal/faultnet"
	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
	"github.com/heartbeat-sidecar/heartbeat/membership"
	"github.com/heartbeat-sidecar/heartbeat/node"
	"github.com/heartbeat-sidecar/heartbeat/rpc/transport"
)

// Options shape a Cluster. The zero value is a cluster on ":0" client and
// HTTP ports, without a fault network, waiting up to DefaultWait.
type Options struct {
	// Wait bounds every wait of the cluster (Leader, WaitMembers, Ready).
	// DefaultWait when zero.
	Wait time.Duration
	// FixedClientAddrs reserves a loopback client port for every initial
	// node up front, so that a node started again after Kill listens on
	// the same client address (a sidecar's application finds it again).
	// Otherwise every start takes a new ":0" port.
	FixedClientAddrs bool
	// FaultNet wraps every node's peer transport in one faultnet.Network
	// (node.Config.WrapTransport), for Isolate, Heal and Net.
	FaultNet bool
	// Tweak, when set, is applied last to every node's config, each start.
	Tweak func(*node.Config)
}

// spec is how a node of the cluster starts: enough to start it again.
type spec struct {
	peerAddr   string
	clientAddr string // "127.0.0.1:0" unless reserved
	join       bool   // joins through n1 instead of the initial cluster
	voter      bool   // with join: as a voter
	// cfg, when set, is the node's whole config (StartConfig), used as is.
	cfg *node.Config
}

// Cluster is a set of in-process nodes n1..nN sharing an initial member
// list, plus any node Join added. Every node logs at Warn to the test's
// log. Nodes still running when the test ends are closed (t.Cleanup).
type Cluster struct {
	t      testing.TB
	opts   Options
	dir    string
	peers  []election.Peer
	net    *faultnet.Network // nil without Options.FaultNet
	log    *Writer
	specs  map[string]spec
	nodes  map[string]*node.Node
	closed map[string]bool
}

// Start starts n voters n1..nN with an initial cluster on free loopback
// peer ports and waits until they are Ready: one leader known to all and
// every node registered alive everywhere.
func Start(t testing.TB, n int, opts Options) *Cluster {
	t.Helper()
	c := New(t, n, opts)
	for _, p := range c.peers {
		c.start(p.ID)
	}
	c.Ready()
	return c
}

// New is Start without starting anything: the initial cluster n1..nN is
// set (ports reserved, data dirs named), and the test starts its nodes with
// StartNode, in its own order and time.
func New(t testing.TB, n int, opts Options) *Cluster {
	t.Helper()
	if opts.Wait <= 0 {
		opts.Wait = DefaultWait
	}
	peerAddrs := FreeAddrs(t, n)
	clientAddrs := make([]string, n)
	if opts.FixedClientAddrs {
		clientAddrs = FreeAddrs(t, n)
	} else {
		for i := range clientAddrs {
			clientAddrs[i] = "127.0.0.1:0"
		}
	}
	c := &Cluster{
		t: t, opts: opts, dir: t.TempDir(), log: NewWriter(t),
		specs: map[string]spec{}, nodes: map[string]*node.Node{}, closed: map[string]bool{},
	}
	if opts.FaultNet {
		c.net = faultnet.New()
	}
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("n%d", i+1)
		c.peers = append(c.peers, election.Peer{ID: id, Address: peerAddrs[i], Voter: true})
		c.specs[id] = spec{peerAddr: peerAddrs[i], clientAddr: clientAddrs[i]}
	}
	t.Cleanup(c.stopAll)
	return c
}

// config is node id's config: Config, then its initial cluster or the node
// it joins through, then Options.Tweak.
func (c *Cluster) config(id string, s spec) node.Config {
	if s.cfg != nil {
		return *s.cfg
	}
	cfg := c.Config(id, s.peerAddr)
	cfg.ClientAddr = s.clientAddr
	if s.join {
		cfg.Join = []string{c.peers[0].Address}
		cfg.Voter = s.voter
	} else {
		cfg.InitialCluster = c.peers
	}
	if c.opts.Tweak != nil {
		c.opts.Tweak(&cfg)
	}
	return cfg
}

// Config is the harness's config for node id on peerAddr, with neither an
// initial cluster nor a node to join through: loopback ":0" client and HTTP
// ports, a data dir in the cluster's, lenient timings, the cluster's logger
// and fault network. Options.Tweak is not applied. A test that needs a node
// the cluster does not start itself (another cluster's, a join through a
// follower) edits it and passes it to StartConfig.
func (c *Cluster) Config(id, peerAddr string) node.Config {
	cfg := node.DefaultConfig()
	cfg.ID = id
	cfg.DataDir = filepath.Join(c.dir, id)
	cfg.PeerAddr = peerAddr
	cfg.ClientAddr = "127.0.0.1:0"
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.JoinRetryMax = 500 * time.Millisecond
	// Lenient timing: the test machine is shared and -race is slow; a false
	// election in the middle of a check would fail it for the wrong reason.
	// Crash failover does not wait for this timeout.
	cfg.HeartbeatTimeout = 1500 * time.Millisecond
	// Detector floors a loaded machine cannot trip by accident.
	cfg.Reconciler.Detector.FirstHeartbeatEstimate = 200 * time.Millisecond
	cfg.Reconciler.Detector.MinTimeout = time.Second
	cfg.Reconciler.Detector.MinDeadTimeout = 1500 * time.Millisecond
	cfg.DrainTimeout = 5 * time.Second
	if fn := c.net; fn != nil {
		cfg.WrapTransport = func(tr *transport.Transport) node.PeerTransport { return fn.Wrap(tr) }
	}
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: id, Level: LogLevel(), Output: c.log})
	return cfg
}

// start starts node id from its spec (and its data, if it ran before).
func (c *Cluster) start(id string) *node.Node {
	c.t.Helper()
	s, ok := c.specs[id]
	if !ok {
		c.t.Fatalf("start: unknown node %s", id)
	}
	if n, running := c.nodes[id]; running && !c.closed[id] {
		c.t.Fatalf("start %s: already running (%s)", id, n.ClientAddr())
	}
	n, err := node.New(c.config(id, s))
	if err != nil {
		c.t.Fatalf("start %s: %v", id, err)
	}
	delete(c.closed, id)
	c.nodes[id] = n
	return n
}

// stopAll closes every node still running (registered with t.Cleanup).
func (c *Cluster) stopAll() {
	for id, n := range c.nodes {
		if !c.closed[id] {
			n.Close()
		}
	}
}

// StartNode starts node id of the initial cluster (see New) and returns
// at once; it is Restart by another name, for a first start.
func (c *Cluster) StartNode(id string) *node.Node {
	c.t.Helper()
	return c.start(id)
}

// StartConfig starts node id with cfg as it is (say, from Config, edited)
// and runs it as one of the cluster's nodes: Live, Leader and the cleanup
// see it, Kill and Restart work on it. It does not wait.
func (c *Cluster) StartConfig(id string, cfg node.Config) *node.Node {
	c.t.Helper()
	if _, ok := c.specs[id]; ok {
		c.t.Fatalf("start %s: node exists", id)
	}
	c.specs[id] = spec{peerAddr: cfg.PeerAddr, clientAddr: cfg.ClientAddr, join: true, cfg: &cfg}
	return c.start(id)
}

// Restart starts node id again from its data after Kill (or Forget): on
// the same peer address, and on the same client address with
// Options.FixedClientAddrs, a new one otherwise. It does not wait.
func (c *Cluster) Restart(id string) *node.Node {
	c.t.Helper()
	return c.start(id)
}

// Join starts node id on peerAddr joining through n1's peer address (as a
// voter or not), with no initial cluster; its membership must have been
// added already, or be added by the join loop. It does not wait.
func (c *Cluster) Join(id, peerAddr string, voter bool) *node.Node {
	c.t.Helper()
	if _, ok := c.specs[id]; ok {
		c.t.Fatalf("join: node %s exists", id)
	}
	c.specs[id] = spec{peerAddr: peerAddr, clientAddr: "127.0.0.1:0", join: true, voter: voter}
	return c.start(id)
}

// Kill closes node id abruptly (a crash, to its peers).
func (c *Cluster) Kill(id string) {
	c.t.Helper()
	c.closed[id] = true
	c.Node(id).Close()
}

// Forget takes node id, which the test stopped itself (say, with
// Shutdown after a leave), out of the running nodes: it is not closed
// again and no wait looks at it.
func (c *Cluster) Forget(id string) {
	c.t.Helper()
	c.Node(id)
	c.closed[id] = true
}

// Node returns node id as last started (running or not).
func (c *Cluster) Node(id string) *node.Node {
	c.t.Helper()
	n, ok := c.nodes[id]
	if !ok {
		c.t.Fatalf("unknown node %s", id)
	}
	return n
}

// Peers returns the initial cluster.
func (c *Cluster) Peers() []election.Peer {
	return append([]election.Peer(nil), c.peers...)
}

// Log is the writer the nodes log to: the test's log until it ends.
func (c *Cluster) Log() *Writer { return c.log }

// Net is the fault network every peer transport goes through; nil without
// Options.FaultNet.
func (c *Cluster) Net() *faultnet.Network { return c.net }

// Live returns the running nodes sorted by id.
func (c *Cluster) Live() []*node.Node {
	var out []*node.Node
	for id, n := range c.nodes {
		if !c.closed[id] {
			out = append(out, n)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID() < out[j].ID() })
	return out
}

// Leader waits until every running node names the same leader, and that
// leader claims IsLeader; it returns it.
func (c *Cluster) Leader() *node.Node {
	c.t.Helper()
	var leader *node.Node
	testwait.Eventually(c.t, c.opts.Wait, "one leader known to all", func() (bool, string) {
		leader = nil
		var seen string
		for _, n := range c.Live() {
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

// Followers waits for the Leader and returns the other running nodes,
// sorted by id.
func (c *Cluster) Followers() []*node.Node {
	c.t.Helper()
	leader := c.Leader()
	var out []*node.Node
	for _, n := range c.Live() {
		if n != leader {
			out = append(out, n)
		}
	}
	return out
}

// Follower waits for the Leader and returns the running follower with the
// lowest id whose id is not in not; it fails the test if there is none.
func (c *Cluster) Follower(not ...string) *node.Node {
	c.t.Helper()
	for _, n := range c.Followers() {
		if !slices.Contains(not, n.ID()) {
			return n
		}
	}
	c.t.Fatalf("no follower but %v", not)
	return nil
}

// WaitMembers waits until every running node sees every running node
// registered as alive with its client address.
func (c *Cluster) WaitMembers() {
	c.t.Helper()
	live := c.Live()
	testwait.Eventually(c.t, c.opts.Wait, "every node registered alive everywhere", func() (bool, string) {
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

// WaitSettled waits until the leader's state has wantResources resources,
// every one owned, and its plan wants no move, and every running node has
// applied the leader's revision; it returns the leader's view then.
func (c *Cluster) WaitSettled(wantResources int) membership.View {
	c.t.Helper()
	var v membership.View
	testwait.Eventually(c.t, c.opts.Wait, "assignment settled", func() (bool, string) {
		leader := c.Leader()
		var moves, unowned, total int
		leader.Membership().Read(func(s *membership.State) {
			moves = len(membership.Plan(s, membership.DefaultPlanConfig()).Moves)
			unowned, total = s.NumUnowned(), s.NumResources()
		})
		if total != wantResources || unowned > 0 || moves > 0 {
			return false, fmt.Sprintf("%d resources (want %d), %d unowned, %d planned moves", total, wantResources, unowned, moves)
		}
		v = leader.Membership().View()
		for _, n := range c.Live() {
			if r := n.Membership().Revision(); r < v.Revision {
				return false, fmt.Sprintf("%s at revision %d < %d", n.ID(), r, v.Revision)
			}
		}
		return true, ""
	})
	return v
}

// Ready waits for the Leader, then for WaitMembers: what Start waits for.
func (c *Cluster) Ready() {
	c.t.Helper()
	c.Leader()
	c.WaitMembers()
}

// Endpoints returns the client addresses of the initial nodes with node
// id's first: what an application beside id's sidecar is configured with.
// Without Options.FixedClientAddrs the nodes must be running.
func (c *Cluster) Endpoints(id string) []string {
	c.t.Helper()
	out := []string{c.clientAddr(id)}
	for _, p := range c.peers {
		if p.ID != id {
			out = append(out, c.clientAddr(p.ID))
		}
	}
	return out
}

// clientAddr is node id's reserved client address, or its running one.
func (c *Cluster) clientAddr(id string) string {
	if c.opts.FixedClientAddrs && !c.specs[id].join {
		return c.specs[id].clientAddr
	}
	return c.Node(id).ClientAddr()
}

// Isolate cuts node id off from every peer (its process keeps running).
// It needs Options.FaultNet.
func (c *Cluster) Isolate(id string) {
	c.t.Helper()
	c.mustNet("Isolate").Isolate(raft.ServerAddress(c.Node(id).PeerAddr()))
}

// Heal undoes Isolate (and any cut) for node id. It needs
// Options.FaultNet.
func (c *Cluster) Heal(id string) {
	c.t.Helper()
	c.mustNet("Heal").Heal(raft.ServerAddress(c.Node(id).PeerAddr()))
}

func (c *Cluster) mustNet(op string) *faultnet.Network {
	c.t.Helper()
	if c.net == nil {
		c.t.Fatalf("%s: the cluster has no fault network (Options.FaultNet)", op)
	}
	return c.net
}
