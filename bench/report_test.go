package bench

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// goodHB is a Heartbeat result that meets every target.
func goodHB() *SystemResult {
	return &SystemResult{
		Name: "heartbeat", Kind: KindHeartbeat,
		Crash:  FaultResult{Summary: Summary{N: 20, P50Ms: 40, P99Ms: 90, MaxMs: 90}},
		Silent: FaultResult{Summary: Summary{N: 20, P50Ms: 450, P99Ms: 700, MaxMs: 700}},
		Idle:   &IdleResult{LeaderCPU: 1.5, FollowerCPUMean: 0.5, FollowerCPUMax: 0.9, MaxRSSMB: 30},
		Busy:   &BusyResult{Seconds: 600, Pass: true, FalseDeaths: new(int)},
		Reassign: []ReassignResult{
			{Resources: 10000, RegisterPerSec: 50000, Reassign: Summary{N: 5, P50Ms: 300, P99Ms: 450, MaxMs: 450},
				Moves: []MoveCheck{{VictimHad: 2000, Moved: 2000, Exact: true}}, MovedExact: true, MaxRSSMB: 60},
			{Resources: 100000, RegisterPerSec: 80000, Reassign: Summary{N: 5, P50Ms: 600, P99Ms: 900, MaxMs: 900},
				Moves: []MoveCheck{{VictimHad: 20000, Moved: 20000, Exact: true}}, MovedExact: true, MaxRSSMB: 150},
		},
		Lease: goodLease(),
	}
}

// goodLease is a lease phase of 20 pauses of each kind, every gap positive.
func goodLease() *LeaseResult {
	l := &LeaseResult{Resources: 50, Pauses: 20, Runs: 900}
	for i := range 20 {
		gap := time.Duration(300+i) * time.Millisecond
		l.Leader.Pauses = append(l.Leader.Pauses, PauseRun{Victim: "n1", MinGap: gap,
			Handovers: []Handover{{Key: LeaderKey, From: "n1", To: "n2", Gap: gap, ToCancel: 180 * time.Millisecond, ToStart: gap + 180*time.Millisecond}}})
		l.Owner.Pauses = append(l.Owner.Pauses, PauseRun{Victim: "n3", MinGap: gap - 100*time.Millisecond,
			Handovers: []Handover{{Key: "r1", From: "n3", To: "n4", Gap: gap - 100*time.Millisecond}, {Key: "r2", From: "n3", To: "n5", Gap: gap}}})
	}
	l.Leader.summarize()
	l.Owner.summarize()
	return l
}

func TestEvaluateTargets(t *testing.T) {
	checks := func(hb *SystemResult, tp *ThroughputResult) map[string]TargetCheck {
		m := map[string]TargetCheck{}
		for _, c := range EvaluateTargets(hb, tp) {
			m[c.Target] = c
		}
		return m
	}
	all := checks(goodHB(), &ThroughputResult{Ratio: 0.9})
	if len(all) != 16 {
		t.Fatalf("%d targets, want 16", len(all))
	}
	for name, c := range all {
		if !c.Measured || !c.Met {
			t.Errorf("good run: %s = %+v, want met", name, c)
		}
	}

	for _, tc := range []struct {
		name   string
		plant  func(hb *SystemResult, tp *ThroughputResult)
		missed string
	}{
		{"crash p99 just over", func(hb *SystemResult, _ *ThroughputResult) { hb.Crash.Summary.P99Ms = 100.5 }, "crash failover p99 <= 100 ms"},
		{"a failed kill misses p50 too", func(hb *SystemResult, _ *ThroughputResult) { hb.Crash.Summary.Failed = 1 }, "crash failover p50 <= 50 ms"},
		{"silent p50", func(hb *SystemResult, _ *ThroughputResult) { hb.Silent.Summary.P50Ms = 501 }, "silent failover p50 <= 500 ms"},
		{"follower max counts, not mean", func(hb *SystemResult, _ *ThroughputResult) { hb.Idle.FollowerCPUMax = 1.2 }, "idle follower CPU <= 1% (max follower)"},
		{"rss", func(hb *SystemResult, _ *ThroughputResult) { hb.Idle.MaxRSSMB = 41 }, "RSS <= 40 MB (max node)"},
		{"an election under load", func(hb *SystemResult, _ *ThroughputResult) { hb.Busy.Pass = false }, "0 elections with both cores busy"},
		{"throughput", func(_ *SystemResult, tp *ThroughputResult) { tp.Ratio = 0.79 }, "apply throughput >= 0.8x TCP transport"},
		{"reassign 10k p99", func(hb *SystemResult, _ *ThroughputResult) { hb.Reassign[0].Reassign.P99Ms = 501 }, "reassignment p99 <= 500 ms at 10000 resources"},
		{"reassign 100k failed kill", func(hb *SystemResult, _ *ThroughputResult) { hb.Reassign[1].Reassign.Failed = 1 }, "reassignment p99 <= 1000 ms at 100000 resources"},
		{"a wrong move", func(hb *SystemResult, _ *ThroughputResult) {
			hb.Reassign[1].Moves = append(hb.Reassign[1].Moves, MoveCheck{VictimHad: 20000, Moved: 20001, WronglyMoved: 1})
		}, "moved resources = exactly the dead node's"},
		{"rss at 100k", func(hb *SystemResult, _ *ThroughputResult) { hb.Reassign[1].MaxRSSMB = 201 }, "RSS <= 200 MB per node at 100000 resources"},
		{"a false death", func(hb *SystemResult, _ *ThroughputResult) { *hb.Busy.FalseDeaths = 1 }, "0 false deaths with both cores busy"},
		{"a negative leader gap", func(hb *SystemResult, _ *ThroughputResult) {
			hb.Lease.Leader.Pauses[3].Handovers[0].Gap = -time.Millisecond
			hb.Lease.Leader.summarize()
		}, "pauses of the leader's sidecar: cancel -> start gap min > 0 (>= 20 pauses, no overlap)"},
		{"an owner's old work still running", func(hb *SystemResult, _ *ThroughputResult) {
			hb.Lease.Owner.Pauses[3].Handovers[1].OldRunning = true
			hb.Lease.Owner.summarize()
		}, "pauses of the owner's sidecar: cancel -> start gap min > 0 (>= 20 pauses, no overlap)"},
		{"a failed owner pause", func(hb *SystemResult, _ *ThroughputResult) {
			hb.Lease.Owner.Pauses[0].Error = "not handed over"
			hb.Lease.Owner.summarize()
		}, "pauses of the owner's sidecar: cancel -> start gap min > 0 (>= 20 pauses, no overlap)"},
		{"too few leader pauses", func(hb *SystemResult, _ *ThroughputResult) {
			hb.Lease.Leader.Pauses = hb.Lease.Leader.Pauses[:19]
			hb.Lease.Leader.summarize()
		}, "pauses of the leader's sidecar: cancel -> start gap min > 0 (>= 20 pauses, no overlap)"},
	} {
		hb, tp := goodHB(), &ThroughputResult{Ratio: 0.9}
		tc.plant(hb, tp)
		got := checks(hb, tp)
		for name, c := range got {
			wantMet := name != tc.missed
			if tc.name == "a failed kill misses p50 too" && strings.HasPrefix(name, "crash") {
				wantMet = false
			}
			if c.Met != wantMet {
				t.Errorf("%s: %s met=%v, want %v (%+v)", tc.name, name, c.Met, wantMet, c)
			}
		}
	}

	none := checks(nil, nil)
	for name, c := range none {
		if c.Measured || c.Met || c.Value != "not measured" {
			t.Errorf("nothing measured: %s = %+v", name, c)
		}
	}
	// Overlapping runs anywhere in the phase, or disabled lease timers, miss both lease targets.
	for name, plant := range map[string]func(*LeaseResult){
		"overlaps": func(l *LeaseResult) { l.Overlaps = 1 },
		"unsafe":   func(l *LeaseResult) { l.UnsafeNoLeaseTimer = true },
	} {
		hb := goodHB()
		plant(hb.Lease)
		got := checks(hb, &ThroughputResult{Ratio: 0.9})
		for _, target := range []string{"pauses of the leader's sidecar: cancel -> start gap min > 0 (>= 20 pauses, no overlap)", "pauses of the owner's sidecar: cancel -> start gap min > 0 (>= 20 pauses, no overlap)"} {
			if c := got[target]; !c.Measured || c.Met {
				t.Errorf("%s: %s = %+v, want measured and missed", name, target, c)
			}
		}
	}
	noBusy := goodHB()
	noBusy.Busy = nil
	if c := checks(noBusy, &ThroughputResult{Ratio: 1})["0 elections with both cores busy"]; c.Met || c.Measured {
		t.Errorf("busy phase not run but target %+v", c)
	}
}

func TestResultsMarkdownAndWrite(t *testing.T) {
	hb := goodHB()
	rt := SystemResult{Name: "rafttcp-default", Kind: KindRaftTCP,
		Crash:  FaultResult{Summary: Summary{N: 20, P50Ms: 2000, P99Ms: 2400, MaxMs: 2400}},
		Silent: FaultResult{Summary: Summary{N: 19, Failed: 1, P50Ms: 1800, P99Ms: 2500, MaxMs: 2500}},
		Idle:   &IdleResult{LeaderCPU: 4.5, FollowerCPUMean: 0.5, MaxRSSMB: 15}}
	r := &Results{Systems: []SystemResult{*hb, rt}, Throughput: &ThroughputResult{Ratio: 0.9}}
	r.Targets = EvaluateTargets(hb, r.Throughput)
	md := r.Markdown()
	for _, want := range []string{
		"| heartbeat | ", "40 / 90 / 90 ms",
		"(1 of 20 failed)",                  // a failed fault is shown beside the percentiles
		"| rafttcp-default | 0.02x | 0.04x", // 40/2000, 90/2400
		"| crash failover p50 <= 50 ms | 40.0 ms (n=20, failed 0) | met |",
		"## Membership",
		"| heartbeat | 100000 | 80000 resources/s | 0.00 s | 600 / 900 / 900 ms | yes (1 kills, 20000 moved) | 150.0 MB |",
		"| reassignment p99 <= 1000 ms at 100000 resources | 900.0 ms (n=5, failed 0) | met |",
		"0 / 0 in 600 s, 0 false deaths",
		"## Leases (heartbeat)",
		"| the leader's sidecar | 20 (0) | 20 | 300.0 / 309.0 / 319.0 / 319.0 ms | 180.0 / 180.0 / 180.0 / 180.0 ms | 480.0 / 489.0 / 499.0 / 499.0 ms | 0 |",
		"| an owner's sidecar | 20 (0) | 40 | 200.0 / ",
		"0 of 900 runs",
		"| pauses of the leader's sidecar: cancel -> start gap min > 0 (>= 20 pauses, no overlap) | min 300.0 ms over 20 hand-overs in 20 pauses (0 failed), 0 gaps <= 0, 0 overlapping runs | met |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "Missed:") {
		t.Errorf("all targets met, but markdown has a Missed note:\n%s", md)
	}
	if strings.Contains(md, "VIOLATIONS") {
		t.Errorf("clean lease phase reported as violated:\n%s", md)
	}
	r.Systems[0].Lease.Owner.Pauses[2].Handovers[0].Gap = -3 * time.Millisecond // planted
	r.Systems[0].Lease.Owner.summarize()
	if md := r.Markdown(); !strings.Contains(md, "**VIOLATIONS**") || !strings.Contains(md, "owner pause of n3: r1 n3 -> n4 gap -3ms") {
		t.Errorf("planted negative gap not shown:\n%s", md)
	}
	r.Systems[0].Crash.Summary.P50Ms = 60
	r.Throughput.Ratio = 0.5
	r.Targets = EvaluateTargets(&r.Systems[0], r.Throughput)
	md = r.Markdown()
	for _, want := range []string{
		"crash failover p50 <= 50 ms: got 60, over by 10 (1.2x the bound)",
		"apply throughput >= 0.8x TCP transport: got 0.5, needs >= 0.8 (short by 0.3)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("closing note lacks %q:\n%s", want, md)
		}
	}
	dir := filepath.Join(t.TempDir(), "out")
	if err := r.Write(dir); err != nil {
		t.Fatal(err)
	}
	js, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back Results
	if err := json.Unmarshal(js, &back); err != nil || len(back.Systems) != 2 || back.Systems[1].Silent.Summary.Failed != 1 {
		t.Errorf("results.json round trip: %v %+v", err, back.Systems)
	}
	if _, err := os.Stat(filepath.Join(dir, "results.md")); err != nil {
		t.Error(err)
	}
}
