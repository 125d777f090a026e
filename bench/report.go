package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// SystemResult is everything measured for one system. A nil phase pointer or a zero Summary
// means the phase was not run or failed before producing a figure; Errors says which.
type SystemResult struct {
	Name       string      `json:"name"`
	Kind       Kind        `json:"kind"`
	Timing     Timing      `json:"timing"`
	TimingText string      `json:"timing_text"`
	LogDir     string      `json:"log_dir"`
	Idle       *IdleResult `json:"idle,omitempty"`
	Crash      FaultResult `json:"crash"`
	Silent     FaultResult `json:"silent"`
	Busy       *BusyResult `json:"busy,omitempty"`
	// Reassign is the reassign phase, one entry per resource count (Heartbeat only).
	Reassign []ReassignResult `json:"reassign,omitempty"`
	// Lease is issue 9's lease phase (Heartbeat only; nil when not run).
	Lease  *LeaseResult `json:"lease,omitempty"`
	Errors []string     `json:"errors,omitempty"`
}

func (r *SystemResult) fail(phase string, err error) {
	r.Errors = append(r.Errors, phase+": "+err.Error())
}

// FaultResult is one fault kind's measurements over all its faults.
type FaultResult struct {
	Summary Summary `json:"summary"`
	// Measurement quality: the longest time a victim had been silent before its signal, and
	// the p99 latency of successful status polls during the phase. Large values mean the
	// machine (or the node's HTTP server) was slow and the figures carry that delay.
	MaxSilenceMs float64    `json:"max_silence_ms"`
	PollP99Ms    float64    `json:"poll_latency_p99_ms"`
	Runs         []Failover `json:"runs,omitempty"`
	Errors       []string   `json:"errors,omitempty"`
}

// IdleResult is the idle phase: CPU in percent of one core over Seconds, RSS in MiB.
type IdleResult struct {
	Seconds          float64    `json:"seconds"`
	Leader           string     `json:"leader"`
	LeaderCPU        float64    `json:"leader_cpu_pct"`
	FollowerCPUMean  float64    `json:"follower_cpu_mean_pct"`
	FollowerCPUMax   float64    `json:"follower_cpu_max_pct"`
	LeaderRSSMB      float64    `json:"leader_rss_mb"`
	FollowerRSSMaxMB float64    `json:"follower_rss_max_mb"`
	MaxRSSMB         float64    `json:"max_rss_mb"`
	Nodes            []NodeIdle `json:"nodes"`
}

// NodeIdle is one process's idle figures.
type NodeIdle struct {
	ID         string  `json:"id"`
	CPUPercent float64 `json:"cpu_pct"`
	RSSMB      float64 `json:"rss_mb"`
}

// BusyResult is the busy phase: elections seen while a burner kept both cores busy.
type BusyResult struct {
	Seconds        float64 `json:"seconds"`
	Polls          int     `json:"polls"`
	FailedPolls    int     `json:"failed_polls"` // node polls that timed out or failed
	TermStart      uint64  `json:"term_start"`
	TermEnd        uint64  `json:"term_end"`
	TermIncrements uint64  `json:"term_increments"`
	LeaderStart    string  `json:"leader_start"`
	LeaderEnd      string  `json:"leader_end"`
	LeaderChanges  int     `json:"leader_changes"`
	BurnerCPU      float64 `json:"burner_cpu_pct"` // of one core; ~200 = both cores
	Pass           bool    `json:"pass"`           // no term increment, no leader change
	// FalseDeaths counts members any node showed as suspect or dead (GET /v1/members every
	// poll); nil when not measured (systems without member states).
	FalseDeaths      *int     `json:"false_deaths,omitempty"`
	FalseDeathEvents []string `json:"false_death_events,omitempty"`
}

// Throughput is one in-process apply-throughput run.
type Throughput struct {
	Transport string  `json:"transport"`
	Store     string  `json:"store"`
	Entries   int     `json:"entries"`
	Appliers  int     `json:"appliers"`
	Seconds   float64 `json:"seconds"`
	OpsPerSec float64 `json:"ops_per_sec"`
}

// ThroughputResult compares Heartbeat's transport with raft's TCP transport.
type ThroughputResult struct {
	Runs  []Throughput `json:"runs"`
	Ratio float64      `json:"ratio"` // heartbeat ops/s ÷ tcp ops/s (medians over rounds)
	// TLSRatio is Heartbeat's transport with mutual TLS ÷ without (medians), when measured.
	TLSRatio float64 `json:"tls_ratio,omitempty"`
	Error    string  `json:"error,omitempty"`
}

// CurvePoint is one system at one timing: the trade-off between failover and idle CPU.
type CurvePoint struct {
	Kind       Kind     `json:"kind"`
	Timing     Timing   `json:"timing"`
	TimingText string   `json:"timing_text"`
	Crash      Summary  `json:"crash"`
	Silent     Summary  `json:"silent"`
	LeaderCPU  float64  `json:"leader_cpu_pct"`
	Follower   float64  `json:"follower_cpu_mean_pct"`
	Errors     []string `json:"errors,omitempty"`
}

// TargetCheck is one of the targets, evaluated on Heartbeat's default system.
type TargetCheck struct {
	Target   string  `json:"target"`
	Value    string  `json:"value"`
	Measured bool    `json:"measured"`
	Met      bool    `json:"met"`
	Got      float64 `json:"got"`   // the figure compared (ms, %, MB, elections, ratio)
	Limit    float64 `json:"limit"` // the bound: at most (AtLeast false) or at least
	AtLeast  bool    `json:"at_least,omitempty"`
}

// Miss says by how much a measured, missed target was missed ("" otherwise).
func (t TargetCheck) Miss() string {
	if !t.Measured || t.Met {
		return ""
	}
	switch {
	case t.AtLeast:
		return fmt.Sprintf("%s: got %.4g, needs >= %.4g (short by %.4g)", t.Target, t.Got, t.Limit, t.Limit-t.Got)
	case t.Got > t.Limit && t.Limit > 0:
		return fmt.Sprintf("%s: got %.4g, over by %.4g (%.1fx the bound)", t.Target, t.Got, t.Got-t.Limit, t.Got/t.Limit)
	default:
		return fmt.Sprintf("%s: got %s", t.Target, t.Value)
	}
}

// EvaluateTargets checks the targets against the system named hb (Heartbeat at its
// defaults) and the throughput ratio. A target whose figure is missing is "not measured",
// never met. A fault phase with any failed (unconverged) fault misses its targets.
func EvaluateTargets(hb *SystemResult, tp *ThroughputResult) []TargetCheck {
	var out []TargetCheck
	add := func(target string, measured bool, value string, got, limit float64, extra bool) {
		c := TargetCheck{Target: target, Value: value, Measured: measured, Got: got, Limit: limit}
		if !measured {
			c.Value = "not measured"
		}
		c.Met = measured && extra && got <= limit
		out = append(out, c)
	}
	fault := func(name string, f FaultResult, p50, p99 float64) {
		s := f.Summary
		ok := hb != nil && s.N > 0
		fv := func(v float64) string { return fmt.Sprintf("%.1f ms (n=%d, failed %d)", v, s.N, s.Failed) }
		add(fmt.Sprintf("%s failover p50 <= %.0f ms", name, p50), ok, fv(s.P50Ms), s.P50Ms, p50, s.Failed == 0)
		add(fmt.Sprintf("%s failover p99 <= %.0f ms", name, p99), ok, fv(s.P99Ms), s.P99Ms, p99, s.Failed == 0)
	}
	var crash, silentF FaultResult
	var idle *IdleResult
	var busy *BusyResult
	if hb != nil {
		crash, silentF, idle, busy = hb.Crash, hb.Silent, hb.Idle, hb.Busy
	}
	fault("crash", crash, 50, 100)
	fault("silent", silentF, 500, 800)
	idleOK := idle != nil
	var li, fi, rss float64
	if idleOK {
		li, fi, rss = idle.LeaderCPU, idle.FollowerCPUMax, idle.MaxRSSMB
	}
	add("idle leader CPU <= 2% of a core", idleOK, fmt.Sprintf("%.2f%%", li), li, 2, true)
	add("idle follower CPU <= 1% (max follower)", idleOK, fmt.Sprintf("%.2f%%", fi), fi, 1, true)
	add("RSS <= 40 MB (max node)", idleOK, fmt.Sprintf("%.1f MB", rss), rss, 40, true)
	bv, elections := "", 0.0
	if busy != nil {
		bv = fmt.Sprintf("%d term increments, %d leader changes in %.0f s (burner %.0f%%)",
			busy.TermIncrements, busy.LeaderChanges, busy.Seconds, busy.BurnerCPU)
		elections = float64(max(busy.TermIncrements, uint64(busy.LeaderChanges)))
	}
	add("0 elections with both cores busy", busy != nil, bv, elections, 0, busy != nil && busy.Pass)
	out = append(out, membershipTargets(hb)...)
	out = append(out, leaseTargets(hb)...)
	tpOK := tp != nil && tp.Error == "" && tp.Ratio > 0
	var ratio float64
	if tpOK {
		ratio = tp.Ratio
	}
	c := TargetCheck{Target: "apply throughput >= 0.8x TCP transport", Value: fmt.Sprintf("%.2fx", ratio),
		Measured: tpOK, Met: tpOK && ratio >= 0.8, Got: ratio, Limit: 0.8, AtLeast: true}
	if !tpOK {
		c.Value = "not measured"
	}
	return append(out, c)
}

// membershipTargets checks the issue 3 targets: reassignment time at 10,000 and 100,000
// resources, exact moves, RSS at 100,000 resources, and no false deaths in the busy phase.
func membershipTargets(hb *SystemResult) []TargetCheck {
	var out []TargetCheck
	find := func(n int) *ReassignResult {
		if hb == nil {
			return nil
		}
		for i := range hb.Reassign {
			if hb.Reassign[i].Resources == n {
				return &hb.Reassign[i]
			}
		}
		return nil
	}
	for _, t := range []struct {
		n     int
		limit float64
	}{{10000, 500}, {100000, 1000}} {
		rr := find(t.n)
		c := TargetCheck{Target: fmt.Sprintf("reassignment p99 <= %.0f ms at %d resources", t.limit, t.n), Limit: t.limit, Value: "not measured"}
		if rr != nil && rr.Reassign.N > 0 {
			s := rr.Reassign
			c.Measured, c.Got = true, s.P99Ms
			c.Value = fmt.Sprintf("%.1f ms (n=%d, failed %d)", s.P99Ms, s.N, s.Failed)
			c.Met = s.Failed == 0 && s.P99Ms <= t.limit
		}
		out = append(out, c)
	}
	exact := TargetCheck{Target: "moved resources = exactly the dead node's", Value: "not measured"}
	if hb != nil {
		kills, bad := 0, 0
		for _, rr := range hb.Reassign {
			for _, m := range rr.Moves {
				kills++
				if !m.Exact {
					bad++
				}
			}
		}
		if kills > 0 {
			exact.Measured, exact.Met, exact.Got = true, bad == 0, float64(bad)
			exact.Value = fmt.Sprintf("%d of %d kills exact", kills-bad, kills)
		}
	}
	out = append(out, exact)
	rss := TargetCheck{Target: "RSS <= 200 MB per node at 100000 resources", Limit: 200, Value: "not measured"}
	if rr := find(100000); rr != nil && rr.MaxRSSMB > 0 {
		rss.Measured, rss.Got, rss.Met = true, rr.MaxRSSMB, rr.MaxRSSMB <= 200
		rss.Value = fmt.Sprintf("%.1f MB (max node)", rr.MaxRSSMB)
	}
	out = append(out, rss)
	fd := TargetCheck{Target: "0 false deaths with both cores busy", Value: "not measured"}
	if hb != nil && hb.Busy != nil && hb.Busy.FalseDeaths != nil {
		n := *hb.Busy.FalseDeaths
		fd.Measured, fd.Got, fd.Met = true, float64(n), n == 0
		fd.Value = fmt.Sprintf("%d in %.0f s", n, hb.Busy.Seconds)
	}
	return append(out, fd)
}

// LeaseMinPauses is the number of pauses of each kind issue 9's benchmark asks for.
const LeaseMinPauses = 20

// leaseTargets checks issue 9's benchmark: over at least LeaseMinPauses pauses of each kind
// (the leader's sidecar, an owner's sidecar), every hand-over left a positive gap from the
// old work's cancellation to the new work's start, no pause failed, and no two runs of one
// key overlapped anywhere in the phase. A run with the lease timers disabled never meets it.
func leaseTargets(hb *SystemResult) []TargetCheck {
	var l *LeaseResult
	if hb != nil {
		l = hb.Lease
	}
	var out []TargetCheck
	for _, k := range []struct {
		name string
		set  func(*LeaseResult) PauseSet
	}{
		{"leader's sidecar", func(l *LeaseResult) PauseSet { return l.Leader }},
		{"owner's sidecar", func(l *LeaseResult) PauseSet { return l.Owner }},
	} {
		c := TargetCheck{Target: fmt.Sprintf("pauses of the %s: cancel -> start gap min > 0 (>= %d pauses, no overlap)",
			k.name, LeaseMinPauses), Value: "not measured"}
		if l != nil && k.set(l).Handovers > 0 {
			s := k.set(l)
			c.Measured, c.Got = true, s.Gap.MinMs
			c.Value = fmt.Sprintf("min %.1f ms over %d hand-overs in %d pauses (%d failed), %d gaps <= 0, %d overlapping runs",
				s.Gap.MinMs, s.Handovers, len(s.Pauses), s.Failed, s.NonPositive, l.Overlaps)
			if l.UnsafeNoLeaseTimer {
				c.Value += ", lease timers DISABLED"
			}
			c.Met = s.NonPositive == 0 && l.Overlaps == 0 && s.Failed == 0 && len(s.Pauses) >= LeaseMinPauses &&
				!l.UnsafeNoLeaseTimer
		}
		out = append(out, c)
	}
	return out
}

// Results is one benchmark run, written as results.json and rendered as results.md.
type Results struct {
	StartedAt  time.Time         `json:"started_at"`
	Duration   string            `json:"duration"`
	Host       string            `json:"host"`
	Command    string            `json:"command"`
	Phases     Phases            `json:"phases"`
	Systems    []SystemResult    `json:"systems"`
	Throughput *ThroughputResult `json:"throughput,omitempty"`
	Curve      []CurvePoint      `json:"curve,omitempty"`
	Targets    []TargetCheck     `json:"targets"`
}

// Write stores results.json and results.md in dir (created if missing).
func (r *Results) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "results.md"), []byte(r.Markdown()), 0o644)
}

// Markdown renders the results as the tables the README quotes.
func (r *Results) Markdown() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# hbbench results\n\n%s, %s, took %s on %s\n\n", r.StartedAt.UTC().Format(time.RFC3339), r.Command, r.Duration, r.Host)
	w("Phases: %d SIGKILLs, %d SIGSTOPs of the leader; idle %v; busy %v",
		r.Phases.Kills, r.Phases.Stops, r.Phases.Idle, r.Phases.Busy)
	if r.Phases.LeasePauses > 0 {
		w("; lease: %d pauses of each kind", r.Phases.LeasePauses)
	}
	w(".\n\n")
	w("| system | timing | crash failover p50 / p99 / max | silent failover p50 / p99 / max | idle CPU leader / follower mean / max | RSS leader / max | busy: term incr. / leader changes |\n")
	w("|---|---|---|---|---|---|---|\n")
	for _, s := range r.Systems {
		w("| %s | %s | %s | %s | %s | %s | %s |\n", s.Name, s.TimingText,
			faultCell(s.Crash.Summary), faultCell(s.Silent.Summary), idleCPUCell(s.Idle), rssCell(s.Idle), busyCell(s.Busy))
	}
	w("\nMeasurement quality (should be a few ms; more means a loaded machine): ")
	for i, s := range r.Systems {
		if i > 0 {
			w("; ")
		}
		w("%s: victim silent before signal max %.0f / %.0f ms, poll latency p99 %.0f / %.0f ms (crash / silent)",
			s.Name, s.Crash.MaxSilenceMs, s.Silent.MaxSilenceMs, s.Crash.PollP99Ms, s.Silent.PollP99Ms)
	}
	w(".\n")
	hasTCP := slices.ContainsFunc(r.Systems, func(s SystemResult) bool { return s.Kind == KindRaftTCP })
	if hb := r.system(string(KindHeartbeat)); hb != nil && hasTCP {
		w("\n## Heartbeat ÷ hashicorp/raft TCP (below 1 = Heartbeat lower: faster or cheaper)\n\n")
		w("| vs | crash p50 | crash p99 | silent p50 | silent p99 | idle leader CPU | idle follower CPU | RSS |\n|---|---|---|---|---|---|---|---|\n")
		for _, s := range r.Systems {
			if s.Kind != KindRaftTCP {
				continue
			}
			w("| %s | %s | %s | %s | %s | %s | %s | %s |\n", s.Name,
				ratio(hb.Crash.Summary.P50Ms, s.Crash.Summary.P50Ms), ratio(hb.Crash.Summary.P99Ms, s.Crash.Summary.P99Ms),
				ratio(hb.Silent.Summary.P50Ms, s.Silent.Summary.P50Ms), ratio(hb.Silent.Summary.P99Ms, s.Silent.Summary.P99Ms),
				idleRatio(hb.Idle, s.Idle, func(i *IdleResult) float64 { return i.LeaderCPU }),
				idleRatio(hb.Idle, s.Idle, func(i *IdleResult) float64 { return i.FollowerCPUMean }),
				idleRatio(hb.Idle, s.Idle, func(i *IdleResult) float64 { return i.MaxRSSMB }))
		}
	}
	w("%s", r.tlsSection())
	if rows := r.membershipRows(); rows != "" {
		w("\n## Membership (Heartbeat, fresh 5-node cluster per count)\n\n")
		w("| system | resources | registration | all assigned | reassignment p50 / p99 / max | moved = exactly the dead node's | max RSS |\n|---|---|---|---|---|---|---|\n")
		w("%s", rows)
		w("\nReassignment: SIGKILL of a follower owning resources -> every survivor's GET /v1/members shows it owning 0 (polled every 15 ms), detection included; moves checked against GET /v1/resources before and after.\n")
	}
	w("%s", r.leaseSection())
	if tp := r.Throughput; tp != nil {
		w("\n## Apply throughput (in process, 3 nodes)\n\n")
		if tp.Error != "" {
			w("error: %s\n", tp.Error)
		}
		w("| transport | store | entries | appliers | ops/s |\n|---|---|---|---|---|\n")
		for _, t := range tp.Runs {
			w("| %s | %s | %d | %d | %.0f |\n", t.Transport, t.Store, t.Entries, t.Appliers, t.OpsPerSec)
		}
		w("\nHeartbeat ÷ TCP: %.2fx\n", tp.Ratio)
		if tp.TLSRatio > 0 {
			w("\nHeartbeat with mTLS ÷ without: %.2fx\n", tp.TLSRatio)
		}
	}
	if len(r.Curve) > 0 {
		w("\n## Trade-off curve\n\n| system | timing | crash p50 / p99 | silent p50 / p99 | idle CPU leader / follower |\n|---|---|---|---|---|\n")
		for _, c := range r.Curve {
			w("| %s | %s | %s / %s | %s / %s | %.2f%% / %.2f%% |\n", c.Kind, c.TimingText,
				msCell(c.Crash, c.Crash.P50Ms), msCell(c.Crash, c.Crash.P99Ms),
				msCell(c.Silent, c.Silent.P50Ms), msCell(c.Silent, c.Silent.P99Ms), c.LeaderCPU, c.Follower)
		}
	}
	w("\n## Targets (Heartbeat at its defaults)\n\n| target | measured | |\n|---|---|---|\n")
	for _, t := range r.Targets {
		mark := "missed"
		switch {
		case !t.Measured:
			mark = "not measured"
		case t.Met:
			mark = "met"
		}
		w("| %s | %s | %s |\n", t.Target, t.Value, mark)
	}
	var misses []string
	for _, t := range r.Targets {
		if m := t.Miss(); m != "" {
			misses = append(misses, m)
		}
	}
	if len(misses) > 0 {
		w("\nMissed: %s.\n", strings.Join(misses, "; "))
	}
	var errs []string
	for _, s := range r.Systems {
		for _, e := range append(append(append([]string{}, s.Errors...), s.Crash.Errors...), s.Silent.Errors...) {
			errs = append(errs, s.Name+": "+e)
		}
		for _, rr := range s.Reassign {
			for _, e := range rr.Errors {
				errs = append(errs, fmt.Sprintf("%s reassign %d: %s", s.Name, rr.Resources, e))
			}
		}
		if s.Lease != nil {
			for _, e := range s.Lease.Errors {
				errs = append(errs, s.Name+" lease: "+e)
			}
			for _, set := range []PauseSet{s.Lease.Leader, s.Lease.Owner} {
				for _, p := range set.Pauses {
					if p.Error != "" {
						errs = append(errs, fmt.Sprintf("%s lease pause of %s: %s", s.Name, p.Victim, p.Error))
					}
				}
			}
		}
	}
	for _, c := range r.Curve {
		for _, e := range c.Errors {
			errs = append(errs, fmt.Sprintf("curve %s %s: %s", c.Kind, c.TimingText, e))
		}
	}
	if len(errs) > 0 {
		w("\n## Errors\n\n")
		for _, e := range errs {
			w("- %s\n", e)
		}
	}
	return b.String()
}

// TLSSystem is the name of Heartbeat with mutual TLS in the report (the ratio table compares
// it with the system named "heartbeat").
const TLSSystem = "heartbeat-tls"

// TLSIdleBound is the idle CPU the issue allows mutual TLS: within 1.2x of plaintext.
const TLSIdleBound = 1.2

// tlsSection renders "heartbeat-tls ÷ heartbeat" when both ran: failover, idle CPU, RSS and,
// when measured, the in-process apply throughput with and without TLS.
func (r *Results) tlsSection() string {
	on, off := r.system(TLSSystem), r.system(string(KindHeartbeat))
	if on == nil || off == nil {
		return ""
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	tp := "—"
	if r.Throughput != nil && r.Throughput.TLSRatio > 0 {
		tp = fmt.Sprintf("%.2fx", r.Throughput.TLSRatio)
	}
	w("\n## mTLS on ÷ off (%s ÷ heartbeat; below 1 = TLS lower: faster or cheaper; apply throughput: below 1 = TLS slower)\n\n", TLSSystem)
	w("| crash p50 | crash p99 | silent p50 | silent p99 | idle leader CPU | idle follower CPU (mean) | RSS (max) | apply throughput |\n|---|---|---|---|---|---|---|---|\n")
	leader := func(i *IdleResult) float64 { return i.LeaderCPU }
	follower := func(i *IdleResult) float64 { return i.FollowerCPUMean }
	// An idle phase that failed (the leader changed during it) has figures of no role: no ratio.
	onIdle, offIdle := validIdle(on), validIdle(off)
	w("| %s | %s | %s | %s | %s | %s | %s | %s |\n",
		ratio(on.Crash.Summary.P50Ms, off.Crash.Summary.P50Ms), ratio(on.Crash.Summary.P99Ms, off.Crash.Summary.P99Ms),
		ratio(on.Silent.Summary.P50Ms, off.Silent.Summary.P50Ms), ratio(on.Silent.Summary.P99Ms, off.Silent.Summary.P99Ms),
		idleRatio(onIdle, offIdle, leader), idleRatio(onIdle, offIdle, follower),
		idleRatio(onIdle, offIdle, func(i *IdleResult) float64 { return i.MaxRSSMB }), tp)
	switch {
	case onIdle != nil && offIdle != nil:
		w("\nIdle CPU with mTLS within %.1fx of plaintext: %s.\n", TLSIdleBound, tlsIdleVerdict(onIdle, offIdle))
	case on.Idle != nil || off.Idle != nil:
		w("\nIdle CPU with mTLS within %.1fx of plaintext: not measured (an idle phase failed: see Errors).\n", TLSIdleBound)
	}
	return b.String()
}

// validIdle is s's idle result, or nil when there is none or its phase reported an error.
func validIdle(s *SystemResult) *IdleResult {
	for _, e := range s.Errors {
		if strings.HasPrefix(e, "idle: ") {
			return nil
		}
	}
	return s.Idle
}

// tlsIdleVerdict says whether the TLS system's idle leader and mean follower CPU are within
// TLSIdleBound of plaintext's.
func tlsIdleVerdict(on, off *IdleResult) string {
	var over []string
	for _, f := range []struct {
		name    string
		on, off float64
	}{{"leader", on.LeaderCPU, off.LeaderCPU}, {"follower mean", on.FollowerCPUMean, off.FollowerCPUMean}} {
		if f.off <= 0 {
			return "not measured (plaintext CPU 0)"
		}
		if f.on/f.off > TLSIdleBound {
			over = append(over, fmt.Sprintf("%s %.2fx", f.name, f.on/f.off))
		}
	}
	if len(over) > 0 {
		return "no (" + strings.Join(over, ", ") + ")"
	}
	return "yes"
}

func (r *Results) system(name string) *SystemResult {
	for i := range r.Systems {
		if r.Systems[i].Name == name {
			return &r.Systems[i]
		}
	}
	return nil
}

// membershipRows renders one Membership table row per system and resource count.
func (r *Results) membershipRows() string {
	var b strings.Builder
	for _, s := range r.Systems {
		for _, rr := range s.Reassign {
			exact := "no"
			switch {
			case len(rr.Moves) == 0:
				exact = "—"
			case rr.MovedExact:
				exact = "yes"
			}
			moved := 0
			for _, m := range rr.Moves {
				moved += m.Moved
			}
			if len(rr.Moves) > 0 {
				exact += fmt.Sprintf(" (%d kills, %d moved)", len(rr.Moves), moved)
			}
			reg, asg, rss := "—", "—", "—"
			if rr.RegisterPerSec > 0 {
				reg = fmt.Sprintf("%.0f resources/s", rr.RegisterPerSec)
				asg = fmt.Sprintf("%.2f s", rr.AssignedSeconds)
			}
			if rr.MaxRSSMB > 0 {
				rss = fmt.Sprintf("%.1f MB", rr.MaxRSSMB)
			}
			fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s |\n", s.Name, rr.Resources, reg, asg, faultCell(rr.Reassign), exact, rss)
		}
	}
	return b.String()
}

func faultCell(s Summary) string {
	if s.N == 0 && s.Failed == 0 {
		return "—"
	}
	c := fmt.Sprintf("%.0f / %.0f / %.0f ms", s.P50Ms, s.P99Ms, s.MaxMs)
	if s.N == 0 {
		c = "none converged"
	}
	if s.Failed > 0 {
		c += fmt.Sprintf(" (%d of %d failed)", s.Failed, s.N+s.Failed)
	}
	return c
}

func msCell(s Summary, v float64) string {
	if s.N == 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f ms", v)
}

func idleCPUCell(i *IdleResult) string {
	if i == nil {
		return "—"
	}
	return fmt.Sprintf("%.2f%% / %.2f%% / %.2f%%", i.LeaderCPU, i.FollowerCPUMean, i.FollowerCPUMax)
}

func rssCell(i *IdleResult) string {
	if i == nil {
		return "—"
	}
	return fmt.Sprintf("%.1f / %.1f MB", i.LeaderRSSMB, i.MaxRSSMB)
}

func busyCell(b *BusyResult) string {
	if b == nil {
		return "—"
	}
	c := fmt.Sprintf("%d / %d in %.0f s", b.TermIncrements, b.LeaderChanges, b.Seconds)
	if b.FalseDeaths != nil {
		c += fmt.Sprintf(", %d false deaths", *b.FalseDeaths)
	}
	return c
}

func ratio(a, b float64) string {
	if a <= 0 || b <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

func idleRatio(a, b *IdleResult, f func(*IdleResult) float64) string {
	if a == nil || b == nil {
		return "—"
	}
	return ratio(f(a), f(b))
}
