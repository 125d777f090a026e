//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/node"
)

// TestChaos builds the image, brings up the compose cluster under its own
// project name, follows every node, runs every fault (once with
// CHAOS_QUICK=1, CHAOS_RUNS times otherwise), checks the history and writes
// out/report.md, out/timeline.svg, out/history.json and every node's docker
// logs in out/logs (kept on success too). The cluster, its network
// and volumes are removed at the end, whatever happened.
func TestChaos(t *testing.T) {
	cfg, err := ConfigFromEnv(os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	def := node.DefaultConfig()
	if cfg.HeartbeatTimeout == 0 {
		cfg.HeartbeatTimeout = def.HeartbeatTimeout
	}
	began := time.Now()
	ctx := context.Background()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	out := cfg.OutDir()
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, old := range []string{"history.json", "logs"} {
		_ = os.RemoveAll(filepath.Join(out, old))
	}

	// Build binary + image.
	build := exec.CommandContext(ctx, filepath.Join(root, "scripts", "docker-build.sh"), cfg.Image)
	build.Dir = root
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("scripts/docker-build.sh: %v\n%s", err, b)
	}

	files := []string{"docker-compose.yml"}
	if cfg.Nodes == 3 {
		files = append(files, "docker-compose.3.yml")
	}
	// Mutual TLS: a CA of this cluster id, every node's certificate and the
	// host clients' admin certificate, made afresh in a directory that
	// docker-compose.yml mounts read-only at /tls. CHAOS_INSECURE: plaintext
	// (the override clears the certificate paths and sets HEARTBEAT_INSECURE).
	var ctls *ClusterTLS
	tlsDir := t.TempDir()
	if cfg.Insecure {
		files = append(files, "docker-compose.insecure.yml")
	} else {
		uid, gid := imageUser(ctx, cfg.Image)
		if ctls, err = MakeClusterTLS(tlsDir, cfg.Project, cfg.NodeNames(), uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	env := []string{
		"HEARTBEAT_TLS_DIR=" + tlsDir,
		"HEARTBEAT_IMAGE=" + cfg.Image,
		"HEARTBEAT_SUBNET=" + cfg.Subnet,
		"HEARTBEAT_PORT_PREFIX=" + cfg.PortPrefix,
		"HEARTBEAT_CLUSTER_ID=" + cfg.Project,
		"HEARTBEAT_HEARTBEAT_TIMEOUT=" + cfg.HeartbeatTimeout.String(),
		"HEARTBEAT_LOG_LEVEL=debug",
	}
	// zero: the node's default (it scales them from the heartbeat timeout)
	if cfg.ElectionTimeout > 0 {
		env = append(env, "HEARTBEAT_ELECTION_TIMEOUT="+cfg.ElectionTimeout.String())
	}
	if cfg.LeaseDuration > 0 {
		env = append(env, "HEARTBEAT_LEASE_DURATION="+cfg.LeaseDuration.String())
	}
	comp, err := NewCompose(ctx, root, cfg.Project, files, env)
	if err != nil {
		t.Fatal(err)
	}
	cl := NewCluster(cfg, comp)
	// Cleanups run last-registered first: logs are saved before Down.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := cl.Down(ctx); err != nil {
			t.Errorf("compose down: %v", err)
		}
	})
	// Node logs are kept on every run (about 1-2 MB): a slow failover is
	// worth a look even when no checker failed.
	t.Cleanup(func() { saveLogs(t, cl, filepath.Join(out, "logs")) })
	if err := cl.Up(ctx); err != nil {
		t.Fatal(err)
	}

	h := NewHistory(cl.Nodes)
	var targets []RecorderTarget
	for _, n := range cl.Nodes {
		targets = append(targets, RecorderTarget{Node: n, HTTPAddr: cl.HTTPAddr(n), ClientAddr: cl.ClientAddr(n)})
	}
	rec, err := StartRecorder(h, targets, cfg.Poll, cfg.PollTimeout, ctls)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rec.Close)
	r := &runner{t: t, ctx: ctx, cfg: cfg, cl: cl, h: h, rec: rec, rng: rand.New(rand.NewSource(cfg.Seed)),
		netem: cl.NetemSupported(ctx, cl.Nodes[0])}
	loadStart := loadAvg()

	plan := selectFaults(faultPlan(cfg), cfg.Faults)
	if len(plan) == 0 {
		t.Fatalf("CHAOS_FAULTS=%s selects no fault", strings.Join(cfg.Faults, ","))
	}
	app, err := StartWorkload(h, cl.Nodes, cl.ClientAddr, cfg.UnsafeNoLeaseTimer, ctls.DialOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = app.Stop() })
	rw, err := StartLinWorkload(h, cl.Nodes, cl.ClientAddr, cfg.StaleReads, cfg.Seed, ctls.DialOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rw.Stop)

	var stopErr error
	if _, err := r.waitStable(time.Minute); err != nil {
		stopErr = fmt.Errorf("cluster never formed: %w", err)
	} else {
		stopErr = r.startWork(app)
	}
	for run := 1; run <= cfg.Runs && stopErr == nil; run++ {
		if stopErr = r.quiet(3*time.Second, run); stopErr != nil {
			break
		}
		for _, d := range plan {
			t.Logf("run %d: %s/%s", run, d.kind, d.target)
			if stopErr = r.runFault(d, run); stopErr != nil {
				break
			}
		}
	}
	if stopErr != nil {
		t.Errorf("suite stopped: %v", stopErr)
	} else if !r.waitFor(cfg.RestartBound, func() bool { ok, _ := app.Live(workResources); return ok }) {
		_, desc := app.Live(workResources)
		t.Errorf("application workload not live after the last fault, within %s: %s", cfg.RestartBound, desc)
	}
	if err := app.Stop(); err != nil {
		t.Errorf("application workload: %v", err)
	}
	rw.Stop()
	rec.Close()

	snap := h.Snapshot()
	vs := CheckAll(snap, DefaultCheckOptions())
	for _, v := range vs {
		t.Errorf("violation: %s", v)
	}
	info := ReportInfo{
		Config: cfg, Began: began, Duration: time.Since(began),
		Commit: gitCommit(root), GoVersion: runtime.Version(), DockerVersion: dockerVersion(ctx),
		ComposeVersion: comp.Tool() + ": " + comp.Version(ctx), Image: cfg.Image + " " + imageID(ctx, cfg.Image),
		Command: reproduce(cfg), Notes: r.notes,
	}
	info.Notes = append(info.Notes, fmt.Sprintf("host load average (1/5/15 min) at start %s, at end %s, on %d CPUs (the machine is shared)",
		loadStart, loadAvg(), runtime.NumCPU()))
	info.Notes = append(info.Notes, fmt.Sprintf("application workload: %d clients (one per node), leader job + %d resources", len(cl.Nodes), workResources))
	info.Notes = append(info.Notes, fmt.Sprintf("reads-and-writes workload: %d clients on %d resources (lin-*), consistent reads", linClients, linKeys))
	if cfg.StaleReads {
		info.Notes = append(info.Notes, "**the reads-and-writes clients read stale** (CHAOS_STALE_READS): R1 violations are planted, expected")
	}
	if cfg.UnsafeNoLeaseTimer {
		info.Notes = append(info.Notes, "**the application clients ran with UnsafeNoLeaseTimer=true** (client lease timer off): A1 violations are planted, expected")
	}
	if stopErr != nil {
		info.Notes = append(info.Notes, "the suite stopped early: "+stopErr.Error())
	}
	writeFile(t, filepath.Join(out, "report.md"), func(f *os.File) error { return WriteReport(f, snap, vs, info) })
	writeFile(t, filepath.Join(out, "timeline.svg"), func(f *os.File) error { return WriteTimeline(f, snap) })
	// Always kept (a few hundred KB): chaos-replay re-checks and re-renders it.
	if err := snap.WriteJSON(filepath.Join(out, "history.json")); err != nil {
		t.Error(err)
	}
	t.Logf("report: %s", filepath.Join(out, "report.md"))
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func writeFile(t *testing.T, path string, fn func(*os.File) error) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Error(err)
		return
	}
	if err := fn(f); err != nil {
		t.Error(err)
	}
	if err := f.Close(); err != nil {
		t.Error(err)
	}
}

func saveLogs(t *testing.T, cl *Cluster, dir string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Error(err)
		return
	}
	for _, n := range cl.Nodes {
		logs, err := cl.Logs(ctx, n)
		if err != nil {
			logs += "\n(chaos: " + err.Error() + ")\n"
		}
		if err := os.WriteFile(filepath.Join(dir, n+".log"), []byte(logs), 0o644); err != nil {
			t.Error(err)
		}
	}
	t.Logf("node logs kept in %s", dir)
}

func reproduce(c Config) string {
	var env []string
	if c.Quick {
		env = append(env, "CHAOS_QUICK=1")
	} else {
		env = append(env, fmt.Sprintf("CHAOS_RUNS=%d", c.Runs))
	}
	env = append(env, fmt.Sprintf("CHAOS_SEED=%d", c.Seed), fmt.Sprintf("CHAOS_NODES=%d", c.Nodes),
		"CHAOS_HEARTBEAT_TIMEOUT="+c.HeartbeatTimeout.String())
	if c.ElectionTimeout > 0 {
		env = append(env, "CHAOS_ELECTION_TIMEOUT="+c.ElectionTimeout.String())
	}
	if c.LeaseDuration > 0 {
		env = append(env, "CHAOS_LEASE_DURATION="+c.LeaseDuration.String())
	}
	if len(c.Faults) > 0 {
		env = append(env, "CHAOS_FAULTS="+strings.Join(c.Faults, ","))
	}
	if c.UnsafeNoLeaseTimer {
		env = append(env, "CHAOS_UNSAFE_NO_LEASE_TIMER=1")
	}
	if c.Insecure {
		env = append(env, "CHAOS_INSECURE=1")
	}
	return strings.Join(env, " ") + " go test -tags chaos -count=1 -v -timeout 60m ./test/chaos/ -run TestChaos"
}

func gitCommit(root string) string {
	out, err := exec.Command("git", "-C", root, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return ""
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "-C", root, "status", "--porcelain").Output(); err == nil && len(st) > 0 {
		c += " (with uncommitted changes)"
	}
	return c
}

func dockerVersion(ctx context.Context) string {
	v, _ := run(ctx, "docker", "version", "--format", "{{.Server.Version}}")
	return v
}

func imageID(ctx context.Context, image string) string {
	v, _ := run(ctx, "docker", "image", "inspect", "-f", "{{.Id}}", image)
	if len(v) > 19 {
		v = v[:19]
	}
	return v
}
