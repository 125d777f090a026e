package client

// Test helpers: in-process Heartbeat nodes over loopback gRPC come from
// internal/testcluster (every peer transport through one fault network);
// here, a client over chosen nodes.

import (
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"

	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
	"github.com/heartbeat-sidecar/heartbeat/node"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitTimeout bounds the tests' own waits, as it does the cluster's.
const waitTimeout = testcluster.DefaultWait

// startCluster starts n voters behind a fault network and waits until they
// are ready (a leader, every membership record); tweak, when given, is
// applied to every node's config.
func startCluster(t *testing.T, n int, tweak ...func(*node.Config)) *testcluster.Cluster {
	t.Helper()
	opts := testcluster.Options{FaultNet: true}
	if len(tweak) > 0 {
		opts.Tweak = tweak[0]
	}
	return testcluster.Start(t, n, opts)
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
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "client", Level: hclog.Debug, Output: testcluster.NewWriter(t)})
	cl, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	return testcluster.FreeAddrs(t, 1)[0]
}
