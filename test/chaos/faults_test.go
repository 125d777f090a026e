//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"math/rand"
	"slices"
	"syscall"
	"testing"
	"time"
)

// runner carries what a fault needs: the cluster, the history, the recorder
// (for the current view) and a seeded random source for picking targets.
type runner struct {
	t   *testing.T
	ctx context.Context
	cfg Config
	cl  *Cluster
	h   *History
	rec *Recorder
	rng *rand.Rand
	// netem is whether the kernel has sch_netem (delay is skipped and loss
	// falls back to iptables without it).
	netem bool
	notes []string
}

// kill SIGKILLs nodes and tells the recorder they are down.
func (r *runner) kill(nodes ...string) error {
	for _, n := range nodes {
		r.rec.SetDown(n, true)
	}
	return r.cl.Kill(r.ctx, nodes...)
}

// stop stops nodes gracefully (SIGTERM) and tells the recorder.
func (r *runner) stop(nodes ...string) error {
	for _, n := range nodes {
		r.rec.SetDown(n, true)
	}
	return r.cl.Stop(r.ctx, nodes...)
}

// start starts nodes again.
func (r *runner) start(nodes ...string) error {
	err := r.cl.Start(r.ctx, nodes...)
	for _, n := range nodes {
		r.rec.SetDown(n, false)
	}
	return err
}

// view is the cluster's current agreed leadership.
type view struct {
	leader    string
	term      uint64
	token     uint64
	followers []string
}

// agreed returns the current view when every node answers, names the same
// leader with the same fencing token, and that leader claims it.
func (r *runner) agreed() (view, bool) {
	var v view
	for i, n := range r.cl.Nodes {
		e, ok := r.rec.Latest(n)
		if !ok || !e.Answered() || e.Leader == "" || e.Token == 0 {
			return v, false
		}
		if i == 0 {
			v.leader, v.token = e.Leader, e.Token
		}
		if e.Leader != v.leader || e.Token != v.token {
			return v, false
		}
		if n == e.Leader {
			if !e.IsSelf {
				return v, false
			}
			v.term = e.Term
		} else {
			v.followers = append(v.followers, n)
		}
	}
	return v, v.term != 0
}

// waitFor polls cond every 10 ms until it holds or d passes.
func (r *runner) waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) || r.ctx.Err() != nil {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitStable waits until the view has been agreed for 500 ms in a row.
func (r *runner) waitStable(d time.Duration) (view, error) {
	var since time.Time
	var last view
	ok := r.waitFor(d, func() bool {
		v, ok := r.agreed()
		if !ok {
			last = view{}
			return false
		}
		if v.leader != last.leader || v.token != last.token {
			since, last = time.Now(), v
			return false
		}
		return time.Since(since) >= 500*time.Millisecond
	})
	if !ok {
		return last, fmt.Errorf("cluster not stable within %s: %s", d, r.describe())
	}
	return last, nil
}

// describe prints every node's latest status, for error messages.
func (r *runner) describe() string {
	s := ""
	for _, n := range r.cl.Nodes {
		e, _ := r.rec.Latest(n)
		s += fmt.Sprintf("[%s %s term=%d leader=%q token=%d self=%v", n, e.Role, e.Term, e.Leader, e.Token, e.IsSelf)
		if e.Err != "" {
			s += " err=" + e.Err
		}
		s += "] "
	}
	return s
}

// elected reports whether every node of nodes names a leader with a token
// above old.
func (r *runner) elected(nodes []string, old uint64) bool {
	for _, n := range nodes {
		e, ok := r.rec.Latest(n)
		if !ok || !e.Answered() || e.Leader == "" || e.Token <= old {
			return false
		}
	}
	return true
}

// hold lets a fault last d (the fault's length, not a wait for a state).
func (r *runner) hold(d time.Duration) {
	select {
	case <-r.ctx.Done():
	case <-time.After(d):
	}
}

func (r *runner) pick(from []string, k int) []string {
	s := slices.Clone(from)
	r.rng.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
	return s[:k]
}

func others(all, except []string) []string {
	var out []string
	for _, n := range all {
		if !slices.Contains(except, n) {
			out = append(out, n)
		}
	}
	return out
}

// window is one fault in progress.
type window struct {
	r   *runner
	idx int
	v   view
}

func (w *window) nodes(ns ...string) {
	w.r.h.UpdateFault(w.idx, func(f *Fault) { f.Nodes = slices.Clone(ns) })
}
func (w *window) injected() {
	at := w.r.h.Since()
	w.r.h.UpdateFault(w.idx, func(f *Fault) { f.Injected = at })
}

// started moves the window's start to now (for a fault whose preparation,
// such as a PID lookup, should not count as part of it).
func (w *window) started() {
	at := w.r.h.Since()
	w.r.h.UpdateFault(w.idx, func(f *Fault) { f.Start = at })
}

// restarted marks the moment every restarted node's container runs again.
func (w *window) restarted() {
	at := w.r.h.Since()
	w.r.h.UpdateFault(w.idx, func(f *Fault) { f.Restarted = at })
}

func (w *window) lifted() {
	at := w.r.h.Since()
	w.r.h.UpdateFault(w.idx, func(f *Fault) {
		if f.End == 0 {
			f.End = at
		}
		if f.Injected == 0 {
			f.Injected = at
		}
	})
}

// waitElected waits (up to the bound and some slack) for nodes to name a
// new leader; the checker, not this wait, decides whether it was in time.
func (w *window) waitElected(nodes []string, bound time.Duration) {
	w.r.waitFor(bound+3*time.Second, func() bool { return w.r.elected(nodes, w.v.token) })
}

// faultDef is one fault kind against one target.
type faultDef struct {
	kind, target string
	expect       Expect
	bound        func(Config) time.Duration
	do           func(w *window) error
}

func crash(c Config) time.Duration   { return c.CrashBound }
func silent(c Config) time.Duration  { return c.SilentBound }
func restart(c Config) time.Duration { return c.RestartBound }

// faultPlan lists the faults, in the order they run.
func faultPlan(c Config) []faultDef {
	ht := c.HeartbeatTimeout
	return []faultDef{
		{KindKill, "leader", ExpectFailover, crash, func(w *window) error {
			l := w.v.leader
			w.nodes(l)
			if err := w.r.kill(l); err != nil {
				return err
			}
			w.injected()
			w.waitElected(others(w.r.cl.Nodes, []string{l}), c.CrashBound)
			w.lifted()
			err := w.r.start(l)
			return err
		}},
		{KindKill, "follower", ExpectStable, nil, func(w *window) error {
			f := w.r.pick(w.v.followers, 1)
			w.nodes(f...)
			if err := w.r.kill(f...); err != nil {
				return err
			}
			w.injected()
			w.r.hold(time.Second)
			w.lifted()
			err := w.r.start(f...)
			return err
		}},
		{KindPauseShort, "leader", ExpectStable, nil, func(w *window) error {
			// SIGSTOP/SIGCONT from the host: precise, unlike docker pause's
			// ~0.5 s CLI. The freeze lasts ht/4, well under ht.
			l := w.v.leader
			w.nodes(l)
			pid, err := w.r.cl.PID(w.r.ctx, l)
			if err != nil {
				return err
			}
			w.started() // the window starts at the signal, not at the PID lookup
			if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
				return err
			}
			w.injected()
			time.Sleep(ht / 4) // the fault's length
			w.lifted()
			err = syscall.Kill(pid, syscall.SIGCONT)
			return err
		}},
		{KindPauseLong, "leader", ExpectFailover, silent, func(w *window) error {
			l := w.v.leader
			w.nodes(l)
			if err := w.r.cl.Pause(w.r.ctx, l); err != nil {
				return err
			}
			w.injected()
			w.waitElected(others(w.r.cl.Nodes, []string{l}), c.SilentBound)
			w.r.hold(500 * time.Millisecond)
			w.lifted()
			err := w.r.cl.Unpause(w.r.ctx, l)
			return err
		}},
		{KindPauseLong, "follower", ExpectStable, nil, func(w *window) error {
			f := w.r.pick(w.v.followers, 1)
			w.nodes(f...)
			if err := w.r.cl.Pause(w.r.ctx, f...); err != nil {
				return err
			}
			w.injected()
			w.r.hold(max(3*ht, 1500*time.Millisecond))
			w.lifted()
			err := w.r.cl.Unpause(w.r.ctx, f...)
			return err
		}},
		{KindIsolate, "leader", ExpectFailover, silent, func(w *window) error {
			l := w.v.leader
			rest := others(w.r.cl.Nodes, []string{l})
			w.nodes(l)
			if err := w.r.cl.Partition(w.r.ctx, []string{l}, rest); err != nil {
				return err
			}
			w.injected()
			w.waitElected(rest, c.SilentBound)
			w.r.hold(time.Second) // the old leader must have stepped down by now
			w.lifted()
			err := w.r.cl.Heal(w.r.ctx, l)
			return err
		}},
		{KindIsolate, "follower", ExpectStable, nil, func(w *window) error {
			f := w.r.pick(w.v.followers, 1)
			w.nodes(f...)
			if err := w.r.cl.Partition(w.r.ctx, f, others(w.r.cl.Nodes, f)); err != nil {
				return err
			}
			w.injected()
			w.r.hold(2 * time.Second)
			w.lifted()
			err := w.r.cl.Heal(w.r.ctx, f...)
			return err
		}},
		{KindDisconnect, "leader", ExpectFailover, silent, func(w *window) error {
			l := w.v.leader
			w.nodes(l)
			if err := w.r.cl.Disconnect(w.r.ctx, l); err != nil {
				return err
			}
			w.injected()
			w.waitElected(others(w.r.cl.Nodes, []string{l}), c.SilentBound)
			w.r.hold(500 * time.Millisecond)
			w.lifted()
			err := w.r.cl.Connect(w.r.ctx, l)
			return err
		}},
		{KindPartitionMinority, "followers", ExpectStable, nil, func(w *window) error {
			minority := w.r.pick(w.v.followers, len(w.r.cl.Nodes)/2)
			w.nodes(minority...)
			if err := w.r.cl.Partition(w.r.ctx, minority, others(w.r.cl.Nodes, minority)); err != nil {
				return err
			}
			w.injected()
			w.r.hold(2 * time.Second)
			w.lifted()
			err := w.r.cl.Heal(w.r.ctx, minority...)
			return err
		}},
		{KindPartitionMajority, "leader", ExpectFailover, silent, func(w *window) error {
			side := append([]string{w.v.leader}, w.r.pick(w.v.followers, len(w.r.cl.Nodes)/2-1)...)
			rest := others(w.r.cl.Nodes, side)
			w.nodes(side...)
			if err := w.r.cl.Partition(w.r.ctx, side, rest); err != nil {
				return err
			}
			w.injected()
			w.waitElected(rest, c.SilentBound)
			w.r.hold(time.Second)
			w.lifted()
			err := w.r.cl.Heal(w.r.ctx, side...)
			return err
		}},
		{KindOneWay, "leader", ExpectFailover, silent, func(w *window) error {
			l := w.v.leader
			rest := others(w.r.cl.Nodes, []string{l})
			w.nodes(l)
			if err := w.r.cl.Block(w.r.ctx, l, rest, Inbound); err != nil {
				return err
			}
			w.injected()
			w.waitElected(rest, c.SilentBound)
			w.r.hold(time.Second)
			w.lifted()
			err := w.r.cl.Heal(w.r.ctx, l)
			return err
		}},
		{KindOneWay, "follower", ExpectNothing, nil, func(w *window) error {
			f := w.r.pick(w.v.followers, 1)
			w.nodes(f...)
			if err := w.r.cl.Block(w.r.ctx, f[0], others(w.r.cl.Nodes, f), Inbound); err != nil {
				return err
			}
			w.injected()
			w.r.hold(2 * time.Second)
			w.lifted()
			err := w.r.cl.Heal(w.r.ctx, f...)
			return err
		}},
		{KindFlap, "leader", ExpectNothing, nil, func(w *window) error {
			l := w.v.leader
			f := w.r.pick(w.v.followers, 1)
			w.nodes(l, f[0])
			w.injected()
			for range 6 {
				if err := w.r.cl.Partition(w.r.ctx, []string{l}, f); err != nil {
					return err
				}
				w.r.hold(300 * time.Millisecond)
				if err := w.r.cl.Heal(w.r.ctx, l); err != nil {
					return err
				}
				w.r.hold(300 * time.Millisecond)
			}
			w.lifted()
			return nil
		}},
		{KindDelay, "leader", ExpectNothing, nil, func(w *window) error {
			l := w.v.leader
			w.nodes(l)
			if err := w.r.cl.Netem(w.r.ctx, l, "delay", "100ms", "20ms"); err != nil {
				return err
			}
			w.injected()
			w.r.hold(3 * time.Second)
			w.lifted()
			return w.r.cl.ClearNetem(w.r.ctx, l)
		}},
		{KindLoss, "leader", ExpectNothing, nil, func(w *window) error {
			l := w.v.leader
			w.nodes(l)
			var err error
			if w.r.netem {
				err = w.r.cl.Netem(w.r.ctx, l, "loss", "20%")
			} else {
				err = w.r.cl.Loss(w.r.ctx, l, others(w.r.cl.Nodes, []string{l}), 0.2)
			}
			if err != nil {
				return err
			}
			w.injected()
			w.r.hold(3 * time.Second)
			w.lifted()
			if w.r.netem {
				return w.r.cl.ClearNetem(w.r.ctx, l)
			}
			return w.r.cl.ClearLoss(w.r.ctx, l)
		}},
		{KindKillMajority, "leader", ExpectFailover, restart, func(w *window) error {
			killed := append([]string{w.v.leader}, w.r.pick(w.v.followers, len(w.r.cl.Nodes)/2)...)
			w.nodes(killed...)
			if err := w.r.kill(killed...); err != nil {
				return err
			}
			w.injected()
			w.r.hold(1500 * time.Millisecond) // no quorum: nobody may lead
			w.lifted()
			err := w.r.start(killed...)
			w.restarted()
			return err
		}},
		{KindKillAll, "all", ExpectFailover, restart, func(w *window) error {
			var acked uint64
			for _, n := range w.r.cl.Nodes {
				if e, ok := w.r.rec.Latest(n); ok {
					acked = max(acked, e.CommitIndex)
				}
			}
			w.r.h.UpdateFault(w.idx, func(f *Fault) { f.Recovered = acked })
			w.nodes(w.r.cl.Nodes...)
			if err := w.r.kill(w.r.cl.Nodes...); err != nil {
				return err
			}
			w.injected()
			w.r.hold(time.Second)
			w.lifted()
			err := w.r.start(w.r.cl.Nodes...)
			w.restarted()
			return err
		}},
		{KindRolling, "all", ExpectNothing, nil, func(w *window) error {
			order := append(slices.Clone(w.v.followers), w.v.leader) // leader last
			w.nodes(order...)
			w.injected()
			for _, n := range order {
				if err := w.r.stop(n); err != nil {
					return err
				}
				if err := w.r.start(n); err != nil {
					return err
				}
				if _, err := w.r.waitStable(c.RestartBound); err != nil {
					return fmt.Errorf("after restarting %s: %w", n, err)
				}
			}
			w.lifted()
			return nil
		}},
	}
}

// runFault runs one fault window: it records the window, injects, lifts,
// and waits for the cluster to settle. A fault that cannot be injected is an
// error of the suite (t.Errorf), not a violation.
func (r *runner) runFault(d faultDef, run int) error {
	v, err := r.waitStable(r.cfg.RestartBound)
	if err != nil {
		return fmt.Errorf("before %s/%s#%d: %w", d.kind, d.target, run, err)
	}
	if d.kind == KindDelay && !r.netem {
		if run == 1 {
			r.notes = append(r.notes, fmt.Sprintf("%s/%s not run: this kernel has no sch_netem (CONFIG_NET_SCH_NETEM)", d.kind, d.target))
		}
		return nil
	}
	if d.kind == KindLoss && !r.netem && run == 1 {
		r.notes = append(r.notes, "packet loss injected with iptables `-m statistic --mode random` DROP rules (no sch_netem in this kernel)")
	}
	f := Fault{Kind: d.kind, Target: d.target, Run: run, OldLeader: v.leader, OldTerm: v.term, OldToken: v.token,
		Expect: d.expect, Start: r.h.Since()}
	if d.bound != nil {
		f.Bound = d.bound(r.cfg)
	}
	w := &window{r: r, idx: r.h.AddFault(f), v: v}
	injErr := d.do(w)
	if injErr != nil {
		w.lifted()
		r.t.Errorf("%s/%s#%d: injecting: %v", d.kind, d.target, run, injErr)
		r.repair()
	}
	_, err = r.waitStable(r.cfg.RestartBound)
	settled := r.h.Since()
	r.h.UpdateFault(w.idx, func(f *Fault) { f.Settled = settled })
	if err != nil {
		return fmt.Errorf("after %s/%s#%d: %w", d.kind, d.target, run, err)
	}
	return nil
}

// quiet records a fault-free window of length d (L2).
func (r *runner) quiet(d time.Duration, run int) error {
	v, err := r.waitStable(r.cfg.RestartBound)
	if err != nil {
		return fmt.Errorf("before quiet window: %w", err)
	}
	start := r.h.Since()
	idx := r.h.AddFault(Fault{Kind: KindQuiet, Target: "none", Run: run, OldLeader: v.leader, OldTerm: v.term,
		OldToken: v.token, Expect: ExpectStable, Start: start, Injected: start})
	r.hold(d)
	end := r.h.Since()
	r.h.UpdateFault(idx, func(f *Fault) { f.End, f.Settled = end, end })
	return nil
}

// repair undoes every fault the driver can undo, after an injection failed.
func (r *runner) repair() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, n := range r.cl.Nodes {
		_ = r.cl.Unpause(ctx, n)
		_ = r.cl.Heal(ctx, n)
		_ = r.cl.ClearNetem(ctx, n)
		_ = r.cl.ClearLoss(ctx, n)
		_ = r.cl.Connect(ctx, n) // fails harmlessly when connected
		if !r.cl.Running(ctx, n) {
			_ = r.start(n)
		}
	}
}
