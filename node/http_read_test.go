package node

import (
	"net/http"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

// getWithHeaders GETs url and returns the status, body and headers.
func getWithHeaders(t *testing.T, url string) (int, string, http.Header) {
	t.Helper()
	resp, err := httpClient.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, b.String(), resp.Header
}

// TestHTTPReadModes: every HTTP read is consistent by default (it sees a
// write acknowledged through another node just before, and says so in its
// headers), stale when asked (?stale, ?consistency=stale) and marked so; a
// bad mode is 400; a follower cut off from the leader answers a consistent
// read 503 with a reason, never its old state, and a stale one 200 with
// X-Heartbeat-Known-Leader false once it has lost the leader.
func TestHTTPReadModes(t *testing.T) {
	c, fnet := startFaultCluster(t, 3)
	leader := c.leader()
	c.waitMembers()
	f := c.follower()
	lbase, fbase := "http://"+leader.HTTPAddr(), "http://"+f.HTTPAddr()
	reads := []string{"/v1/status", "/v1/members", "/v1/resources", "/v1/resources/seen", "/v1/assignments", "/v1/leader"}

	if code, body := httpBody(t, "PUT", lbase+"/v1/resources/seen", ""); code != 200 {
		t.Fatalf("PUT: %d %s", code, body)
	}
	for _, path := range reads {
		code, body, h := getWithHeaders(t, fbase+path)
		if code != 200 || h.Get("X-Heartbeat-Consistent") != "true" || h.Get("X-Heartbeat-Known-Leader") != "true" ||
			h.Get("X-Heartbeat-Revision") == "" || h.Get("X-Heartbeat-Last-Contact-Ms") == "" {
			t.Errorf("consistent GET %s on a follower: %d %v %s", path, code, h, body)
		}
		if path == "/v1/resources" && !strings.Contains(body, `"seen"`) {
			t.Errorf("a consistent listing on a follower misses a write acknowledged before it: %s", body)
		}
		for _, q := range []string{"?stale", "?stale=true", "?consistency=stale"} {
			code, body, h := getWithHeaders(t, fbase+path+q)
			if code != 200 || h.Get("X-Heartbeat-Consistent") != "false" {
				t.Errorf("GET %s%s: %d consistent=%q %s", path, q, code, h.Get("X-Heartbeat-Consistent"), body)
			}
		}
		for _, q := range []string{"?consistency=sometimes", "?stale=maybe"} {
			if code, body, _ := getWithHeaders(t, fbase+path+q); code != 400 {
				t.Errorf("GET %s%s: %d %s, want 400", path, q, code, body)
			}
		}
	}

	fnet.Isolate(raft.ServerAddress(f.PeerAddr()))
	waitFor(t, f.ID()+" loses the leader", func() (bool, string) {
		l := f.el.Leadership()
		return l.LeaderID == "", "still follows " + l.LeaderID
	})
	for _, path := range reads {
		if code, body, _ := getWithHeaders(t, fbase+path); code != 503 || !strings.Contains(body, "leader") {
			t.Errorf("consistent GET %s on a cut-off follower: %d %s, want 503 naming the missing leader", path, code, body)
		}
		code, body, h := getWithHeaders(t, fbase+path+"?stale")
		if path == "/v1/leader" || path == "/v1/status" || path == "/v1/members" || path == "/v1/resources" {
			if code != 200 || h.Get("X-Heartbeat-Known-Leader") != "false" || h.Get("X-Heartbeat-Consistent") != "false" {
				t.Errorf("stale GET %s on a cut-off follower: %d %v %s", path, code, h, body)
			}
		}
	}
	fnet.Heal(raft.ServerAddress(f.PeerAddr()))
}
