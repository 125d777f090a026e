package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
)

func TestConfigValidate(t *testing.T) {
	ok := DefaultConfig()
	ok.Endpoints = []string{"127.0.0.1:7401", "127.0.0.1:7411"}
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string // substring of the error; "" = valid
	}{
		{"defaults with endpoints", func(*Config) {}, ""},
		{"zero durations take defaults", func(c *Config) { c.DialTimeout, c.CallTimeout, c.RetryBackoff = 0, 0, Backoff{} }, ""},
		{"no endpoints", func(c *Config) { c.Endpoints = nil }, "Endpoints is empty"},
		{"no port", func(c *Config) { c.Endpoints = []string{"127.0.0.1"} }, "Endpoints[0]"},
		{"port 0", func(c *Config) { c.Endpoints = []string{"127.0.0.1:0"} }, "non-zero port"},
		{"no host", func(c *Config) { c.Endpoints = []string{":7401"} }, "with a host"},
		{"duplicate", func(c *Config) { c.Endpoints = []string{"a:1", "b:2", "a:1"} }, "listed twice"},
		{"negative timeout", func(c *Config) { c.CallTimeout = -time.Second }, "negative"},
		{"negative backoff", func(c *Config) { c.RetryBackoff.Min = -1 }, "negative"},
		{"backoff min above max", func(c *Config) { c.RetryBackoff = Backoff{Min: 2 * time.Second, Max: time.Second} }, "above Max"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			cfg.Endpoints = append([]string(nil), ok.Endpoints...)
			tt.mutate(&cfg)
			err := cfg.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				cl, err := New(cfg)
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if cl.cfg.CallTimeout <= 0 || cl.cfg.DialTimeout <= 0 || cl.cfg.RetryBackoff.Min <= 0 || cl.cfg.RetryBackoff.Max < cl.cfg.RetryBackoff.Min {
					t.Errorf("defaults not applied: %+v", cl.cfg)
				}
				cl.Close()
				return
			}
			if err == nil || !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want ErrInvalidConfig mentioning %q", err, tt.want)
			}
			if _, err := New(cfg); !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("New = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

// TestClosed: after Close, calls fail with ErrClosed at once and watch
// channels are closed.
func TestClosed(t *testing.T) {
	cl := newClientAt(t, deadAddr(t))
	if err := cl.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := testcluster.Context(t)
	if _, err := cl.Register(ctx, ResourceSpec{ID: "x"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Register after Close = %v, want ErrClosed", err)
	}
	if _, ok := <-cl.WatchLeader(ctx); ok {
		t.Error("WatchLeader after Close delivered an event")
	}
	if err := cl.RunWhileLeader(ctx, func(context.Context, uint64) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Errorf("RunWhileLeader after Close = %v, want ErrClosed", err)
	}
}

// TestDeadEndpoints: with every endpoint dead, a write retries until its
// context ends and then fails with the context's error and the last
// Unavailable, without hanging; a watch on dead endpoints ends with its
// context.
func TestDeadEndpoints(t *testing.T) {
	cl := newClientAt(t, deadAddr(t), deadAddr(t))
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := cl.Register(ctx, ResourceSpec{ID: "r"})
	elapsed := time.Since(start)
	if err == nil {
		t.Fatal("Register with every endpoint dead succeeded")
	}
	if c := status.Code(err); c != codes.Unavailable && c != codes.DeadlineExceeded {
		t.Errorf("code %v (%v), want Unavailable or DeadlineExceeded", c, err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v does not wrap context.DeadlineExceeded", err)
	}
	if elapsed < time.Second || elapsed > 5*time.Second {
		t.Errorf("gave up after %v, want about the context's 1.5s", elapsed)
	}

	// StepDown (not repeated after an unknown outcome) still moves past
	// endpoints it cannot connect to, and ends with ctx too.
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Second)
	defer cancel2()
	if _, err := cl.StepDown(ctx2); status.Code(err) != codes.Unavailable && status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("StepDown on dead endpoints = %v", err)
	}

	wctx, wcancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer wcancel()
	ch := cl.WatchLeader(wctx)
	for ev := range ch {
		t.Errorf("watch on dead endpoints delivered %+v", ev)
	}
}

// TestCalls exercises the unary calls against a real 3-node cluster.
func TestCalls(t *testing.T) {
	c := startCluster(t, 3)
	leader := c.Leader()
	fs := c.Followers()
	f1, f2 := fs[0], fs[1]
	ctx := testcluster.Context(t)

	t.Run("status and leader", func(t *testing.T) {
		lc := newClient(t, leader)
		s, err := lc.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if s.ID != leader.ID() || !s.IsLeader || s.FencingToken == 0 || s.LeaseUntil.IsZero() {
			t.Errorf("leader's status %+v", s)
		}
		if ok, err := lc.IsLeader(ctx); err != nil || !ok {
			t.Errorf("IsLeader on the leader's client = %v, %v", ok, err)
		}
		l, err := lc.Leader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if l.ID != leader.ID() || !l.LocalLeads() || l.FencingToken != s.FencingToken || l.ClientAddress != leader.ClientAddr() {
			t.Errorf("Leader() on the leader = %+v (want id %s, token %d, client %s)", l, leader.ID(), s.FencingToken, leader.ClientAddr())
		}

		fc := newClient(t, f1)
		if ok, err := fc.IsLeader(ctx); err != nil || ok {
			t.Errorf("IsLeader on a follower's client = %v, %v", ok, err)
		}
		fl, err := fc.Leader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if fl.ID != leader.ID() || fl.IsSelf || !fl.Local || fl.Endpoint != f1.ClientAddr() || fl.ClientAddress != leader.ClientAddr() {
			t.Errorf("Leader() on a follower = %+v", fl)
		}
		if id, err := fc.LocalID(ctx); err != nil || id != f1.ID() {
			t.Errorf("LocalID = %q, %v; want %s", id, err, f1.ID())
		}
		ms, err := fc.Members(ctx)
		if err != nil || len(ms) != 3 {
			t.Fatalf("Members = %v, %v", ms, err)
		}
		for _, m := range ms {
			if m.State != "alive" || m.ClientAddress == "" || (m.ID == leader.ID()) != m.RaftLeader {
				t.Errorf("member %+v", m)
			}
		}
	})

	t.Run("writes through followers only", func(t *testing.T) {
		cl := newClient(t, f1, f2)
		var specs []ResourceSpec
		for i := 0; i < 12; i++ {
			specs = append(specs, ResourceSpec{ID: fmt.Sprintf("w-%02d", i), Weight: uint32(1 + i%3), Labels: map[string]string{"i": fmt.Sprint(i)}})
		}
		res, err := cl.Register(ctx, specs...)
		if err != nil {
			t.Fatal(err)
		}
		if res.Changed != 12 || res.Revision == 0 {
			t.Errorf("Register = %+v", res)
		}
		// Read-your-writes on the node that took (and forwarded) the write.
		l, err := cl.Resources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if l.Revision < res.Revision || len(l.Resources) != 12 {
			t.Fatalf("listing after the write: revision %d (write %d), %d resources", l.Revision, res.Revision, len(l.Resources))
		}
		if r := l.Resources[5]; r.ID != "w-05" || r.Weight != 3 || r.Labels["i"] != "5" {
			t.Errorf("resource %+v", r)
		}
		del, err := cl.Delete(ctx, "w-11")
		if err != nil || del.Changed != 1 || del.Revision <= res.Revision {
			t.Fatalf("Delete = %+v, %v", del, err)
		}
		// MyResources is what the local node (f1) owns, once assigned.
		testwait.Eventually(t, testcluster.DefaultWait, "every resource owned", func() (bool, string) {
			l, err := cl.Resources(ctx)
			if err != nil {
				return false, err.Error()
			}
			for _, r := range l.Resources {
				if r.Owner == "" {
					return false, r.ID + " unowned"
				}
			}
			return len(l.Resources) == 11, fmt.Sprintf("%d resources", len(l.Resources))
		})
		var all Listing
		var mine Listing
		testwait.Eventually(t, testcluster.DefaultWait, "MyResources matches the listing", func() (bool, string) {
			var err error
			if all, err = cl.Resources(ctx); err != nil {
				return false, err.Error()
			}
			if mine, err = cl.MyResources(ctx); err != nil {
				return false, err.Error()
			}
			want := 0
			for _, r := range all.Resources {
				if r.Owner == f1.ID() {
					want++
				}
			}
			return want == len(mine.Resources) && mine.Revision == all.Revision, fmt.Sprintf("own %d of listing, MyResources %d", want, len(mine.Resources))
		})
		for _, r := range mine.Resources {
			if r.Owner != f1.ID() || r.Epoch == 0 {
				t.Errorf("MyResources lists %+v", r)
			}
		}
	})

	t.Run("bad input keeps the server's code", func(t *testing.T) {
		cl := newClient(t, f1, f2)
		tests := []struct {
			name string
			call func() error
			want codes.Code
		}{
			{"empty resource id", func() error { _, err := cl.Register(ctx, ResourceSpec{ID: ""}); return err }, codes.InvalidArgument},
			{"weight out of range", func() error { _, err := cl.Register(ctx, ResourceSpec{ID: "x", Weight: 5000}); return err }, codes.InvalidArgument},
			{"unknown node's assignments", func() error { _, err := cl.Assignments(ctx, "nope"); return err }, codes.NotFound},
			{"delete unknown", func() error { _, err := cl.Delete(ctx, "no-such-resource"); return err }, codes.NotFound},
			{"drain unknown node", func() error { _, err := cl.SetDrain(ctx, "nope", true); return err }, codes.NotFound},
			{"ttl too short", func() error { _, err := cl.AppHeartbeat(ctx, time.Millisecond); return err }, codes.InvalidArgument},
		}
		for _, tt := range tests {
			start := time.Now()
			err := tt.call()
			if status.Code(err) != tt.want {
				t.Errorf("%s: %v (code %v), want %v", tt.name, err, status.Code(err), tt.want)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("%s took %v: a final answer must not be retried", tt.name, d)
			}
		}
	})

	t.Run("dead first endpoint", func(t *testing.T) {
		cl := newClientAt(t, deadAddr(t), f2.ClientAddr())
		if _, err := cl.Register(ctx, ResourceSpec{ID: "via-second"}); err != nil {
			t.Fatalf("Register with a dead first endpoint: %v", err)
		}
		l, err := cl.Resources(ctx)
		if err != nil {
			t.Fatalf("Resources with a dead first endpoint: %v", err)
		}
		found := false
		for _, r := range l.Resources {
			found = found || r.ID == "via-second"
		}
		if !found {
			t.Error("the resource written through the second endpoint is not listed")
		}
		// Calls about the local node do not move to another node.
		sctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		if _, err := cl.Status(sctx); status.Code(err) != codes.Unavailable && status.Code(err) != codes.DeadlineExceeded {
			t.Errorf("Status with the local sidecar dead = %v", err)
		}
	})

	t.Run("not-leader answer is followed to the leader", func(t *testing.T) {
		cl := newClient(t, f1, f2)
		st := status.New(codes.FailedPrecondition, "not the leader")
		st, err := st.WithDetails(&errdetails.ErrorInfo{Domain: ErrorDomain, Reason: ReasonNotLeader,
			Metadata: map[string]string{mdLeaderID: leader.ID(), mdLeaderPeer: leader.PeerAddr()}})
		if err != nil {
			t.Fatal(err)
		}
		next, ok := cl.retryTo(ctx, callSpec{name: "test", route: routeWrite}, f1.ClientAddr(), st.Err())
		if !ok || next != leader.ClientAddr() {
			t.Errorf("retryTo after NOT_LEADER = %q, %v; want the leader's client address %s", next, ok, leader.ClientAddr())
		}
		if _, ok := cl.retryTo(ctx, callSpec{name: "test", route: routeLocal}, f1.ClientAddr(), st.Err()); ok {
			t.Error("a local-only call followed NOT_LEADER to another node")
		}
		plain := status.Error(codes.FailedPrecondition, "transfer in progress")
		if _, ok := cl.retryTo(ctx, callSpec{name: "test", route: routeWrite}, f1.ClientAddr(), plain); ok {
			t.Error("a FailedPrecondition without NOT_LEADER was retried")
		}
		unavailable := status.Error(codes.Unavailable, "connection reset")
		if _, ok := cl.retryTo(ctx, callSpec{name: "test", route: routeWrite, once: true}, f1.ClientAddr(), unavailable); ok {
			t.Error("a non-idempotent call was retried after an Unavailable of unknown outcome")
		}
		if next, ok := cl.retryTo(ctx, callSpec{name: "test", route: routeWrite}, f1.ClientAddr(), unavailable); !ok || next != f2.ClientAddr() {
			t.Errorf("an idempotent write after Unavailable goes to %q, %v; want the next endpoint", next, ok)
		}
	})

	t.Run("drain and app heartbeat of the local node", func(t *testing.T) {
		cl := newClient(t, f2, f1)
		if _, err := cl.SetDrain(ctx, "", true); err != nil {
			t.Fatal(err)
		}
		memberOf := func(id string) Member {
			ms, err := cl.Members(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range ms {
				if m.ID == id {
					return m
				}
			}
			t.Fatalf("no member %s", id)
			return Member{}
		}
		if m := memberOf(f2.ID()); !m.Draining {
			t.Errorf("after SetDrain(\"\", true) through %s: %+v", f2.ID(), m)
		}
		if _, err := cl.SetDrain(ctx, "", false); err != nil {
			t.Fatal(err)
		}
		if m := memberOf(f2.ID()); m.Draining {
			t.Errorf("after undrain: %+v", m)
		}
		h, err := cl.AppHeartbeat(ctx, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if h.State != "alive" {
			t.Errorf("AppHeartbeat = %+v", h)
		}
	})
}
