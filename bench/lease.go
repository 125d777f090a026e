package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"
)

// DefaultLeaseResources is the number of resources the lease phase registers.
const DefaultLeaseResources = 50

const (
	// leaseOldGrace: once every key's new work has started, how much longer a pause waits
	// for old work still running to end (it is already an overlap; the wait only measures
	// how long it lasted).
	leaseOldGrace = 2 * time.Second
	// leaseSettleTimeout bounds the wait for a settled cluster between pauses.
	leaseSettleTimeout = 2 * time.Minute
)

// LeaseResult is issue 9's lease phase, on its own fresh cluster: applications beside every
// node run leader work and per-resource work, sidecars are paused (SIGSTOP), and each
// hand-over is timed from the old work's cancellation to the new work's start.
type LeaseResult struct {
	Resources int `json:"resources"`
	Pauses    int `json:"pauses"` // asked, per kind
	// UnsafeNoLeaseTimer: the clients ran without their lease timers, to show that the
	// checks catch the overlaps that follow. Not a measurement of Heartbeat.
	UnsafeNoLeaseTimer bool `json:"unsafe_no_lease_timer,omitempty"`
	// Leader: pauses of the leader's sidecar, leader work handed over.
	Leader PauseSet `json:"leader"`
	// Owner: pauses of a follower's sidecar that owns resources, its resources' work
	// handed over.
	Owner PauseSet `json:"owner"`
	// Runs is the number of fn runs recorded over the whole phase; Overlaps the pairs of
	// them that ran one key at the same time (leader work or one resource), checked over
	// every run, including rebalancing after each SIGCONT and the work cancelled elsewhere
	// during a leader pause.
	Runs            int      `json:"runs"`
	Seconds         float64  `json:"seconds"` // applications started to closed
	Overlaps        int      `json:"overlaps"`
	OverlapExamples []string `json:"overlap_examples,omitempty"`
	// LeaderRestarts and ResourceRestarts: how often work stopped and started again on
	// the same node with the same token or epoch (Restarts: a lease that lapsed and was
	// renewed, including every resource's lapse while the leader is paused), and for how
	// long it was stopped (AllMs left out).
	LeaderRestarts   Summary  `json:"leader_restarts"`
	ResourceRestarts Summary  `json:"resource_restarts"`
	Errors           []string `json:"errors,omitempty"`
}

// PauseSet is one kind of pause over all its pauses. The Summaries are over every measured
// hand-over (one per leader pause; one per moved resource for owner pauses); their Failed is
// the number of pauses that could not be measured in full.
type PauseSet struct {
	Pauses    []PauseRun `json:"pauses"`
	Failed    int        `json:"failed"`
	Handovers int        `json:"handovers"`
	// Gap: new work's start minus old work's cancellation (must be positive).
	Gap Summary `json:"gap"`
	// ToCancel: pause to the old work's cancellation; ToStart: pause to the new work's start.
	ToCancel Summary `json:"to_cancel"`
	ToStart  Summary `json:"to_start"`
	// NonPositive counts hand-overs whose gap was zero or negative: two nodes worked at once.
	NonPositive int `json:"non_positive"`
	// NotRunning counts keys left out because the victim was not working on them at the
	// pause (PauseRun.NotRunning).
	NotRunning int `json:"not_running"`
}

// PauseRun is one pause.
type PauseRun struct {
	Victim    string        `json:"victim"`
	At        time.Time     `json:"at"`     // SIGSTOP sent
	Paused    time.Duration `json:"paused"` // SIGSTOP to SIGCONT
	Handovers []Handover    `json:"handovers"`
	MinGap    time.Duration `json:"min_gap"`
	// NotRunning: keys the cluster gave the victim whose work was not running on it at the
	// pause (a brief lease lapse just before it); they have no cancellation to measure
	// from and are left out of the gaps (the overlap check still covers them).
	NotRunning []string `json:"not_running,omitempty"`
	// Interrupted (leader pauses): runs of resource work on the other nodes that ended
	// while the leader was paused (their ownership leases lapse without the leader's grants).
	Interrupted int    `json:"interrupted,omitempty"`
	Error       string `json:"error,omitempty"`
}

// Violations lists what broke the bound: non-positive gaps and overlapping runs. Empty
// means every hand-over left a positive gap and no two runs of one key overlapped.
func (l *LeaseResult) Violations() []string {
	var out []string
	for _, s := range []struct {
		name string
		set  *PauseSet
	}{{"leader pause", &l.Leader}, {"owner pause", &l.Owner}} {
		for _, p := range s.set.Pauses {
			for _, h := range p.Handovers {
				if h.Overlap() {
					still := ""
					if h.OldRunning {
						still = " (old work still running)"
					}
					out = append(out, fmt.Sprintf("%s of %s: %s %s -> %s gap %v%s", s.name, p.Victim, h.Key,
						h.From, h.To, h.Gap, still))
				}
			}
		}
	}
	if l.Overlaps > 0 {
		out = append(out, fmt.Sprintf("%d overlapping runs over the phase, e.g. %s", l.Overlaps,
			strings.Join(l.OverlapExamples, "; ")))
	}
	return out
}

// summarize computes the set's figures from its pauses.
func (s *PauseSet) summarize() {
	var gaps, cancels, starts []time.Duration
	s.Failed, s.NonPositive, s.NotRunning = 0, 0, 0
	for _, p := range s.Pauses {
		if p.Error != "" {
			s.Failed++
		}
		s.NotRunning += len(p.NotRunning)
		for _, h := range p.Handovers {
			gaps, cancels, starts = append(gaps, h.Gap), append(cancels, h.ToCancel), append(starts, h.ToStart)
			if h.Overlap() {
				s.NonPositive++
			}
		}
	}
	s.Handovers = len(gaps)
	s.Gap, s.ToCancel, s.ToStart = Summarize(gaps, s.Failed), Summarize(cancels, s.Failed), Summarize(starts, s.Failed)
}

// Lease runs the lease phase on a fresh cluster of sys (a Heartbeat system): resources are
// registered, an application beside every node runs RunWhileLeader and RunWhileOwner, then
// pauses SIGSTOPs of the leader's sidecar and pauses SIGSTOPs of a follower's sidecar that
// owns resources, each until the work has started elsewhere, then SIGCONT and a settled
// cluster. Only ctx's cancellation aborts it; errors are recorded in the result.
func (r *Runner) Lease(ctx context.Context, sys System, pauses, resources int, unsafeNoTimer bool) *LeaseResult {
	if resources <= 0 {
		resources = DefaultLeaseResources
	}
	res := &LeaseResult{Resources: resources, Pauses: pauses, UnsafeNoLeaseTimer: unsafeNoTimer}
	if err := r.leaseRun(ctx, sys, res); err != nil {
		res.Errors = append(res.Errors, err.Error())
		r.progress(sys.Name, "lease: %v", err)
	}
	res.Leader.summarize()
	res.Owner.summarize()
	r.progress(sys.Name, "lease: leader gap %s; owner gap %s; %d runs, %d overlaps; work stopped and resumed in place: leader %d times, resources %d times",
		gapText(res.Leader), gapText(res.Owner), res.Runs, res.Overlaps, res.LeaderRestarts.N, res.ResourceRestarts.N)
	return res
}

func gapText(s PauseSet) string {
	if s.Handovers == 0 {
		return "none measured"
	}
	return fmt.Sprintf("min %.1f / p50 %.1f / p99 %.1f ms over %d (%d <= 0, %d pauses failed)",
		s.Gap.MinMs, s.Gap.P50Ms, s.Gap.P99Ms, s.Handovers, s.NonPositive, s.Failed)
}

func (r *Runner) leaseRun(ctx context.Context, sys System, res *LeaseResult) (err error) {
	n := res.Resources
	dir := filepath.Join(r.cfg.WorkDir, sys.Name+"-lease")
	c, leader, err := r.freshCluster(ctx, sys, dir, "lease")
	if c != nil {
		defer c.Close()
	}
	if err != nil {
		return err
	}
	ids := c.IDs()
	hc := c.HTTPClient(30 * time.Second)
	defer hc.CloseIdleConnections()
	if err := register(ctx, hc, c.Proc(leader).Spec.HTTPBase(), n); err != nil {
		return err
	}
	log := NewWorkLog()
	apps, err := StartLeaseApps(c, log, res.UnsafeNoLeaseTimer)
	if err != nil {
		return err
	}
	started := time.Now()
	defer func() { // every fn has returned once apps are closed: check every run
		err = errors.Join(err, apps.Close())
		res.Seconds = round2(time.Since(started).Seconds())
		runs := log.Snapshot()
		var leaderRuns, resourceRuns []WorkInterval
		for _, w := range runs {
			if w.Key == LeaderKey {
				leaderRuns = append(leaderRuns, w)
			} else {
				resourceRuns = append(resourceRuns, w)
			}
		}
		res.LeaderRestarts, res.ResourceRestarts = Summarize(Restarts(leaderRuns), 0), Summarize(Restarts(resourceRuns), 0)
		res.LeaderRestarts.AllMs, res.ResourceRestarts.AllMs = nil, nil
		ov := Overlaps(runs, time.Now())
		res.Runs, res.Overlaps = len(runs), len(ov)
		if werr := writeRuns(filepath.Join(dir, "runs.json"), runs); werr != nil {
			err = errors.Join(err, werr)
		}
		for _, o := range ov[:min(len(ov), 5)] {
			res.OverlapExamples = append(res.OverlapExamples, o.String())
		}
	}()
	r.progress(sys.Name, "lease: %d resources registered, %d applications running; unsafe no lease timer: %v",
		n, len(c.Procs), res.UnsafeNoLeaseTimer)

	for k := 1; k <= res.Pauses; k++ {
		leader, _, err := r.leaseSettle(ctx, c, log, n)
		if err != nil {
			return fmt.Errorf("before leader pause %d: %w", k, err)
		}
		run, err := r.pauseLease(ctx, c, log, leader, []string{LeaderKey}, true)
		res.Leader.Pauses = append(res.Leader.Pauses, run)
		if err != nil {
			return fmt.Errorf("leader pause %d: %w", k, err)
		}
		r.progress(c.Sys.Name, "lease leader pause %d/%d: %s", k, res.Pauses, pauseLine(run))
	}
	for k := 1; k <= res.Pauses; k++ {
		leader, owners, err := r.leaseSettle(ctx, c, log, n)
		if err != nil {
			return fmt.Errorf("before owner pause %d: %w", k, err)
		}
		victim, keys := ownerVictim(ids, leader, owners, k)
		if victim == "" {
			return fmt.Errorf("owner pause %d: no follower owns a resource: %v", k, owners)
		}
		run, err := r.pauseLease(ctx, c, log, victim, keys, false)
		res.Owner.Pauses = append(res.Owner.Pauses, run)
		if err != nil {
			return fmt.Errorf("owner pause %d: %w", k, err)
		}
		r.progress(c.Sys.Name, "lease owner pause %d/%d: %s", k, res.Pauses, pauseLine(run))
	}
	// Settle once more, so that the moves back to the last victim are in the overlap check.
	if _, _, err := r.leaseSettle(ctx, c, log, n); err != nil {
		return fmt.Errorf("after the last pause: %w", err)
	}
	return apps.Err()
}

// writeRuns stores every fn run of the phase as JSON, for a closer look after the fact.
func writeRuns(path string, runs []WorkInterval) error {
	js, err := json.Marshal(runs)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, js, 0o644); err != nil {
		return fmt.Errorf("write the runs: %w", err)
	}
	return nil
}

// ownerVictim picks the k-th (round robin, k from 1) follower that owns resources, and its
// resources, sorted.
func ownerVictim(ids []string, leader string, owners map[string]string, k int) (string, []string) {
	held := map[string][]string{}
	for res, o := range owners {
		held[o] = append(held[o], res)
	}
	var cands []string
	for _, id := range ids {
		if id != leader && len(held[id]) > 0 {
			cands = append(cands, id)
		}
	}
	if len(cands) == 0 {
		return "", nil
	}
	victim := cands[(k-1)%len(cands)]
	keys := held[victim]
	sort.Strings(keys)
	return victim, keys
}

// leaseSettle waits until the cluster has one stable leader, every member alive with n
// resources owned and unchanged counts (waitSettled), and the applications run exactly
// what the cluster says: leader work on the leader's, each resource on its owner's
// (LeaseSettled). It returns the leader and the owners.
func (r *Runner) leaseSettle(ctx context.Context, c *Cluster, log *WorkLog, n int) (string, map[string]string, error) {
	p := NewPoller(c.Targets(), 20*time.Millisecond, r.cfg.PollTimeout)
	_, err := r.waitStable(ctx, p, c, r.cfg.StartTimeout)
	p.Close()
	if err != nil {
		return "", nil, err
	}
	ids := c.IDs()
	if _, err := waitSettled(ctx, c, ids, n, leaseSettleTimeout, "ownership settled"); err != nil {
		return "", nil, err
	}
	hc := c.HTTPClient(2 * time.Second)
	defer hc.CloseIdleConnections()
	var leader string
	var owners map[string]string
	err = pollUntil(ctx, 50*time.Millisecond, leaseSettleTimeout, "applications working as the cluster says", func() (bool, string) {
		l, ok := StableLeader(ids, snapshot(ctx, c, r.cfg.PollTimeout))
		if !ok {
			return false, "no stable leader"
		}
		o, err := fetchOwners(ctx, hc, c.Proc(l).Spec.HTTPBase())
		if err != nil {
			return false, err.Error()
		}
		leader, owners = l, o
		return LeaseSettled(log.Snapshot(), l, o, time.Now())
	})
	return leader, owners, err
}

// pauseLease SIGSTOPs victim's sidecar, waits until every key's work has started on another
// node (FailoverTimeout) and the victim's has ended (leaseOldGrace more at most), sends
// SIGCONT (on every path), and measures each key's hand-over. A pause whose hand-overs could
// not all be measured has Error set; the hand-overs that were measured are kept. The error
// returned is only one that stops the phase (a signal failed, ctx ended).
func (r *Runner) pauseLease(ctx context.Context, c *Cluster, log *WorkLog, victim string, keys []string, leaderPause bool) (run PauseRun, _ error) {
	run.Victim = victim
	p := c.Proc(victim)
	run.At = time.Now()
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		return run, fmt.Errorf("SIGSTOP %s: %w", victim, err)
	}
	// Only work running at the pause can be handed over; keys the victim was not working
	// on then are noted, not waited for.
	var running []string
	atPause := log.Snapshot()
	for _, k := range keys {
		if _, err := ComputeHandover(atPause, k, victim, run.At, run.At); errors.Is(err, ErrNoOldWork) {
			run.NotRunning = append(run.NotRunning, k)
		} else {
			running = append(running, k)
		}
	}
	keys = running
	if len(keys) == 0 {
		run.Error = fmt.Sprintf("%s was running none of %v at the pause", victim, run.NotRunning)
	}
	resumed := false
	resume := func() error {
		if resumed {
			return nil
		}
		resumed = true
		run.Paused = time.Since(run.At)
		return p.Signal(syscall.SIGCONT)
	}
	defer func() { _ = resume() }() // SIGCONT on every path; the error matters only below

	deadline := time.NewTimer(r.cfg.FailoverTimeout)
	defer deadline.Stop()
	graceT := time.NewTimer(time.Hour)
	graceT.Stop()
	defer graceT.Stop()
	var grace <-chan time.Time // armed once every key's new work has started
wait:
	for {
		_, pending, oldRunning, why := handovers(log.Snapshot(), keys, victim, run.At, time.Now())
		switch {
		case len(keys) == 0 || pending == 0 && oldRunning == 0:
			break wait
		case pending == 0 && grace == nil:
			graceT.Reset(leaseOldGrace)
			grace = graceT.C
		}
		select {
		case <-ctx.Done():
			return run, ctx.Err()
		case <-deadline.C:
			run.Error = fmt.Sprintf("not handed over within %v: %s", r.cfg.FailoverTimeout, why)
			break wait
		case <-grace:
			break wait // measured below as an overlap (the old work still runs)
		case <-log.Changed():
		}
	}
	asOf := time.Now()
	if err := resume(); err != nil {
		return run, fmt.Errorf("SIGCONT %s: %w", victim, err)
	}
	hs, _, _, _ := handovers(log.Snapshot(), keys, victim, run.At, asOf)
	run.Handovers = hs
	for i, h := range hs {
		if i == 0 || h.Gap < run.MinGap {
			run.MinGap = h.Gap
		}
	}
	if leaderPause {
		end := run.At.Add(run.Paused)
		for _, w := range log.Snapshot() {
			if w.App != victim && w.Key != LeaderKey && !w.End.IsZero() && !w.End.Before(run.At) && !w.End.After(end) {
				run.Interrupted++
			}
		}
	}
	return run, nil
}

// handovers computes every key's hand-over that can be measured yet, and counts the keys
// whose new work has not started (pending) and those whose new work started while the old
// still runs (oldRunning); why describes the first key not measured.
func handovers(runs []WorkInterval, keys []string, victim string, pause, asOf time.Time) (hs []Handover, pending, oldRunning int, why string) {
	for _, k := range keys {
		h, err := ComputeHandover(runs, k, victim, pause, asOf)
		if err != nil {
			pending++
			if why == "" {
				why = err.Error()
			}
			continue
		}
		if h.OldRunning {
			oldRunning++
		}
		hs = append(hs, h)
	}
	return hs, pending, oldRunning, why
}

// pauseLine is a pause's progress line.
func pauseLine(p PauseRun) string {
	if len(p.Handovers) == 0 {
		return fmt.Sprintf("%s: FAILED (%s)", p.Victim, p.Error)
	}
	var gaps, cancels, starts []time.Duration
	to := map[string]int{}
	for _, h := range p.Handovers {
		gaps, cancels, starts = append(gaps, h.Gap), append(cancels, h.ToCancel), append(starts, h.ToStart)
		to[h.To]++
	}
	g, cl, st := Summarize(gaps, 0), Summarize(cancels, 0), Summarize(starts, 0)
	var dests []string
	for _, id := range slices.Sorted(maps.Keys(to)) {
		dests = append(dests, fmt.Sprintf("%s x%d", id, to[id]))
	}
	s := fmt.Sprintf("%s paused %.0f ms -> %s: gap min %.1f ms (max %.1f), old work cancelled +%.1f..%.1f ms, new started +%.1f..%.1f ms",
		p.Victim, ms(p.Paused), strings.Join(dests, ", "), g.MinMs, g.MaxMs, cl.MinMs, cl.MaxMs, st.MinMs, st.MaxMs)
	if len(p.NotRunning) > 0 {
		s += fmt.Sprintf(", not running at the pause (left out): %v", p.NotRunning)
	}
	if p.Interrupted > 0 {
		s += fmt.Sprintf(", %d resource runs elsewhere ended during the pause", p.Interrupted)
	}
	if p.Error != "" {
		s += " FAILED: " + p.Error
	}
	for _, h := range p.Handovers {
		if h.Overlap() {
			s += fmt.Sprintf(" OVERLAP %s %s->%s gap %v", h.Key, h.From, h.To, h.Gap)
		}
	}
	return s
}
