package node

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/heartbeat-sidecar/heartbeat/election"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitTimeout is generous: the machine is shared and -race is slow.
const waitTimeout = 20 * time.Second

// waitFor polls cond every 20ms until it holds or the deadline passes; the
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

// testConfig is a node config on loopback ":0" client ports with a data
// dir under dir.
func testConfig(t *testing.T, id, peerAddr, dir string) Config {
	cfg := DefaultConfig()
	cfg.ID = id
	cfg.DataDir = filepath.Join(dir, id)
	cfg.PeerAddr = peerAddr
	cfg.ClientAddr = "127.0.0.1:0"
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.JoinRetryMax = 500 * time.Millisecond
	// Lenient timing: the test machine is shared and -race is slow; a false
	// election in the middle of a check would fail it for the wrong reason.
	// Crash failover does not wait for this timeout.
	cfg.HeartbeatTimeout = 1500 * time.Millisecond
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: t.Name(), Level: hclog.Warn, Output: testWriter{t}})
	return cfg
}

// testWriter sends logs to t.Log (so they show only for failing tests).
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
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

// httpClient has no keep-alives, so no idle connection outlives a test.
var httpClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func httpDo(t *testing.T, method, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func dialClient(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}
