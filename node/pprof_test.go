package node_test

import (
	"net/http"
	"testing"

	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
	"github.com/heartbeat-sidecar/heartbeat/node"
)

// TestPprof: /debug/pprof/ is served only with EnablePprof.
func TestPprof(t *testing.T) {
	for _, enabled := range []bool{false, true} {
		c := testcluster.Start(t, 1, testcluster.Options{Wait: waitTimeout, Tweak: func(cfg *node.Config) {
			defaultDetector(cfg)
			cfg.EnablePprof = enabled
		}})
		n := c.Node("n1")
		want := http.StatusNotFound
		if enabled {
			want = http.StatusOK
		}
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap?debug=1", "/debug/pprof/goroutine?debug=1", "/debug/pprof/cmdline"} {
			if code, body := httpDo(t, http.MethodGet, "http://"+n.HTTPAddr()+path); code != want {
				t.Errorf("EnablePprof=%v: GET %s: %d, want %d (%.100s)", enabled, path, code, want, body)
			}
		}
		c.Kill("n1")
	}
}
