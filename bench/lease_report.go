package bench

import (
	"fmt"
	"strings"
)

// leaseSection renders the lease phase of every system that ran it ("" when none did).
func (r *Results) leaseSection() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	for _, s := range r.Systems {
		l := s.Lease
		if l == nil {
			continue
		}
		w("\n## Leases (%s): pauses of a sidecar, hand-over of the application's work\n\n", s.Name)
		if l.UnsafeNoLeaseTimer {
			w("**The clients' lease timers were DISABLED (UnsafeNoLeaseTimer): a planted violation, not a measurement.**\n\n")
		}
		w("%d resources; beside each node an application (client.Client, Endpoints[0] = that node) runs RunWhileLeader "+
			"and RunWhileOwner, each fn recording its start and its context's cancellation on the benchmark's monotonic clock. "+
			"Gap = new work's start − old work's cancellation; it must be positive.\n\n", l.Resources)
		w("| pause of | pauses (failed) | hand-overs | gap min / p50 / p99 / max | pause → old cancelled min / p50 / p99 / max | pause → new started min / p50 / p99 / max | gaps ≤ 0 |\n")
		w("|---|---|---|---|---|---|---|\n")
		for _, k := range []struct {
			name string
			set  PauseSet
		}{{"the leader's sidecar", l.Leader}, {"an owner's sidecar", l.Owner}} {
			w("| %s | %d (%d) | %d | %s | %s | %s | %d |\n", k.name, len(k.set.Pauses), k.set.Failed, k.set.Handovers,
				spreadCell(k.set.Gap), spreadCell(k.set.ToCancel), spreadCell(k.set.ToStart), k.set.NonPositive)
		}
		if n := l.Leader.NotRunning + l.Owner.NotRunning; n > 0 {
			w("\nLeft out of the gaps: %d keys the victim was not working on at the pause (a lease lapse just before it).\n", n)
		}
		w("\nOverlapping runs of one key (leader work or one resource), over every run of the phase: %d of %d runs.\n",
			l.Overlaps, l.Runs)
		if rr, lr := l.ResourceRestarts, l.LeaderRestarts; rr.N+lr.N > 0 {
			perKey := 0.0
			if l.Seconds > 0 && l.Resources > 0 {
				perKey = float64(rr.N) / float64(l.Resources) / l.Seconds
			}
			w("Work stopped and started again on the same node, same token or epoch (a lease lapsed and was renewed; "+
				"this includes every resource's lapse during a leader pause), over %.0f s: leader work %d times "+
				"(stopped p50 %.1f / p99 %.1f ms), resource work %d times = %.2f per resource per second (stopped p50 %.1f / p99 %.1f ms).\n",
				l.Seconds, lr.N, lr.P50Ms, lr.P99Ms, rr.N, perKey, rr.P50Ms, rr.P99Ms)
		}
		if len(l.Owner.Pauses) > 0 {
			var per []string
			for _, p := range l.Owner.Pauses {
				per = append(per, fmt.Sprintf("%s %.1f (%d)", p.Victim, ms(p.MinGap), len(p.Handovers)))
			}
			w("Owner pauses, per pause: victim, min gap in ms (resources moved): %s.\n", strings.Join(per, ", "))
		}
		if len(l.Leader.Pauses) > 0 {
			var per []string
			for _, p := range l.Leader.Pauses {
				per = append(per, fmt.Sprint(p.Interrupted))
			}
			w("Leader pauses: resource runs on the other nodes that ended during the pause (their ownership leases lapse "+
				"without the leader's grants): %s.\n", strings.Join(per, ", "))
		}
		if v := l.Violations(); len(v) > 0 {
			w("\n**VIOLATIONS** (two nodes worked on one thing at once):\n\n")
			for _, x := range v[:min(len(v), 20)] {
				w("- %s\n", x)
			}
			if len(v) > 20 {
				w("- … %d more\n", len(v)-20)
			}
		}
	}
	return b.String()
}

// spreadCell renders min / p50 / p99 / max of a summary in ms.
func spreadCell(s Summary) string {
	if s.N == 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f / %.1f / %.1f / %.1f ms", s.MinMs, s.P50Ms, s.P99Ms, s.MaxMs)
}
