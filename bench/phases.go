package bench

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// handshakeAllowance is added to a one-shot request's timeout over TLS: its connection is new,
// and on a loaded machine five concurrent handshakes can take longer than a poll's timeout.
// A one-shot view is not a latency measurement (the pollers keep their connections).
const handshakeAllowance = time.Second

// oneShotTimeout is timeout, plus handshakeAllowance for a TLS target.
func oneShotTimeout(t Target, timeout time.Duration) time.Duration {
	if t.TLS != nil {
		return timeout + handshakeAllowance
	}
	return timeout
}

// snapshot polls every node once, concurrently.
func snapshot(ctx context.Context, c *Cluster, timeout time.Duration) map[string]Sample {
	out := make(map[string]Sample, len(c.Procs))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, t := range c.Targets() {
		wg.Go(func() {
			client := NewHTTPClient(oneShotTimeout(t, timeout), t.TLS)
			defer client.CloseIdleConnections()
			st, err := FetchStatus(ctx, client, t.HTTPAddr)
			mu.Lock()
			out[t.ID] = Sample{Node: t.ID, At: time.Now(), OK: err == nil, Status: st}
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// idle samples every process's CPU counters and RSS over d with no pollers running, and
// checks that the leader stayed the same throughout.
func (r *Runner) idle(ctx context.Context, c *Cluster, d time.Duration) (*IdleResult, error) {
	ids := c.IDs()
	leader, ok := StableLeader(ids, snapshot(ctx, c, r.cfg.PollTimeout))
	if !ok {
		return nil, fmt.Errorf("no stable leader before the idle phase")
	}
	if err := sleepCtx(ctx, r.cfg.IdleWarmup); err != nil {
		return nil, err
	}
	r.progress(c.Sys.Name, "idle: sampling /proc for %v (leader %s, no polling)", d, leader)
	before := map[string]ProcSample{}
	for _, p := range c.Procs {
		s, err := ReadProc(p.PID())
		if err != nil {
			return nil, err
		}
		before[p.Spec.ID] = s
	}
	if err := sleepCtx(ctx, d); err != nil {
		return nil, err
	}
	res := &IdleResult{Seconds: d.Seconds(), Leader: leader}
	var sum float64
	for _, p := range c.Procs {
		after, err := ReadProc(p.PID())
		if err != nil {
			return nil, err
		}
		cpu, err := CPUPercent(before[p.Spec.ID], after)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.Spec.ID, err)
		}
		n := NodeIdle{ID: p.Spec.ID, CPUPercent: round2(cpu), RSSMB: round2(float64(after.RSSBytes) / (1 << 20))}
		res.Nodes = append(res.Nodes, n)
		res.MaxRSSMB = max(res.MaxRSSMB, n.RSSMB)
		if p.Spec.ID == leader {
			res.LeaderCPU, res.LeaderRSSMB = n.CPUPercent, n.RSSMB
			continue
		}
		sum += cpu
		res.FollowerCPUMax = max(res.FollowerCPUMax, n.CPUPercent)
		res.FollowerRSSMaxMB = max(res.FollowerRSSMaxMB, n.RSSMB)
	}
	res.FollowerCPUMean = round2(sum / float64(len(c.Procs)-1))
	after, ok := StableLeader(ids, snapshot(ctx, c, r.cfg.PollTimeout))
	if !ok || after != leader {
		return res, fmt.Errorf("leader changed during the idle phase (%s -> %s)", leader, after)
	}
	r.progress(c.Sys.Name, "idle: leader %.2f%%, followers mean %.2f%% max %.2f%%, RSS max %.1f MB",
		res.LeaderCPU, res.FollowerCPUMean, res.FollowerCPUMax, res.MaxRSSMB)
	return res, nil
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }

// busy runs the CPU burner for d while polling every BusyPollInterval, and counts term
// increments (any election that ran, won or lost, without pre-vote stopping it) and changes
// of the leader.
func (r *Runner) busy(ctx context.Context, c *Cluster, d time.Duration) (BusyResult, error) {
	ids := c.IDs()
	first := snapshot(ctx, c, r.cfg.PollTimeout)
	leader, ok := StableLeader(ids, first)
	if !ok {
		return BusyResult{}, fmt.Errorf("no stable leader before the busy phase: %s", describe(ids, first))
	}
	res := BusyResult{Seconds: d.Seconds(), LeaderStart: leader}
	for _, s := range first {
		res.TermStart = max(res.TermStart, s.Status.Term)
	}
	maxTerm := res.TermStart
	var deaths *FalseDeathCounter // Heartbeat only: rafttcp has no member states
	if c.Sys.Kind == KindHeartbeat {
		deaths = &FalseDeathCounter{}
	}

	burner := exec.Command(r.cfg.BurnCommand[0], r.cfg.BurnCommand[1:]...)
	burner.Env = append(os.Environ(), "GOMAXPROCS=2")
	burner.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := burner.Start(); err != nil {
		return res, fmt.Errorf("start burner: %w", err)
	}
	reaped := make(chan struct{})
	go func() { _ = burner.Wait(); close(reaped) }()
	stopBurner := func() {
		_ = burner.Process.Signal(syscall.SIGKILL)
		<-reaped
	}
	defer stopBurner()
	burnStart, _ := ReadProc(burner.Process.Pid)
	r.progress(c.Sys.Name, "busy: CPU burner pid %d on both cores for %v, polling every %v",
		burner.Process.Pid, d, r.cfg.BusyPollInterval)

	end := time.Now().Add(d)
	tick := time.NewTicker(r.cfg.BusyPollInterval)
	defer tick.Stop()
	lastReport := time.Now()
	for time.Now().Before(end) {
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-tick.C:
		}
		var snap map[string]Sample
		if deaths == nil {
			snap = snapshot(ctx, c, r.cfg.PollTimeout)
		} else {
			var wg sync.WaitGroup
			wg.Go(func() { snap = snapshot(ctx, c, r.cfg.PollTimeout) })
			for id, states := range memberStates(ctx, c, r.cfg.BusyPollInterval) {
				deaths.Observe(id, states)
			}
			wg.Wait()
		}
		res.Polls++
		for _, id := range ids {
			s := snap[id]
			if !s.OK {
				res.FailedPolls++
				continue
			}
			if s.Status.Term > maxTerm {
				res.TermIncrements += s.Status.Term - maxTerm
				maxTerm = s.Status.Term
			}
			if s.Status.State == "leader" && s.Status.ID != leader {
				res.LeaderChanges++
				leader = s.Status.ID
			}
		}
		if time.Since(lastReport) >= 30*time.Second {
			lastReport = time.Now()
			r.progress(c.Sys.Name, "busy: %v left, term increments %d, leader changes %d",
				time.Until(end).Round(time.Second), res.TermIncrements, res.LeaderChanges)
		}
	}
	if burnEnd, err := ReadProc(burner.Process.Pid); err == nil {
		if cpu, err := CPUPercent(burnStart, burnEnd); err == nil {
			res.BurnerCPU = round2(cpu)
		}
	}
	res.TermEnd, res.LeaderEnd = maxTerm, leader
	res.Pass = res.TermIncrements == 0 && res.LeaderChanges == 0
	fd := "not measured"
	if deaths != nil {
		res.FalseDeaths, res.FalseDeathEvents = &deaths.Count, deaths.Events
		fd = fmt.Sprint(deaths.Count)
	}
	r.progress(c.Sys.Name, "busy: burner used %.0f%% (of one core), term increments %d, leader changes %d, false deaths %s",
		res.BurnerCPU, res.TermIncrements, res.LeaderChanges, fd)
	return res, nil
}

// memberStates polls GET /v1/members on every node once, concurrently, and returns node id
// -> (member id -> state) for the nodes that answered within timeout.
func memberStates(ctx context.Context, c *Cluster, timeout time.Duration) map[string]map[string]string {
	out := make(map[string]map[string]string, len(c.Procs))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, t := range c.Targets() {
		wg.Go(func() {
			client := NewHTTPClient(oneShotTimeout(t, timeout), t.TLS)
			defer client.CloseIdleConnections()
			ms, err := fetchMembers(ctx, client, t.HTTPAddr)
			if err != nil {
				return
			}
			states := make(map[string]string, len(ms))
			for _, m := range ms {
				states[m.ID] = m.State
			}
			mu.Lock()
			out[t.ID] = states
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// Burn spins one goroutine per worker until ctx ends: the busy phase's CPU load. It returns
// only after every worker has stopped; the result is the workers' arithmetic, returned so that
// the compiler cannot drop the loop.
func Burn(ctx context.Context, workers int) uint64 {
	var wg sync.WaitGroup
	results := make([]uint64, max(workers, 1))
	for i := range results {
		wg.Go(func() {
			x := uint64(i + 1)
			for ctx.Err() == nil {
				for range 1 << 16 {
					x = x*6364136223846793005 + 1442695040888963407
				}
			}
			results[i] = x
		})
	}
	wg.Wait()
	var acc uint64
	for _, x := range results {
		acc ^= x
	}
	return acc
}
