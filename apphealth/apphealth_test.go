package apphealth

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/membership"
	mpb "github.com/heartbeat-sidecar/heartbeat/proto/membershippb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// localMember is a real membership state machine that commits by applying
// at once (a cluster of one without raft): the watcher's Member.
type localMember struct {
	t     *testing.T
	fsm   *membership.FSM
	mu    sync.Mutex
	index uint64
}

func newLocalMember(t *testing.T, id string) *localMember {
	f, err := membership.NewFSM(membership.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	m := &localMember{t: t, fsm: f}
	if _, err := m.Commit(context.Background(), membership.UpsertMemberCmd(membership.MemberSpec{ID: id, PeerAddr: "127.0.0.1:1", Voter: true})); err != nil {
		t.Fatal(err)
	}
	return m
}

func (m *localMember) Apply(_ context.Context, data []byte) (any, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.index++
	return m.fsm.ApplyCommand(m.index, data), nil
}

func (m *localMember) Commit(ctx context.Context, cmd *mpb.Command) (*membership.Result, error) {
	return membership.Commit(ctx, m, cmd)
}

func (m *localMember) SelfMember() (membership.Member, bool) {
	var r membership.Member
	var ok bool
	m.fsm.Read(func(s *membership.State) { r, ok = s.Member("n1") })
	return r, ok
}

// leader is a leadership that can be switched, counting hand-offs.
type leader struct {
	leads     atomic.Bool
	transfers atomic.Int32
}

func (l *leader) Leadership() election.Leadership {
	return election.Leadership{IsLeader: l.leads.Load(), LeaderID: "n1"}
}

func (l *leader) TransferLeadership(context.Context, string) (election.Leadership, error) {
	l.transfers.Add(1)
	return election.Leadership{}, nil
}

func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %s", what, why)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// run starts w and stops it at the test's end.
func run(t *testing.T, w *Watcher) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func appHealthy(m *localMember, want bool) func() (bool, string) {
	return func() (bool, string) {
		r, _ := m.SelfMember()
		return r.AppHealthy == want, fmt.Sprintf("%+v", r)
	}
}

// TestPush: a push keeps the application healthy for its TTL; the lapse is
// recorded at once, and a leader hands leadership off while unhealthy; a
// new push records it healthy again.
func TestPush(t *testing.T) {
	m := newLocalMember(t, "n1")
	l := &leader{}
	l.leads.Store(true)
	w, err := New(Config{SelfID: "n1"}, m, l)
	if err != nil {
		t.Fatal(err)
	}
	w.Push(300 * time.Millisecond)
	run(t, w)
	if r, _ := m.SelfMember(); !r.AppHealthy {
		t.Fatalf("healthy from the start: %+v", r)
	}
	waitFor(t, "the lapse recorded", appHealthy(m, false))
	waitFor(t, "a leadership hand-off", func() (bool, string) { return l.transfers.Load() > 0, "" })
	w.Push(time.Minute)
	waitFor(t, "healthy again", appHealthy(m, true))
}

// TestPull: the polled URL decides, a 2xx being healthy; a follower hands
// nothing off.
func TestPull(t *testing.T) {
	var ok atomic.Bool
	ok.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !ok.Load() {
			http.Error(w, "sick", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	m := newLocalMember(t, "n1")
	l := &leader{}
	w, err := New(Config{SelfID: "n1", URL: srv.URL + "/health", Interval: 50 * time.Millisecond}, m, l)
	if err != nil {
		t.Fatal(err)
	}
	run(t, w)
	ok.Store(false)
	waitFor(t, "unhealthy recorded", appHealthy(m, false))
	ok.Store(true)
	waitFor(t, "healthy recorded", appHealthy(m, true))
	if n := l.transfers.Load(); n != 0 {
		t.Errorf("a follower handed leadership off %d times", n)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", Config{SelfID: "n1"}, true},
		{"no id", Config{}, false},
		{"poll too often", Config{SelfID: "n1", URL: "http://127.0.0.1:1/", Interval: time.Millisecond}, false},
		{"remote URL", Config{SelfID: "n1", URL: "http://example.com/"}, false},
		{"own host", Config{SelfID: "n1", URL: "http://10.0.0.5:8080/", OwnAddrs: []string{"10.0.0.5:7400"}}, true},
	} {
		c := tc.cfg
		if err := c.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: %v, want ok=%v", tc.name, err, tc.ok)
		}
		if tc.ok && c.Interval != time.Second && tc.cfg.Interval == 0 {
			t.Errorf("%s: Interval not defaulted: %v", tc.name, c.Interval)
		}
	}
}

func TestCheckURL(t *testing.T) {
	own := []string{"10.0.0.5:7400", "0.0.0.0:7401"}
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"http://127.0.0.1:8080/health", true},
		{"http://localhost:8080/health", true},
		{"http://[::1]:8080/health", true},
		{"http://10.0.0.5:8080/health", true},
		{"https://127.0.0.1:8080/health", false},
		{"http://example.com/health", false},
		{"http://10.0.0.6:8080/health", false},
		{"http://0.0.0.0:8080/health", false},
		{"http://user:pw@127.0.0.1/", false},
		{"file:///etc/passwd", false},
		{"::bad", false},
	} {
		err := CheckURL(tc.url, own...)
		if (err == nil) != tc.ok {
			t.Errorf("%q: %v, want ok=%v", tc.url, err, tc.ok)
		}
	}
}
