package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/raft"

	"github.com/heartbeat-sidecar/heartbeat/bench"
	"github.com/heartbeat-sidecar/heartbeat/bench/throughput"
	"github.com/heartbeat-sidecar/heartbeat/election"
)

// Config is the whole command line.
type Config struct {
	Run          bench.RunConfig
	Phases       bench.Phases
	Systems      []string
	Curve        bool
	CurveTimings []time.Duration
	CurvePhases  bench.Phases
	Out          string
	HeartbeatBin string
	RaftTCPBin   string
	Throughput   bool
	TP           throughput.Config
	HBTiming     bench.Timing // Heartbeat's default raft timing, for rafttcp-hb
}

// DefaultConfig is the full benchmark of the issue.
func DefaultConfig() Config {
	ec := election.DefaultConfig()
	return Config{
		Run: bench.DefaultRunConfig(),
		Phases: bench.Phases{Kills: 20, Stops: 20, Idle: 30 * time.Second, Busy: 10 * time.Minute,
			Reassign: []int{10000, 100000}, ReassignKills: 5, LeaseResources: bench.DefaultLeaseResources},
		Systems:      []string{"heartbeat", "heartbeat-tls", "rafttcp-default", "rafttcp-hb"},
		CurveTimings: []time.Duration{100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond, time.Second},
		CurvePhases:  bench.Phases{Kills: 10, Stops: 10, Idle: 15 * time.Second},
		Out:          filepath.Join("bench", "out"),
		Throughput:   true,
		TP:           throughput.DefaultConfig(),
		HBTiming: bench.Timing{HeartbeatTimeout: ec.HeartbeatTimeout, ElectionTimeout: ec.ElectionTimeout,
			LeaseTimeout: ec.LeaderLeaseTimeout},
	}
}

// errUsage marks command-line errors (exit status 2).
var errUsage = errors.New("usage")

// Validate checks the command line, then the runner and throughput configs.
func (c Config) Validate() error {
	if len(c.Systems) == 0 {
		return fmt.Errorf("%w: --systems is empty", errUsage)
	}
	for _, s := range c.Systems {
		if _, err := c.system(s, "", ""); err != nil {
			return err
		}
	}
	if c.Phases.Kills < 0 || c.Phases.Stops < 0 || c.Phases.Idle < 0 || c.Phases.Busy < 0 || c.Phases.ReassignKills < 0 ||
		c.Phases.LeasePauses < 0 || c.Phases.LeaseResources < 0 {
		return fmt.Errorf("%w: negative phase", errUsage)
	}
	if err := c.Run.Validate(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if c.Throughput {
		if err := c.TP.Validate(); err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
	}
	return nil
}

// system maps a --systems name to what to start.
func (c Config) system(name, hbBin, rtBin string) (bench.System, error) {
	switch name {
	case "heartbeat":
		return bench.System{Name: name, Kind: bench.KindHeartbeat, Binary: hbBin, Note: c.hbNote(election.DefaultConfig().FastFailover)}, nil
	case "heartbeat-tls":
		return bench.System{Name: name, Kind: bench.KindHeartbeat, Binary: hbBin, TLS: true,
			Note: c.hbNote(election.DefaultConfig().FastFailover) + ", mutual TLS"}, nil
	case "heartbeat-nofast":
		return bench.System{Name: name, Kind: bench.KindHeartbeat, Binary: hbBin, Note: c.hbNote(false),
			Args: []string{"--fast-failover=false"}}, nil
	case "rafttcp-default":
		rc := raft.DefaultConfig()
		return bench.System{Name: name, Kind: bench.KindRaftTCP, Binary: rtBin, Note: "raft default: " + bench.Timing{
			HeartbeatTimeout: rc.HeartbeatTimeout, ElectionTimeout: rc.ElectionTimeout, LeaseTimeout: rc.LeaderLeaseTimeout}.String()}, nil
	case "rafttcp-hb":
		return bench.System{Name: name, Kind: bench.KindRaftTCP, Binary: rtBin, Timing: c.HBTiming}, nil
	}
	return bench.System{}, fmt.Errorf("%w: unknown system %q (heartbeat, heartbeat-tls, heartbeat-nofast, rafttcp-default, rafttcp-hb)", errUsage, name)
}

// hbNote describes the heartbeat binary's default timing (election.DefaultConfig, which
// cmd/node's flags default to).
func (c Config) hbNote(fast bool) string {
	ec := election.DefaultConfig()
	return fmt.Sprintf("default: hb=%v/el=%v/lease=%v, raft lease %v, fast failover %v",
		ec.HeartbeatTimeout, ec.ElectionTimeout, ec.LeaseDuration, ec.LeaderLeaseTimeout, fast)
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "burn" {
		// The busy phase's CPU burner: spin on every core GOMAXPROCS allows until signalled.
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		bench.Burn(ctx, runtime.GOMAXPROCS(0))
		return
	}
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "hbbench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "hbbench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (Config, error) {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("hbbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&cfg.Run.Nodes, "nodes", cfg.Run.Nodes, "cluster size")
	fs.IntVar(&cfg.Phases.Kills, "kills", cfg.Phases.Kills, "SIGKILLs of the leader per system")
	fs.IntVar(&cfg.Phases.Stops, "stops", cfg.Phases.Stops, "SIGSTOPs of the leader per system")
	fs.DurationVar(&cfg.Phases.Idle, "idle", cfg.Phases.Idle, "idle CPU sampling window (0: skip)")
	fs.DurationVar(&cfg.Phases.Busy, "busy", cfg.Phases.Busy, "busy phase with both cores burnt (0: skip)")
	systems := fs.String("systems", strings.Join(cfg.Systems, ","), "systems to run: heartbeat, heartbeat-tls, heartbeat-nofast, rafttcp-default, rafttcp-hb")
	fs.BoolVar(&cfg.Curve, "curve", false, "also run heartbeat and rafttcp at each --curve-timings value")
	timings := fs.String("curve-timings", "100ms,250ms,500ms,1s", "heartbeat/election timeouts of the trade-off curve")
	fs.IntVar(&cfg.CurvePhases.Kills, "curve-kills", cfg.CurvePhases.Kills, "SIGKILLs per curve point")
	fs.IntVar(&cfg.CurvePhases.Stops, "curve-stops", cfg.CurvePhases.Stops, "SIGSTOPs per curve point")
	fs.DurationVar(&cfg.CurvePhases.Idle, "curve-idle", cfg.CurvePhases.Idle, "idle window per curve point")
	fs.StringVar(&cfg.Out, "out", cfg.Out, "directory for results.json and results.md")
	fs.StringVar(&cfg.Run.WorkDir, "work-dir", cfg.Run.WorkDir, "data dirs, node logs and built binaries")
	fs.IntVar(&cfg.Run.BasePort, "base-port", cfg.Run.BasePort, "node i listens on base+10i, +1, +2")
	fs.DurationVar(&cfg.Run.PollInterval, "poll-interval", cfg.Run.PollInterval, "status poll period during faults")
	fs.DurationVar(&cfg.Run.PollTimeout, "poll-timeout", cfg.Run.PollTimeout, "per-poll HTTP timeout")
	fs.StringVar(&cfg.HeartbeatBin, "heartbeat-bin", "", "heartbeat binary (empty: go build ./cmd/node)")
	fs.StringVar(&cfg.RaftTCPBin, "rafttcp-bin", "", "rafttcp binary (empty: go build ./bench/cmd/rafttcp)")
	fs.BoolVar(&cfg.Throughput, "throughput", cfg.Throughput, "measure in-process apply throughput")
	fs.IntVar(&cfg.TP.Entries, "tp-entries", cfg.TP.Entries, "entries per throughput measurement")
	fs.IntVar(&cfg.TP.Appliers, "tp-appliers", cfg.TP.Appliers, "concurrent appliers")
	fs.IntVar(&cfg.TP.Rounds, "tp-rounds", cfg.TP.Rounds, "throughput rounds per transport (median taken)")
	fs.StringVar(&cfg.TP.Store, "tp-store", cfg.TP.Store, "throughput log store: mem or bolt")
	fs.BoolVar(&cfg.TP.TLS, "tp-tls", cfg.TP.TLS, "throughput: also Heartbeat's transport with mutual TLS (ratio to without)")
	reassign := fs.String("reassign", "10000,100000", "resource counts of the reassign phase (heartbeat only; empty or 0: skip)")
	fs.IntVar(&cfg.Phases.ReassignKills, "reassign-kills", cfg.Phases.ReassignKills, "follower SIGKILLs per reassign count")
	fs.IntVar(&cfg.Phases.LeasePauses, "lease-pauses", 0, "lease phase (heartbeat only; 0: skip): SIGSTOPs of the leader's sidecar, then of an owner's sidecar, this many of each, timing the application work's hand-over")
	fs.IntVar(&cfg.Phases.LeaseResources, "lease-resources", cfg.Phases.LeaseResources, "resources registered for the lease phase")
	fs.BoolVar(&cfg.Phases.LeaseUnsafeNoTimer, "lease-unsafe-no-timer", false, "lease phase with the clients' lease timers DISABLED: a planted violation the phase must report (exit status 1)")
	quick := fs.Bool("quick", false, "3 kills, 3 stops, 5s idle, 20s busy, reassign 10000 x2 kills, smaller throughput and curve runs")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *quick {
		quickDefaults(&cfg, set)
	}
	cfg.Systems = splitList(*systems)
	if *quick && !set["reassign"] {
		*reassign = "10000"
	}
	cfg.Phases.Reassign = nil
	for _, s := range splitList(*reassign) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return cfg, fmt.Errorf("%w: --reassign %q", errUsage, s)
		}
		if n > 0 {
			cfg.Phases.Reassign = append(cfg.Phases.Reassign, n)
		}
	}
	cfg.CurveTimings = nil
	for _, s := range splitList(*timings) {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return cfg, fmt.Errorf("%w: --curve-timings %q", errUsage, s)
		}
		cfg.CurveTimings = append(cfg.CurveTimings, d)
	}
	return cfg, cfg.Validate()
}

// quickDefaults shrinks every phase the user did not set explicitly.
func quickDefaults(cfg *Config, set map[string]bool) {
	apply := func(name string, f func()) {
		if !set[name] {
			f()
		}
	}
	apply("kills", func() { cfg.Phases.Kills = 3 })
	apply("stops", func() { cfg.Phases.Stops = 3 })
	apply("idle", func() { cfg.Phases.Idle = 5 * time.Second })
	apply("busy", func() { cfg.Phases.Busy = 20 * time.Second })
	apply("curve-kills", func() { cfg.CurvePhases.Kills = 2 })
	apply("curve-stops", func() { cfg.CurvePhases.Stops = 2 })
	apply("curve-idle", func() { cfg.CurvePhases.Idle = 3 * time.Second })
	apply("tp-entries", func() { cfg.TP.Entries = 5000 })
	apply("reassign-kills", func() { cfg.Phases.ReassignKills = 2 })
	apply("tp-rounds", func() { cfg.TP.Rounds = 3 })
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// run builds the binaries, measures every system (and the curve, and throughput), prints
// the tables to stdout and writes them to cfg.Out. An interrupt stops the measuring, and
// whatever was measured is still written.
func run(ctx context.Context, cfg Config, stdout, stderr io.Writer) error {
	started := time.Now()
	hbBin, rtBin, err := binaries(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cfg.Run.BurnCommand = []string{self, "burn"}
	cfg.Run.Progress = stderr
	runner, err := bench.NewRunner(cfg.Run)
	if err != nil {
		return err
	}
	res := &bench.Results{StartedAt: started, Host: hostInfo(), Command: "hbbench " + strings.Join(os.Args[1:], " "),
		Phases: cfg.Phases}
	for _, name := range cfg.Systems {
		if ctx.Err() != nil {
			break
		}
		sys, _ := cfg.system(name, hbBin, rtBin)
		sr, _ := runner.Run(ctx, sys, cfg.Phases)
		res.Systems = append(res.Systems, sr)
	}
	if cfg.Curve {
		res.Curve = curve(ctx, cfg, runner, hbBin, rtBin)
	}
	if cfg.Throughput && ctx.Err() == nil {
		fmt.Fprintf(stderr, "throughput: %d entries x %d rounds per transport, %d appliers, %s store\n",
			cfg.TP.Entries, cfg.TP.Rounds, cfg.TP.Appliers, cfg.TP.Store)
		if cfg.TP.Store == "bolt" {
			cfg.TP.Dir = filepath.Join(cfg.Run.WorkDir, "throughput")
			defer os.RemoveAll(cfg.TP.Dir)
		}
		tp, err := throughput.Compare(ctx, cfg.TP)
		if err != nil {
			tp.Error = err.Error()
		}
		res.Throughput = &tp
	}
	var hb *bench.SystemResult
	for i := range res.Systems {
		if res.Systems[i].Name == "heartbeat" {
			hb = &res.Systems[i]
		}
	}
	res.Targets = bench.EvaluateTargets(hb, res.Throughput)
	res.Duration = time.Since(started).Round(time.Second).String()
	fmt.Fprint(stdout, res.Markdown())
	if err := res.Write(cfg.Out); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	fmt.Fprintf(stderr, "results written to %s/results.{json,md}\n", cfg.Out)
	if err := leaseViolations(res); err != nil {
		return err
	}
	return ctx.Err()
}

// errLeaseViolated: the lease phase saw two applications work on one thing at once.
var errLeaseViolated = errors.New("lease bound violated: old work not cancelled before new work started")

// leaseViolations returns errLeaseViolated, with what was seen, when any system's lease
// phase had a hand-over gap that was not positive or overlapping runs.
func leaseViolations(res *bench.Results) error {
	var all []string
	for _, s := range res.Systems {
		if s.Lease == nil {
			continue
		}
		for _, v := range s.Lease.Violations() {
			all = append(all, s.Name+": "+v)
		}
	}
	if len(all) == 0 {
		return nil
	}
	if len(all) > 10 {
		all = append(all[:10], fmt.Sprintf("… %d more", len(all)-10))
	}
	return fmt.Errorf("%w:\n  %s", errLeaseViolated, strings.Join(all, "\n  "))
}

// curve runs heartbeat and rafttcp at each curve timing.
func curve(ctx context.Context, cfg Config, runner *bench.Runner, hbBin, rtBin string) []bench.CurvePoint {
	var out []bench.CurvePoint
	for _, t := range cfg.CurveTimings {
		for _, sys := range []bench.System{
			{Kind: bench.KindHeartbeat, Binary: hbBin, Timing: bench.Timing{HeartbeatTimeout: t, ElectionTimeout: t, LeaseTimeout: t * 4 / 5}},
			{Kind: bench.KindRaftTCP, Binary: rtBin, Timing: bench.Timing{HeartbeatTimeout: t, ElectionTimeout: t, LeaseTimeout: t / 2}},
		} {
			if ctx.Err() != nil {
				return out
			}
			sys.Name = fmt.Sprintf("curve-%s-%v", sys.Kind, t)
			sr, _ := runner.Run(ctx, sys, cfg.CurvePhases)
			p := bench.CurvePoint{Kind: sys.Kind, Timing: sys.Timing, TimingText: sys.Timing.String(),
				Crash: sr.Crash.Summary, Silent: sr.Silent.Summary, Errors: sr.Errors}
			if sr.Idle != nil {
				p.LeaderCPU, p.Follower = sr.Idle.LeaderCPU, sr.Idle.FollowerCPUMean
			}
			out = append(out, p)
		}
	}
	return out
}

// binaries returns the given binaries or builds them with the go tool from the module root.
func binaries(ctx context.Context, cfg Config, stderr io.Writer) (hb, rt string, err error) {
	hb, rt = cfg.HeartbeatBin, cfg.RaftTCPBin
	need := map[bench.Kind]bool{}
	for _, s := range cfg.Systems {
		sys, _ := cfg.system(s, "", "")
		need[sys.Kind] = true
	}
	if cfg.Curve {
		need[bench.KindHeartbeat], need[bench.KindRaftTCP] = true, true
	}
	binDir := filepath.Join(cfg.Run.WorkDir, "bin")
	build := func(pkg, name string) (string, error) {
		out := filepath.Join(binDir, name)
		fmt.Fprintf(stderr, "building %s -> %s\n", pkg, out)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
		cmd.Stdout, cmd.Stderr = stderr, stderr
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("go build %s (run hbbench from the repository, or pass the binary): %w", pkg, err)
		}
		return out, nil
	}
	if hb == "" && need[bench.KindHeartbeat] {
		if hb, err = build("./cmd/node", "heartbeat"); err != nil {
			return "", "", err
		}
	}
	if rt == "" && need[bench.KindRaftTCP] {
		if rt, err = build("./bench/cmd/rafttcp", "rafttcp"); err != nil {
			return "", "", err
		}
	}
	return hb, rt, nil
}

func hostInfo() string {
	host, _ := os.Hostname()
	load, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(load))
	la := ""
	if len(f) >= 3 {
		la = strings.Join(f[:3], " ")
	}
	return fmt.Sprintf("%s, %d CPUs, %s, load %s at start", host, runtime.NumCPU(), runtime.Version(), la)
}
