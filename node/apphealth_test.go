package node

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
	"github.com/heartbeat-sidecar/heartbeat/membership"
)

// TestAppHealthPull: a single node polls its application's health URL; a
// failing answer records the application unhealthy, a good one healthy again.
// (Alone, it keeps its resources while unhealthy: nobody else can take them.
// The cluster test shows an unhealthy node's resources moving away.)
func TestAppHealthPull(t *testing.T) {
	var healthy atomic.Bool
	healthy.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if healthy.Load() {
			fmt.Fprintln(w, "ok")
			return
		}
		http.Error(w, "sick", http.StatusServiceUnavailable)
	}))
	defer srv.Close()

	cfg := testConfig(t, "n1", "127.0.0.1:0", t.TempDir())
	cfg.AppHealthURL = srv.URL + "/health"
	cfg.AppHealthInterval = 50 * time.Millisecond
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	state := func() (bool, string) {
		m, ok := n.selfMember()
		return ok, fmt.Sprintf("%+v", m)
	}
	testwait.Eventually(t, waitTimeout, "registered", state)
	registerN(t, n, "p", 10)
	testwait.Eventually(t, waitTimeout, "healthy and owning", func() (bool, string) {
		m, _ := n.selfMember()
		return m.AppHealthy && n.numOwned("n1") == 10, fmt.Sprintf("%+v owns %d", m, n.numOwned("n1"))
	})
	healthy.Store(false)
	testwait.Eventually(t, waitTimeout, "unhealthy", func() (bool, string) {
		m, _ := n.selfMember()
		return !m.AppHealthy, fmt.Sprintf("%+v", m)
	})
	_, body := httpDo(t, "GET", "http://"+n.HTTPAddr()+"/metrics")
	if !strings.Contains(body, "heartbeat_membership_self_app_healthy 0") {
		t.Error("/metrics does not report the unhealthy application")
	}
	healthy.Store(true)
	testwait.Eventually(t, waitTimeout, "healthy and owning again", func() (bool, string) {
		m, _ := n.selfMember()
		return m.AppHealthy && n.numOwned("n1") == 10 && m.State == membership.StateAlive, fmt.Sprintf("%+v owns %d", m, n.numOwned("n1"))
	})
}

func TestConfigAppHealth(t *testing.T) {
	cfg := testConfig(t, "n1", "127.0.0.1:0", t.TempDir())
	cfg.AppHealthURL = "http://example.com/"
	if err := cfg.Validate(); err == nil {
		t.Error("a non-local health URL was accepted")
	}
	cfg.AppHealthURL = "http://127.0.0.1:1/"
	cfg.AppHealthInterval = time.Millisecond
	if err := cfg.Validate(); err == nil {
		t.Error("a 1ms poll interval was accepted")
	}
}
