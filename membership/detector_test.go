package membership

import (
	"errors"
	"math"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func newDetector(t *testing.T, cfg DetectorConfig) *Detector {
	t.Helper()
	d, err := NewDetector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// feed gives the detector n replies every `every` from start; returns the last.
func feedReplies(d *Detector, peer string, start time.Time, every time.Duration, n int) time.Time {
	at := start
	for i := 0; i < n; i++ {
		at = start.Add(time.Duration(i) * every)
		d.Observe(peer, at)
	}
	return at
}

func TestPhiGrowsWithSilence(t *testing.T) {
	d := newDetector(t, DefaultDetectorConfig())
	last := feedReplies(d, "p", t0, ms(50), 100)
	prev := -1.0
	for _, after := range []int{0, 25, 50, 100, 150, 200, 300, 500, 2000, 60000} {
		phi := d.Phi("p", last.Add(ms(after)))
		if phi < prev || math.IsNaN(phi) || math.IsInf(phi, 0) {
			t.Fatalf("phi after %d ms = %v (previous %v): must grow and stay finite", after, phi, prev)
		}
		prev = phi
	}
	if phi := d.Phi("p", last.Add(ms(50))); phi > 1 {
		t.Fatalf("phi at one mean interval = %v", phi)
	}
	if d.Phi("unknown", last) != 0 || d.Verdict("unknown", last) != VerdictUnknown {
		t.Fatal("unknown peer")
	}
}

func TestVerdictFloorsAndThresholds(t *testing.T) {
	cfg := DefaultDetectorConfig()
	d := newDetector(t, cfg)
	// Perfectly regular 10 ms heartbeats: std is floored at MinStdDev, and
	// MinTimeout / MinDeadTimeout hold the verdicts back although phi is huge.
	last := feedReplies(d, "p", t0, ms(10), 200)
	tests := []struct {
		after time.Duration
		want  Verdict
	}{
		{ms(0), VerdictAlive},
		{cfg.MinTimeout - ms(1), VerdictAlive},       // phi already high, floor holds
		{cfg.MinTimeout, VerdictSuspect},             // phi(150ms) >> 8
		{cfg.MinDeadTimeout - ms(1), VerdictSuspect}, // phi >> 16 but before the dead floor
		{cfg.MinDeadTimeout, VerdictDead},
		{time.Hour, VerdictDead},
	}
	for _, tc := range tests {
		if got := d.Verdict("p", last.Add(tc.after)); got != tc.want {
			t.Fatalf("after %v: %s, want %s (phi %.1f)", tc.after, got, tc.want, d.Phi("p", last.Add(tc.after)))
		}
	}
}

func TestDetectorAdaptsToPeers(t *testing.T) {
	// With low floors, phi decides: a jittery peer (mean 50 ms, std ~40 ms)
	// is given much longer than a regular one (10 ms), and a slow regular
	// peer (400 ms, with FirstHeartbeatEstimate to match) is not suspected
	// at 450 ms.
	cfg := DefaultDetectorConfig()
	cfg.MinStdDev, cfg.MinTimeout, cfg.MinDeadTimeout, cfg.FirstHeartbeatEstimate = ms(5), ms(20), ms(20), ms(400)
	d := newDetector(t, cfg)
	regular := feedReplies(d, "regular", t0, ms(10), 200)
	jitter := t0
	for i := 0; i < 200; i++ {
		jitter = jitter.Add(ms([]int{5, 100, 20, 90, 35}[i%5]))
		d.Observe("jittery", jitter)
	}
	slow := t0
	for i := 0; i < 100; i++ {
		slow = slow.Add(ms(400 + (i%5-2)*20))
		d.Observe("slow", slow)
	}
	deadAfter := func(peer string, last time.Time) time.Duration {
		for after := ms(0); after < 10*time.Second; after += ms(1) {
			if d.Verdict(peer, last.Add(after)) == VerdictDead {
				return after
			}
		}
		return -1
	}
	r, j, s := deadAfter("regular", regular), deadAfter("jittery", jitter), deadAfter("slow", slow)
	if r < 0 || j < 0 || s < 0 || r > ms(60) || j < 4*r || s < ms(450) || s > ms(800) {
		t.Fatalf("dead after: regular %v, jittery %v, slow %v", r, j, s)
	}
	t.Logf("dead after: regular %v, jittery %v, slow %v", r, j, s)
	if v := d.Verdict("slow", slow.Add(ms(450))); v != VerdictAlive {
		t.Fatalf("slow peer at 450ms: %s", v)
	}
}

func TestObserveIgnoresStaleAndResetsAfterOutage(t *testing.T) {
	cfg := DefaultDetectorConfig()
	d := newDetector(t, cfg)
	last := feedReplies(d, "p", t0, ms(50), 50)
	if d.Observe("p", last) || d.Observe("p", last.Add(-ms(10))) {
		t.Fatal("stale reply accepted")
	}
	// A 5 s outage then a reply: alive at once, and the outage is not a
	// sample (else the next death would take minutes to see).
	back := last.Add(5 * time.Second)
	if !d.Observe("p", back) {
		t.Fatal("reply after outage ignored")
	}
	if v := d.Verdict("p", back.Add(ms(10))); v != VerdictAlive {
		t.Fatalf("returning peer: %s", v)
	}
	if v := d.Verdict("p", back.Add(cfg.MinDeadTimeout+ms(50))); v != VerdictDead {
		t.Fatalf("returning peer silent again: %s", v)
	}
}

func TestSeedForgiveForget(t *testing.T) {
	cfg := DefaultDetectorConfig()
	d := newDetector(t, cfg)
	d.Seed("p", t0)
	if _, ok := d.LastReply("p"); ok {
		t.Fatal("seed counted as reply")
	}
	if v := d.Verdict("p", t0.Add(ms(100))); v != VerdictAlive {
		t.Fatalf("seeded peer early: %s", v)
	}
	if v := d.Verdict("p", t0.Add(ms(400))); v != VerdictDead {
		t.Fatalf("seeded peer never answering: %s", v)
	}
	d.Seed("p", t0.Add(ms(390))) // no effect on a known peer
	if v := d.Verdict("p", t0.Add(ms(400))); v != VerdictDead {
		t.Fatalf("re-seed reset a known peer: %s", v)
	}
	d.Forgive(ms(350))
	if v := d.Verdict("p", t0.Add(ms(400))); v != VerdictAlive {
		t.Fatalf("forgiven peer: %s", v)
	}
	// A reply inside the forgiven gap is no interval sample, but it is a reply.
	if d.Observe("p", t0.Add(ms(300))) {
		t.Fatal("reply before the forgiven last arrival taken as a sample")
	}
	if at, ok := d.LastReply("p"); !ok || !at.Equal(t0.Add(ms(300))) {
		t.Fatalf("LastReply = %v %v", at, ok)
	}
	d.Observe("p", t0.Add(ms(420)))
	if at, _ := d.LastReply("p"); !at.Equal(t0.Add(ms(420))) || d.Peers() != 1 {
		t.Fatal("reply not recorded")
	}
	d.Forget("p")
	if d.Peers() != 0 {
		t.Fatal("Forget")
	}
	d.Seed("a", t0)
	d.Seed("b", t0)
	d.Reset()
	if d.Peers() != 0 {
		t.Fatal("Reset")
	}
}

func TestDetectorConfigValidate(t *testing.T) {
	mod := func(fn func(*DetectorConfig)) DetectorConfig {
		c := DefaultDetectorConfig()
		fn(&c)
		return c
	}
	bad := []DetectorConfig{
		mod(func(c *DetectorConfig) { c.WindowSize = 1 }),
		mod(func(c *DetectorConfig) { c.MinStdDev = 0 }),
		mod(func(c *DetectorConfig) { c.MinDeadTimeout = c.MinTimeout - 1 }),
		mod(func(c *DetectorConfig) { c.DeadPhi = c.SuspectPhi - 1 }),
		mod(func(c *DetectorConfig) { c.SuspectPhi = math.NaN() }),
		mod(func(c *DetectorConfig) { c.FirstHeartbeatEstimate = 0 }),
	}
	for i, c := range bad {
		if _, err := NewDetector(c); !errors.Is(err, ErrInvalidConfig) {
			t.Fatalf("bad config %d accepted: %v", i, err)
		}
	}
}
