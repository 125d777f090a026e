package main

import (
	"errors"
	"io"
	"reflect"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heartbeat-sidecar/heartbeat/bench"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseFlags(t *testing.T) {
	full, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(full.Phases, bench.Phases{Kills: 20, Stops: 20, Idle: 30 * time.Second, Busy: 10 * time.Minute,
		Reassign: []int{10000, 100000}, ReassignKills: 5, LeaseResources: 50}) ||
		!slices.Equal(full.Systems, []string{"heartbeat", "heartbeat-tls", "rafttcp-default", "rafttcp-hb"}) || !full.TP.TLS ||
		len(full.CurveTimings) != 4 || full.CurveTimings[3] != time.Second || full.Run.Nodes != 5 {
		t.Errorf("defaults: %+v", full)
	}

	q, err := parseFlags([]string{"--quick", "--kills", "7", "--curve-timings", "50ms,2s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(q.Phases, bench.Phases{Kills: 7, Stops: 3, Idle: 5 * time.Second, Busy: 20 * time.Second,
		Reassign: []int{10000}, ReassignKills: 2, LeaseResources: 50}) {
		t.Errorf("--quick with --kills 7: phases %+v (an explicit flag must win)", q.Phases)
	}
	if !slices.Equal(q.CurveTimings, []time.Duration{50 * time.Millisecond, 2 * time.Second}) || q.TP.Rounds != 3 {
		t.Errorf("quick: curve %v, tp %+v", q.CurveTimings, q.TP)
	}

	r, err := parseFlags([]string{"--quick", "--reassign", "0, 500", "--reassign-kills", "4"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.Phases.Reassign, []int{500}) || r.Phases.ReassignKills != 4 {
		t.Errorf("explicit --reassign under --quick: %v x %d", r.Phases.Reassign, r.Phases.ReassignKills)
	}
	if off, err := parseFlags([]string{"--reassign", ""}, io.Discard); err != nil || off.Phases.Reassign != nil {
		t.Errorf("empty --reassign: %v %v, want the phase skipped", off.Phases.Reassign, err)
	}

	l, err := parseFlags([]string{"--lease-pauses", "20", "--lease-resources", "30", "--lease-unsafe-no-timer"}, io.Discard)
	if err != nil || l.Phases.LeasePauses != 20 || l.Phases.LeaseResources != 30 || !l.Phases.LeaseUnsafeNoTimer {
		t.Errorf("lease flags: %+v %v", l.Phases, err)
	}
	if full.Phases.LeasePauses != 0 || q.Phases.LeasePauses != 0 {
		t.Errorf("the lease phase must be off unless asked: %d, quick %d", full.Phases.LeasePauses, q.Phases.LeasePauses)
	}

	for name, args := range map[string][]string{
		"bad reassign":      {"--reassign", "10k"},
		"negative reassign": {"--reassign", "-5"},
		"negative r-kills":  {"--reassign-kills", "-1"},
		"negative pauses":   {"--lease-pauses", "-1"},
		"negative lease rs": {"--lease-resources", "-2"},
		"unknown system":    {"--systems", "etcd"},
		"no systems":        {"--systems", ","},
		"bad timing":        {"--curve-timings", "fast"},
		"two nodes":         {"--nodes", "2"},
		"negative kills":    {"--kills", "-1"},
		"extra argument":    {"now"},
		"bad tp store":      {"--tp-store", "disk"},
	} {
		if _, err := parseFlags(args, io.Discard); !errors.Is(err, errUsage) {
			t.Errorf("%s: err = %v, want a usage error", name, err)
		}
	}
}

func TestSystems(t *testing.T) {
	cfg := DefaultConfig()
	hb, _ := cfg.system("heartbeat", "/bin/hb", "/bin/rt")
	rd, _ := cfg.system("rafttcp-default", "/bin/hb", "/bin/rt")
	rh, _ := cfg.system("rafttcp-hb", "/bin/hb", "/bin/rt")
	nf, _ := cfg.system("heartbeat-nofast", "/bin/hb", "/bin/rt")
	if hb.Kind != bench.KindHeartbeat || hb.Binary != "/bin/hb" || hb.Timing != (bench.Timing{}) {
		t.Errorf("heartbeat: %+v", hb)
	}
	if rd.Kind != bench.KindRaftTCP || rd.Binary != "/bin/rt" || rd.Timing != (bench.Timing{}) {
		t.Errorf("rafttcp-default: %+v (must run at raft's own defaults)", rd)
	}
	if rh.Timing != cfg.HBTiming || rh.Timing.HeartbeatTimeout == 0 {
		t.Errorf("rafttcp-hb timing %+v, want Heartbeat's %+v", rh.Timing, cfg.HBTiming)
	}
	if !slices.Contains(nf.Args, "--fast-failover=false") {
		t.Errorf("heartbeat-nofast args %v", nf.Args)
	}
	ht, err := cfg.system("heartbeat-tls", "/bin/hb", "/bin/rt")
	if err != nil || ht.Kind != bench.KindHeartbeat || ht.Binary != "/bin/hb" || !ht.TLS || ht.TLSDir != "" ||
		ht.Timing != (bench.Timing{}) || len(ht.Args) != 0 || ht.Name != bench.TLSSystem {
		t.Errorf("heartbeat-tls: %+v, %v (Heartbeat at its defaults with TLS; the runner makes the certificates)", ht, err)
	}
	if hb.TLS || nf.TLS {
		t.Error("plaintext systems with TLS")
	}
	if c, err := parseFlags([]string{"--tp-tls=false"}, io.Discard); err != nil || c.TP.TLS {
		t.Errorf("--tp-tls=false: %v, %v", c.TP.TLS, err)
	}
}

// TestLeaseViolations: a lease phase with a gap that is not positive, or with overlapping
// runs, makes the command fail; a clean one, or none, does not.
func TestLeaseViolations(t *testing.T) {
	clean := func() *bench.LeaseResult {
		return &bench.LeaseResult{
			Leader: bench.PauseSet{Pauses: []bench.PauseRun{{Victim: "n1", Handovers: []bench.Handover{{Key: bench.LeaderKey, Gap: time.Millisecond}}}}},
			Owner:  bench.PauseSet{Pauses: []bench.PauseRun{{Victim: "n2", Handovers: []bench.Handover{{Key: "r1", Gap: 300 * time.Millisecond}}}}},
		}
	}
	res := func(l *bench.LeaseResult) *bench.Results {
		return &bench.Results{Systems: []bench.SystemResult{{Name: "heartbeat", Lease: l}}}
	}
	if err := leaseViolations(res(nil)); err != nil {
		t.Errorf("no lease phase: %v", err)
	}
	if err := leaseViolations(res(clean())); err != nil {
		t.Errorf("clean: %v", err)
	}
	for name, plant := range map[string]func(*bench.LeaseResult){
		"zero leader gap":    func(l *bench.LeaseResult) { l.Leader.Pauses[0].Handovers[0].Gap = 0 },
		"negative owner gap": func(l *bench.LeaseResult) { l.Owner.Pauses[0].Handovers[0].Gap = -time.Microsecond },
		"old still running":  func(l *bench.LeaseResult) { l.Owner.Pauses[0].Handovers[0].OldRunning = true },
		"overlapping runs":   func(l *bench.LeaseResult) { l.Overlaps = 1 },
	} {
		l := clean()
		plant(l)
		if err := leaseViolations(res(l)); !errors.Is(err, errLeaseViolated) {
			t.Errorf("%s: err = %v, want errLeaseViolated", name, err)
		}
	}
}
