package node

// The internal cluster harness of package node, kept ONLY for
// node/http_*_test.go: those are internal tests (package node), which cannot
// import internal/testcluster (it imports node), and they are being replaced
// by the gateway package's tests. Delete this file with them; every other
// cluster test of node runs on internal/testcluster (package node_test).

import (
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/internal/faultnet"
	"github.com/heartbeat-sidecar/heartbeat/internal/testport"
	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
	"github.com/heartbeat-sidecar/heartbeat/membership"
	"github.com/heartbeat-sidecar/heartbeat/rpc/transport"
)

// waitFor is testwait.Eventually bounded by waitTimeout, under the name
// node/http_*_test.go call it by.
func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	testwait.Eventually(t, waitTimeout, what, cond)
}

// cluster is a set of in-process nodes sharing an initial member list.
type cluster struct {
	t     *testing.T
	dir   string
	peers []election.Peer
	nodes map[string]*Node
	tweak func(*Config) // optional, applied to every node's config
}

func (c *cluster) start(id string) *Node {
	c.t.Helper()
	var addr string
	for _, p := range c.peers {
		if p.ID == id {
			addr = p.Address
		}
	}
	cfg := testConfig(c.t, id, addr, c.dir)
	cfg.InitialCluster = c.peers
	if c.tweak != nil {
		c.tweak(&cfg)
	}
	n, err := New(cfg)
	if err != nil {
		c.t.Fatalf("start %s: %v", id, err)
	}
	c.nodes[id] = n
	return n
}

// stopAll closes every node still running (registered with t.Cleanup).
func (c *cluster) stopAll() {
	for _, n := range c.nodes {
		n.Close()
	}
}

// leader waits for every running node to name the same leader that claims
// IsLeader, and returns it.
func (c *cluster) leader() *Node {
	c.t.Helper()
	var leader *Node
	waitFor(c.t, "one leader known to all", func() (bool, string) {
		leader = nil
		var seen string
		for id, n := range c.nodes {
			if n.stopped.Load() {
				continue
			}
			s := n.Status()
			if s.Leader.ID == "" {
				return false, id + " knows no leader"
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

func (c *cluster) follower(not ...string) *Node {
	skip := map[string]bool{}
	for _, s := range not {
		skip[s] = true
	}
	for id, n := range c.nodes {
		if !n.stopped.Load() && !n.Status().IsLeader && !skip[id] {
			return n
		}
	}
	c.t.Fatal("no follower")
	return nil
}

// memTweak sets detector floors that a loaded, -race test machine cannot
// trip by accident (a real death is still seen in about two seconds).
func memTweak(cfg *Config) {
	cfg.Reconciler.Detector.FirstHeartbeatEstimate = 200 * time.Millisecond
	cfg.Reconciler.Detector.MinTimeout = time.Second
	cfg.Reconciler.Detector.MinDeadTimeout = 1500 * time.Millisecond
	cfg.DrainTimeout = 5 * time.Second
}

// startMemCluster starts voters n1..n<voters> from an initial cluster plus
// non-voters joining through n1.
func startMemCluster(t *testing.T, voters, nonVoters int) *cluster {
	addrs := testport.Addrs(t, voters+nonVoters)
	c := &cluster{t: t, dir: t.TempDir(), nodes: map[string]*Node{}, tweak: memTweak}
	for i := 0; i < voters; i++ {
		c.peers = append(c.peers, election.Peer{ID: fmt.Sprintf("n%d", i+1), Address: addrs[i], Voter: true})
	}
	t.Cleanup(c.stopAll)
	for _, p := range c.peers {
		c.start(p.ID)
	}
	for i := 0; i < nonVoters; i++ {
		c.join(fmt.Sprintf("n%d", voters+i+1), addrs[voters+i], false)
	}
	return c
}

// join starts a node that joins through the first initial member.
func (c *cluster) join(id, addr string, voter bool) *Node {
	c.t.Helper()
	cfg := testConfig(c.t, id, addr, c.dir)
	cfg.Join = []string{c.peers[0].Address}
	cfg.Voter = voter
	if c.tweak != nil {
		c.tweak(&cfg)
	}
	n, err := New(cfg)
	if err != nil {
		c.t.Fatalf("start %s: %v", id, err)
	}
	c.nodes[id] = n
	return n
}

// live returns the running nodes sorted by id.
func (c *cluster) live() []*Node {
	var out []*Node
	for _, n := range c.nodes {
		if !n.stopped.Load() {
			out = append(out, n)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID() < out[j].ID() })
	return out
}

// waitMembers waits until every running node sees every running node
// registered as alive.
func (c *cluster) waitMembers() {
	c.t.Helper()
	live := c.live()
	waitFor(c.t, "every node registered alive everywhere", func() (bool, string) {
		for _, n := range live {
			v := n.Membership().View()
			for _, m := range live {
				mm, ok := findMember(v, m.ID())
				if !ok || mm.State != membership.StateAlive || mm.ClientAddr != m.ClientAddr() {
					return false, fmt.Sprintf("%s sees %s as %+v", n.ID(), m.ID(), mm)
				}
			}
		}
		return true, ""
	})
}

func findMember(v membership.View, id string) (membership.Member, bool) {
	for _, m := range v.Members {
		if m.ID == id {
			return m, true
		}
	}
	return membership.Member{}, false
}

// startFaultCluster is startMemCluster (voters only) with every node's peer
// transport wrapped by one fault network.
func startFaultCluster(t *testing.T, voters int) (*cluster, *faultnet.Network) {
	fn := faultnet.New()
	addrs := testport.Addrs(t, voters)
	c := &cluster{t: t, dir: t.TempDir(), nodes: map[string]*Node{}, tweak: func(cfg *Config) {
		memTweak(cfg)
		cfg.WrapTransport = func(tr *transport.Transport) PeerTransport { return fn.Wrap(tr) }
	}}
	for i := 0; i < voters; i++ {
		c.peers = append(c.peers, election.Peer{ID: fmt.Sprintf("n%d", i+1), Address: addrs[i], Voter: true})
	}
	t.Cleanup(c.stopAll)
	for _, p := range c.peers {
		c.start(p.ID)
	}
	return c, fn
}
