package node

// Helpers of the internal tests of package node: the single-node tests
// (errors_test.go, apphealth_test.go, config_test.go), which need node's
// internals and start one node from testConfig. The cluster tests are
// external (package node_test) on internal/testcluster; see cluster_test.go.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitTimeout is generous: the machine is shared and -race is slow.
const waitTimeout = 20 * time.Second

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

// registerN registers count resources prefix-000... through n's
// Coordinator.
func registerN(t *testing.T, n *Node, prefix string, count int) {
	t.Helper()
	req := &heartbeatpb.RegisterResourcesRequest{}
	for i := 0; i < count; i++ {
		req.Resources = append(req.Resources, &heartbeatpb.ResourceSpec{Id: fmt.Sprintf("%s-%03d", prefix, i), Weight: uint32(1 + i%3)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := heartbeatpb.NewCoordinatorClient(dialClient(t, n.ClientAddr())).RegisterResources(ctx, req); err != nil {
		t.Fatalf("register %d resources via %s: %v", count, n.ID(), err)
	}
}
