package chaos

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// ReportInfo is the configuration part of the report.
type ReportInfo struct {
	Config   Config
	Began    time.Time
	Duration time.Duration
	// Versions and provenance, as found (empty: unknown).
	Commit, GoVersion, DockerVersion, ComposeVersion, Image string
	// Command reproduces the run.
	Command string
	// Notes are free lines (e.g. a fault that could not be injected).
	Notes []string
}

// WriteReport writes report.md: the table of fault kind × target, the
// violations, the configuration and how to reproduce it.
func WriteReport(w io.Writer, s Snapshot, vs []Violation, info ReportInfo) error {
	var b strings.Builder
	c := info.Config
	mode := "full"
	if c.Quick {
		mode = "quick"
	}
	verdict := "PASS: no violation"
	if len(vs) > 0 {
		verdict = fmt.Sprintf("FAIL: %d violation(s)", len(vs))
	}
	fmt.Fprintf(&b, "# Heartbeat chaos report\n\n**%s** — %s pass, %d fault window(s), %d node(s), %s.\n\n",
		verdict, mode, len(s.Faults), len(s.Nodes), s.Began.UTC().Format(time.RFC3339))

	b.WriteString("## Results\n\n")
	b.WriteString("Times in milliseconds. *Detection*: from the fault (the old leader's last answer when it went silent, " +
		"else the start of the injection; for kill-majority/kill-all the moment the restarted containers ran again) until some survivor stops naming the old " +
		"leadership. *New leader*: until every survivor names a leader with a higher fencing token. " +
		"*Without leader*: from the old leadership's last claim (is_self) to the first claim of a newer one. " +
		"`–` means it did not happen (expected for faults that must not cause an election).\n\n")
	b.WriteString("| fault | target | runs | detection p50 / p99 / max | new leader p50 / p99 / max | without leader p50 / max | no new leader | term changes | violations |\n")
	b.WriteString("|---|---|---:|---|---|---|---:|---:|---:|\n")
	for _, r := range Summarize(s, vs) {
		fmt.Fprintf(&b, "| %s | %s | %d | %s | %s | %s | %d | %d | %d |\n", r.Kind, r.Target, r.Runs,
			triple(r.Detection), triple(r.NewLeader), pair(r.NoLeader), r.Failed, r.TermChanges, r.Violations)
	}

	b.WriteString("\n## Violations\n\n")
	if len(vs) == 0 {
		b.WriteString("None. Checked: S1 one leader per term, S1b no two leaders claiming at once, S2 fencing tokens " +
			"only grow, S4 commit index kept across kill-all, L1 new leader within the bound, L2 no election without a fault, " +
			"A1 one holder of the leader job or of a resource at a time (application workload), " +
			"R1 linearizable reads and writes (reads-and-writes workload).\n")
	}
	for _, v := range vs {
		label := "no fault"
		if v.Fault >= 0 && v.Fault < len(s.Faults) {
			label = s.Faults[v.Fault].Label()
		}
		fmt.Fprintf(&b, "- `%s` [%s] %s\n", v.Check, label, v.String())
	}
	if len(s.Work) > 0 {
		writeWork(&b, s, vs)
	}
	if len(s.Lin) > 0 {
		writeLin(&b, s, vs)
	}

	b.WriteString("\n## Fault windows\n\nTimes from the start of the run; detection and new leader in ms as above, per window.\n\n" +
		"| # | fault | nodes | old leader (term) | start | lifted | settled | expect | detection | new leader | term Δ |\n" +
		"|---:|---|---|---|---:|---:|---:|---|---:|---:|---:|\n")
	for i, f := range s.Faults {
		m := Measure(s, i)
		det, nl := "–", "–"
		if m.Detected {
			det = ms(m.Detection)
		}
		if m.Elected {
			nl = ms(m.NewLeader)
		}
		fmt.Fprintf(&b, "| %d | %s | %s | %s (%d) | %s | %s | %s | %s | %s | %s | %d |\n", i, f.Label(), strings.Join(f.Nodes, ","),
			f.OldLeader, f.OldTerm, fmtDur(f.Start), fmtDur(f.End), fmtDur(f.Settled), expectText(f), det, nl, m.TermChanges)
	}

	b.WriteString("\n## Configuration\n\n")
	kv := func(k, v string) {
		if v == "" {
			v = "unknown"
		}
		fmt.Fprintf(&b, "- %s: %s\n", k, v)
	}
	kv("mode", fmt.Sprintf("%s (runs per fault: %d)", mode, c.Runs))
	kv("seed", fmt.Sprint(c.Seed))
	kv("nodes", fmt.Sprint(c.Nodes))
	kv("node timings", fmt.Sprintf("heartbeat timeout %s, election timeout %s, lease %s", durOrDefault(c.HeartbeatTimeout),
		durOrDefault(c.ElectionTimeout), durOrDefault(c.LeaseDuration)))
	kv("bounds", fmt.Sprintf("crash %s, silent %s, after restart %s", c.CrashBound, c.SilentBound, c.RestartBound))
	transport := "mutual TLS on every port (pki.Init certificates; host-side clients present the admin client certificate)"
	if c.Insecure {
		transport = "plaintext (CHAOS_INSECURE: HEARTBEAT_INSECURE, docker-compose.insecure.yml)"
	}
	kv("transport", transport)
	kv("recorder", fmt.Sprintf("status poll every %s (deadline %s) + WatchLeader stream per node", c.Poll, c.PollTimeout))
	kv("git commit", info.Commit)
	kv("go", info.GoVersion)
	kv("docker", info.DockerVersion)
	kv("compose", info.ComposeVersion)
	kv("image", info.Image)
	kv("compose project", fmt.Sprintf("%s (subnet %s.0/24, ports %sI1/%sI2)", c.Project, c.Subnet, c.PortPrefix, c.PortPrefix))
	kv("run time", info.Duration.Round(time.Second).String())
	for _, n := range info.Notes {
		fmt.Fprintf(&b, "- note: %s\n", n)
	}
	fmt.Fprintf(&b, "\nReproduce:\n\n```sh\n%s\n```\n\nTimeline: [timeline.svg](timeline.svg) (one lane per node, colored by role; fault windows shaded).\n", info.Command)
	_, err := io.WriteString(w, b.String())
	return err
}

func expectText(f Fault) string {
	if f.Expect == ExpectFailover {
		return fmt.Sprintf("failover ≤ %s", f.Bound)
	}
	return string(f.Expect)
}

func durOrDefault(d time.Duration) string {
	if d == 0 {
		return "node default"
	}
	return d.String()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f", float64(d)/float64(time.Millisecond)) }

func triple(ds []time.Duration) string {
	p50, ok := Percentile(ds, 50)
	if !ok {
		return "–"
	}
	p99, _ := Percentile(ds, 99)
	p100, _ := Percentile(ds, 100)
	return ms(p50) + " / " + ms(p99) + " / " + ms(p100)
}

func pair(ds []time.Duration) string {
	p50, ok := Percentile(ds, 50)
	if !ok {
		return "–"
	}
	p100, _ := Percentile(ds, 100)
	return ms(p50) + " / " + ms(p100)
}
