package bench

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

func ownPID() int { return os.Getpid() }

// fakeNode serves /v1/status with the leader it is told; "" makes it answer 503.
func fakeNode(t *testing.T, id string, leader *atomic.Value) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/status" {
			http.NotFound(w, r)
			return
		}
		l := leader.Load().(string)
		if l == "" {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		state := "follower"
		if l == id {
			state = "leader"
		}
		writeProto(w, &heartbeatpb.GetStatusResponse{NodeId: id, State: heartbeatpb.RaftStateOf(state), Term: 4, Leader: &heartbeatpb.NodeRef{NodeId: l}})
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestPollerRecordsAndWaits(t *testing.T) {
	var leader atomic.Value
	leader.Store("n1")
	var targets []Target
	for _, id := range []string{"n1", "n2", "n3"} {
		srv := fakeNode(t, id, &leader)
		targets = append(targets, Target{ID: id, HTTPAddr: strings.TrimPrefix(srv.URL, "http://")})
	}
	p := NewPoller(targets, 2*time.Millisecond, time.Second)
	defer p.Close()
	ids := []string{"n1", "n2", "n3"}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.WaitFor(ctx, func(l map[string]Sample) bool { got, ok := StableLeader(ids, l); return ok && got == "n1" }); err != nil {
		t.Fatal(err)
	}
	resetAt := time.Now()
	p.Reset()
	leader.Store("") // every node answers 503: failed samples
	if err := p.WaitFor(ctx, func(l map[string]Sample) bool { return !l["n2"].OK && !l["n3"].OK }); err != nil {
		t.Fatal(err)
	}
	leader.Store("n3")
	if err := p.WaitFor(ctx, func(l map[string]Sample) bool { got, ok := StableLeader(ids, l); return ok && got == "n3" }); err != nil {
		t.Fatal(err)
	}
	var failed, okN3 int
	firstFail := map[string]time.Time{}
	older := map[string]int{}
	for _, s := range p.Samples() { // recorded in arrival order
		if s.At.Before(resetAt) {
			older[s.Node]++ // only the latest sample at Reset is kept
			if older[s.Node] > 1 {
				t.Errorf("second sample from before Reset: %+v", s)
			}
		}
		switch {
		case !s.OK:
			failed++
			if firstFail[s.Node].IsZero() {
				firstFail[s.Node] = s.At
			}
		case s.Status.Leader.ID == "n3" && s.Status.Term == 4:
			okN3++
		case s.Status.Leader.ID == "n1" && !firstFail[s.Node].IsZero():
			// A poll in flight at Reset may still name n1, but never after that node failed.
			t.Errorf("stale sample after a failure: %+v", s)
		}
	}
	if failed == 0 || okN3 == 0 {
		t.Errorf("after Reset: %d failed, %d naming n3; want both > 0", failed, okN3)
	}

	short, cancelShort := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancelShort()
	if err := p.WaitFor(short, func(map[string]Sample) bool { return false }); err == nil {
		t.Error("WaitFor on a condition that never holds returned nil")
	}
}

func TestFetchStatusTimesOut(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-block }))
	defer srv.Close()
	defer close(block)
	c := NewStatusClient(50 * time.Millisecond)
	defer c.CloseIdleConnections()
	start := time.Now()
	if _, err := FetchStatus(context.Background(), c, strings.TrimPrefix(srv.URL, "http://")); err == nil {
		t.Fatal("a stopped node's poll did not fail")
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("timeout took %v", time.Since(start))
	}
}
