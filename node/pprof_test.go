package node

import (
	"net/http"
	"testing"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/internal/testport"
)

// TestPprof: /debug/pprof/ is served only with EnablePprof.
func TestPprof(t *testing.T) {
	for _, enabled := range []bool{false, true} {
		addrs := testport.Addrs(t, 1)
		c := &cluster{t: t, dir: t.TempDir(), nodes: map[string]*Node{}, tweak: func(cfg *Config) { cfg.EnablePprof = enabled }}
		c.peers = []election.Peer{{ID: "n1", Address: addrs[0], Voter: true}}
		n := c.start("n1")
		want := http.StatusNotFound
		if enabled {
			want = http.StatusOK
		}
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap?debug=1", "/debug/pprof/goroutine?debug=1", "/debug/pprof/cmdline"} {
			if code, body := httpDo(t, http.MethodGet, "http://"+n.HTTPAddr()+path); code != want {
				t.Errorf("EnablePprof=%v: GET %s: %d, want %d (%.100s)", enabled, path, code, want, body)
			}
		}
		c.stopAll()
	}
}
