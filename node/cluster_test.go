package node_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
	"github.com/heartbeat-sidecar/heartbeat/node"
)

// The cluster tests of package node are external (package node_test) so
// that they can run on internal/testcluster, which imports node; what they
// need of node's internals, export_test.go hands them. TestMain is in
// helpers_test.go.

// waitTimeout bounds the waits and calls of these tests: generous, the
// machine is shared and -race is slow.
const waitTimeout = 20 * time.Second

// startMemCluster starts voters n1..n<voters> from an initial cluster,
// waits for them to be Ready, and starts non-voters joining through n1.
func startMemCluster(t *testing.T, voters, nonVoters int) *testcluster.Cluster {
	t.Helper()
	return startCluster(t, voters, nonVoters, testcluster.Options{})
}

// startCluster is startMemCluster with options (the cluster's Wait is
// waitTimeout).
func startCluster(t *testing.T, voters, nonVoters int, opts testcluster.Options) *testcluster.Cluster {
	t.Helper()
	opts.Wait = waitTimeout
	c := testcluster.Start(t, voters, opts)
	if nonVoters > 0 {
		addrs := testcluster.FreeAddrs(t, nonVoters)
		for i, addr := range addrs {
			c.Join(fmt.Sprintf("n%d", voters+i+1), addr, false)
		}
	}
	return c
}

// defaultDetector undoes the harness's failure-detector floors: the node's
// defaults, for the tests that ran with them.
func defaultDetector(cfg *node.Config) {
	cfg.Reconciler.Detector = node.DefaultConfig().Reconciler.Detector
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

// ctxT returns a context that ends with the test or after waitTimeout.
func ctxT(t *testing.T) context.Context {
	return testcluster.ContextWithin(t, waitTimeout)
}
