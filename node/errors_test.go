package node

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
)

// TestStartErrors: the mistakes an operator makes at start each give a clear
// error, and a failed New leaves nothing running (goleak checks).
func TestStartErrors(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, "n1", "127.0.0.1:0", dir)
	n1, err := New(cfg) // a cluster of one
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n1.Close() })
	testwait.Eventually(t, waitTimeout, "single node ready", func() (bool, string) {
		ok, why := n1.Ready()
		return ok, strings.Join(why, "; ")
	})
	// Ready does not wait for the leader lease (its first quorum-acknowledged
	// heartbeat round comes a moment after the win); the claim follows it.
	testwait.Eventually(t, waitTimeout, "single node claims its lease", func() (bool, string) {
		s := n1.Status()
		return s.IsLeader, s.State
	})
	if s := n1.Status(); s.Leader.Address != n1.PeerAddr() {
		t.Errorf("single node status %+v", s)
	}

	// A port in use.
	busy := testConfig(t, "n2", "127.0.0.1:0", dir)
	busy.HTTPAddr = n1.HTTPAddr()
	if _, err := New(busy); err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("HTTP port in use: %v", err)
	}
	// A data dir in use by a running node.
	same := testConfig(t, "n1", "127.0.0.1:0", dir)
	if _, err := New(same); !errors.Is(err, election.ErrDataDirLocked) {
		t.Errorf("data dir in use: %v, want ErrDataDirLocked", err)
	}
	// An open gRPC health Watch (which health.Shutdown does not end) must
	// not hold up Shutdown, even with a context that never ends.
	hctx, hcancel := context.WithCancel(context.Background())
	defer hcancel()
	hw, err := healthpb.NewHealthClient(dialClient(t, n1.ClientAddr())).Watch(hctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hw.Recv(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := n1.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > clientDrainTimeout+5*time.Second {
		t.Errorf("Shutdown with an open health watch took %v", d)
	}
	// The data dir of another cluster.
	other := testConfig(t, "n1", "127.0.0.1:0", dir)
	other.ClusterID = "other"
	if _, err := New(other); !errors.Is(err, election.ErrClusterMismatch) {
		t.Errorf("data dir of another cluster: %v, want ErrClusterMismatch", err)
	}
	// The same data dir restarts as the same node and leads again.
	again, err := New(testConfig(t, "n1", "127.0.0.1:0", dir))
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- again.Run(ctx) }()
	testwait.Eventually(t, waitTimeout, "restarted node leads", func() (bool, string) {
		s := again.Status()
		return s.IsLeader && s.FencingToken > 0, s.State
	})
	// Run returns nil after a clean stop once its context ends.
	cancel()
	if err := <-runErr; err != nil {
		t.Errorf("Run after cancel: %v", err)
	}
	if code, _ := httpGetStatus("http://" + again.HTTPAddr() + "/healthz"); code != 0 {
		t.Errorf("HTTP answers after Run returned: %d", code)
	}
}

// httpGetStatus returns the status code, or 0 when nothing answers.
func httpGetStatus(url string) (int, error) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestJoinSameID: a second node with the id of a member (at another address)
// is refused for good.
func TestJoinSameID(t *testing.T) {
	dir := t.TempDir()
	n1, err := New(testConfig(t, "n1", "127.0.0.1:0", dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n1.Close() })
	testwait.Eventually(t, waitTimeout, "n1 leads", func() (bool, string) { return n1.Status().IsLeader, n1.Status().State })

	dup := testConfig(t, "n1", "127.0.0.1:0", t.TempDir())
	dup.Join = []string{n1.PeerAddr()}
	d, err := New(dup)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	err = d.Run(ctx)
	if !errors.Is(err, ErrJoinRefused) || !strings.Contains(err.Error(), "AlreadyExists") {
		t.Errorf("join with a taken id: %v, want ErrJoinRefused (AlreadyExists)", err)
	}
}
