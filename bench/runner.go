package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// RunConfig is how the Runner measures; the phases to run are given per call (Phases).
type RunConfig struct {
	Nodes            int           // cluster size (5)
	BasePort         int           // node i uses BasePort+10i .. +2
	WorkDir          string        // data dirs and node logs, one subdirectory per system
	PollInterval     time.Duration // status poll period during fault phases (2ms)
	PollTimeout      time.Duration // per-poll HTTP timeout (250ms)
	BusyPollInterval time.Duration // status poll period during the busy phase (500ms)
	StableFor        time.Duration // one agreed leader this long = stable, between faults
	StartTimeout     time.Duration // first leader of a fresh cluster
	FailoverTimeout  time.Duration // a fault not converged by then counts as failed
	PreFault         time.Duration // polling recorded before each fault
	IdleWarmup       time.Duration // wait after the pollers stop, before idle sampling
	// BurnCommand is the argv of the CPU burner for the busy phase; it is run with
	// GOMAXPROCS=2 and must spin until killed. Empty: no busy phase.
	BurnCommand []string
	// Progress receives one line per event (which system, which fault, elapsed); nil: none.
	Progress io.Writer
}

// DefaultRunConfig returns the method's settings: 5 nodes, 2 ms polls.
func DefaultRunConfig() RunConfig {
	return RunConfig{
		Nodes:            5,
		BasePort:         27400,
		WorkDir:          filepath.Join(os.TempDir(), "hbbench"),
		PollInterval:     2 * time.Millisecond,
		PollTimeout:      250 * time.Millisecond,
		BusyPollInterval: 500 * time.Millisecond,
		StableFor:        time.Second,
		StartTimeout:     60 * time.Second,
		FailoverTimeout:  30 * time.Second,
		PreFault:         100 * time.Millisecond,
		IdleWarmup:       2 * time.Second,
	}
}

// Validate reports the first unusable setting, wrapping ErrBadConfig.
func (c RunConfig) Validate() error {
	switch {
	case c.Nodes < 3:
		return fmt.Errorf("%w: nodes %d < 3 (a failover needs a surviving quorum)", ErrBadConfig, c.Nodes)
	case c.BasePort < 1024 || c.BasePort+10*c.Nodes+2 > 65535:
		return fmt.Errorf("%w: base port %d out of range", ErrBadConfig, c.BasePort)
	case c.WorkDir == "":
		return fmt.Errorf("%w: empty work dir", ErrBadConfig)
	case c.PollInterval <= 0 || c.PollTimeout <= 0 || c.BusyPollInterval <= 0:
		return fmt.Errorf("%w: poll interval and timeout must be positive", ErrBadConfig)
	case c.StartTimeout <= 0 || c.FailoverTimeout <= 0:
		return fmt.Errorf("%w: timeouts must be positive", ErrBadConfig)
	}
	return nil
}

// Phases says what to measure for one system; a zero count or duration skips that phase.
type Phases struct {
	Kills int           // SIGKILLs of the leader
	Stops int           // SIGSTOPs of the leader
	Idle  time.Duration // idle CPU sampling window
	Busy  time.Duration // CPU-burner window
	// Reassign lists resource counts for the reassign phase (Heartbeat systems only), each
	// on its own fresh cluster; ReassignKills is the number of follower kills per count.
	Reassign      []int `json:",omitempty"`
	ReassignKills int   `json:",omitempty"`
	// LeasePauses is the number of pauses of each kind in the lease phase (Heartbeat
	// systems only, on a fresh cluster of its own): SIGSTOPs of the leader's sidecar, then
	// of a sidecar that owns resources. LeaseResources is the number of resources it
	// registers (0: DefaultLeaseResources).
	LeasePauses    int `json:",omitempty"`
	LeaseResources int `json:",omitempty"`
	// LeaseUnsafeNoTimer runs the lease phase's clients without their lease timers
	// (client.Config.UnsafeNoLeaseTimer): a planted violation that the phase must report.
	LeaseUnsafeNoTimer bool `json:",omitempty"`
}

// base reports whether any phase needs the shared cluster (all but reassign).
func (ph Phases) base() bool {
	return ph.Kills > 0 || ph.Stops > 0 || ph.Idle > 0 || ph.Busy > 0
}

// Runner runs the phases against one system at a time. It is not safe for concurrent use.
type Runner struct {
	cfg   RunConfig
	start time.Time
}

// NewRunner validates cfg.
func NewRunner(cfg RunConfig) (*Runner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Runner{cfg: cfg, start: time.Now()}, nil
}

func (r *Runner) progress(sys, format string, args ...any) {
	if r.cfg.Progress == nil {
		return
	}
	el := time.Since(r.start).Round(time.Second)
	fmt.Fprintf(r.cfg.Progress, "[%8s] %-16s %s\n", el, sys, fmt.Sprintf(format, args...))
}

// Run starts a fresh cluster of sys (first, for a TLS system without TLSDir, its certificates:
// MakeTLS into WorkDir/<name>/tls, used by every cluster of this call) and measures the phases in this order: idle, crash,
// silent, busy; then, for a Heartbeat system, the reassign phase and the lease phase, each
// on fresh clusters of its own (the shared cluster is not started when only those are
// asked). A phase that fails is recorded in the result's Errors and the next phase
// still runs when the cluster is usable; the cluster is always killed before Run returns.
// Only ctx's cancellation aborts the run (its error is returned with the partial result).
func (r *Runner) Run(ctx context.Context, sys System, ph Phases) (SystemResult, error) {
	res := SystemResult{Name: sys.Name, Kind: sys.Kind, Timing: sys.Timing, TimingText: sys.TimingText()}
	dir := filepath.Join(r.cfg.WorkDir, sys.Name)
	res.LogDir = dir
	if sys.TLS && sys.TLSDir == "" {
		sys.TLSDir = filepath.Join(dir, "tls")
		if err := MakeTLS(sys.TLSDir, r.cfg.Nodes); err != nil {
			res.fail("tls", err)
			return res, ctx.Err()
		}
		r.progress(sys.Name, "certificates of %d nodes and the admin client made in %s", r.cfg.Nodes, sys.TLSDir)
	}
	if ph.base() {
		r.runBase(ctx, sys, ph, &res)
	}
	if len(ph.Reassign) > 0 && sys.Kind == KindHeartbeat && ctx.Err() == nil {
		res.Reassign = r.Reassign(ctx, sys, ph.Reassign, ph.ReassignKills)
	}
	if ph.LeasePauses > 0 && sys.Kind == KindHeartbeat && ctx.Err() == nil {
		res.Lease = r.Lease(ctx, sys, ph.LeasePauses, ph.LeaseResources, ph.LeaseUnsafeNoTimer)
	}
	r.progress(sys.Name, "done")
	return res, ctx.Err()
}

// runBase runs the phases on the shared cluster, recording into res.
func (r *Runner) runBase(ctx context.Context, sys System, ph Phases, res *SystemResult) {
	dir := res.LogDir
	r.progress(sys.Name, "starting %d nodes (%s, %s), logs under %s", r.cfg.Nodes, sys.Kind, sys.TimingText(), dir)
	c, err := StartCluster(sys, r.cfg.Nodes, r.cfg.BasePort, dir)
	if err != nil {
		res.fail("start", err)
		return
	}
	defer c.Close()
	fail := func(phase string, err error) bool {
		res.fail(phase, err)
		r.progress(sys.Name, "%s: %v", phase, err)
		return ctx.Err() != nil
	}

	if err := r.waitFirstLeader(ctx, c); err != nil {
		fail("start", err)
		return
	}
	if ph.Idle > 0 {
		idle, err := r.idle(ctx, c, ph.Idle)
		res.Idle = idle
		if err != nil && fail("idle", err) {
			return
		}
	}
	for _, f := range []struct {
		kind  faultKind
		count int
		out   *FaultResult
	}{{crash, ph.Kills, &res.Crash}, {silent, ph.Stops, &res.Silent}} {
		if f.count == 0 {
			continue
		}
		fr, err := r.faults(ctx, c, f.kind, f.count)
		*f.out = fr
		if err != nil && fail(string(f.kind), err) {
			return
		}
	}
	if ph.Busy > 0 && len(r.cfg.BurnCommand) > 0 {
		busy, err := r.busy(ctx, c, ph.Busy)
		if err != nil { // an incomplete busy phase proves nothing: no figure, an error
			fail("busy", err)
			return
		}
		res.Busy = &busy
	}
}

// waitFirstLeader polls until the fresh cluster is stable.
func (r *Runner) waitFirstLeader(ctx context.Context, c *Cluster) error {
	p := NewPoller(c.Targets(), 20*time.Millisecond, r.cfg.PollTimeout)
	defer p.Close()
	leader, err := r.waitStable(ctx, p, c, r.cfg.StartTimeout)
	if err == nil {
		r.progress(c.Sys.Name, "leader %s elected", leader)
	}
	return err
}

// waitStable waits until every node's poll, taken after the call began, names one leader
// that says it is leader while the others are followers, continuously for StableFor.
// It fails with ErrNoLeader after timeout, or if a node process has exited.
func (r *Runner) waitStable(ctx context.Context, p *Poller, c *Cluster, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ids := c.IDs()
	since := time.Now()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var cur string
	var curSince time.Time
	for {
		latest := p.Latest()
		fresh := true
		for _, id := range ids {
			if !latest[id].At.After(since) {
				fresh = false
			}
		}
		leader, ok := StableLeader(ids, latest)
		switch {
		case !fresh || !ok:
			cur = ""
		case leader != cur:
			cur, curSince = leader, time.Now()
		case time.Since(curSince) >= r.cfg.StableFor:
			return leader, nil
		}
		for _, pr := range c.Procs {
			if pr.Exited() {
				return "", fmt.Errorf("%s exited (see %s)", pr.Spec.ID, pr.Spec.LogPath)
			}
		}
		select {
		case <-ctx.Done():
			if err := context.Cause(ctx); errors.Is(err, context.DeadlineExceeded) {
				return "", fmt.Errorf("%w within %v: %s", ErrNoLeader, timeout, describe(ids, latest))
			}
			return "", ctx.Err()
		case <-tick.C:
		}
	}
}

// describe renders each node's latest view, for error messages.
func describe(ids []string, latest map[string]Sample) string {
	s := ""
	for _, id := range ids {
		l := latest[id]
		if !l.OK {
			s += fmt.Sprintf(" %s=down", id)
			continue
		}
		s += fmt.Sprintf(" %s=%s(t%d,leader=%s)", id, l.Status.State, l.Status.Term, l.Status.Leader.ID)
	}
	return s
}

type faultKind string

const (
	crash  faultKind = "crash"
	silent faultKind = "silent"
)

// faults injects count faults of one kind into the leader and measures each failover.
func (r *Runner) faults(ctx context.Context, c *Cluster, kind faultKind, count int) (out FaultResult, _ error) {
	p := NewPoller(c.Targets(), r.cfg.PollInterval, r.cfg.PollTimeout)
	defer p.Close()
	var durs, lat []time.Duration
	defer func() {
		if p99, err := Percentile(lat, 99); err == nil {
			out.PollP99Ms = ms(p99)
		}
	}()
	for k := 1; k <= count; k++ {
		leader, err := r.waitStable(ctx, p, c, r.cfg.StartTimeout)
		if err != nil {
			out.Summary = Summarize(durs, out.Summary.Failed)
			return out, fmt.Errorf("before %s %d/%d: %w", kind, k, count, err)
		}
		victim := c.Proc(leader)
		p.Reset()
		if err := sleepCtx(ctx, r.cfg.PreFault); err != nil {
			return out, err
		}
		fault := Fault{Victim: leader, At: time.Now()}
		for _, id := range c.IDs() {
			if id != leader {
				fault.Survivors = append(fault.Survivors, id)
			}
		}
		sig := syscall.SIGKILL
		if kind == silent {
			sig = syscall.SIGSTOP
		}
		if err := victim.Signal(sig); err != nil {
			return out, fmt.Errorf("%s %s: %w", kind, leader, err)
		}
		wctx, cancel := context.WithTimeout(ctx, r.cfg.FailoverTimeout)
		werr := p.WaitFor(wctx, func(l map[string]Sample) bool {
			_, ok := agreedNewLeader(fault, l)
			return ok
		})
		cancel()
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
		samples := p.Samples()
		for _, s := range samples {
			if s.OK {
				lat = append(lat, s.Latency)
			}
		}
		fo, err := ComputeFailover(fault, samples)
		line := ""
		if werr != nil || err != nil {
			out.Summary.Failed++
			out.Errors = append(out.Errors, fmt.Sprintf("%s %d: %v %v", kind, k, werr, err))
			line = fmt.Sprintf("FAILED (%v %v)", werr, err)
		} else {
			durs = append(durs, fo.Duration)
			out.MaxSilenceMs = max(out.MaxSilenceMs, ms(fo.Silence()))
			out.Runs = append(out.Runs, fo)
			line = fmt.Sprintf("%s -> %s in %.1f ms (victim's last answer %.1f ms before the signal)",
				fo.Victim, fo.NewLeader, float64(fo.Duration)/1e6, float64(fo.Silence())/1e6)
		}
		r.progress(c.Sys.Name, "%s %d/%d: %s", kind, k, count, line)
		if kind == crash {
			if err := victim.Kill(10 * time.Second); err != nil {
				return out, err
			}
			if err := victim.Start(); err != nil {
				return out, err
			}
		} else if err := victim.Signal(syscall.SIGCONT); err != nil {
			return out, err
		}
		out.Summary = Summarize(durs, out.Summary.Failed)
	}
	if _, err := r.waitStable(ctx, p, c, r.cfg.StartTimeout); err != nil {
		return out, fmt.Errorf("after the last %s: %w", kind, err)
	}
	return out, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
