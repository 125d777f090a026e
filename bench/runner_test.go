package bench

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// freeBase finds a base port whose 3 nodes' ports are all free now.
func freeBase(t *testing.T, nodes int) int {
	for range 50 {
		base := 30000 + 10*rand.IntN(2000)
		free := true
		for _, s := range Specs(nodes, base, "") {
			for _, a := range []string{s.PeerAddr, s.ClientAddr, s.HTTPAddr} {
				if portFree(a) != nil {
					free = false
				}
			}
		}
		if free {
			return base
		}
	}
	t.Fatal("no free port range")
	return 0
}

// TestRunnerEndToEnd runs every phase against a real 3-process rafttcp cluster at fast
// timing: one kill, one stop, a short idle and busy phase. It checks that each figure is
// produced and plausible, not how fast raft is.
func TestRunnerEndToEnd(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "rafttcp")
	build := exec.Command("go", "build", "-o", bin, "./cmd/rafttcp")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(burnEnv, "1") // the burner (this test binary) inherits it; the nodes ignore it

	var progress bytes.Buffer
	cfg := DefaultRunConfig()
	cfg.Nodes, cfg.BasePort, cfg.WorkDir = 3, freeBase(t, 3), filepath.Join(dir, "work")
	cfg.StableFor, cfg.IdleWarmup = 300*time.Millisecond, 100*time.Millisecond
	cfg.BusyPollInterval = 100 * time.Millisecond
	cfg.BurnCommand = []string{self, "-test.run=^$"}
	cfg.Progress = &progress
	r, err := NewRunner(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sys := System{Name: "rafttcp-fast", Kind: KindRaftTCP, Binary: bin, Timing: Timing{
		HeartbeatTimeout: 100 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond, LeaseTimeout: 50 * time.Millisecond}}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	res, err := r.Run(ctx, sys, Phases{Kills: 1, Stops: 1, Idle: time.Second, Busy: time.Second})
	t.Logf("progress:\n%s", progress.String())
	if err != nil || len(res.Errors) > 0 {
		t.Fatalf("run: %v, errors %v", err, res.Errors)
	}
	for name, f := range map[string]FaultResult{"crash": res.Crash, "silent": res.Silent} {
		s := f.Summary
		// raft at 100 ms: a failover takes at least a heartbeat timeout, and far less than 30 s.
		if s.N != 1 || s.Failed != 0 || s.P50Ms < 50 || s.P50Ms > 20000 || len(f.Runs) != 1 {
			t.Errorf("%s: %+v", name, f)
		}
		if fo := f.Runs[0]; fo.NewLeader == fo.Victim || fo.Silence() > time.Second {
			t.Errorf("%s run: %+v (silence %v)", name, fo, fo.Silence())
		}
	}
	if res.Idle == nil || res.Idle.LeaderCPU <= 0 || res.Idle.MaxRSSMB < 1 || len(res.Idle.Nodes) != 3 {
		t.Errorf("idle: %+v", res.Idle)
	}
	if res.Busy == nil || res.Busy.Polls == 0 || res.Busy.BurnerCPU <= 0 {
		t.Errorf("busy: %+v", res.Busy)
	}
	for _, want := range []string{"crash 1/1:", "silent 1/1:", "idle:", "busy:"} {
		if !strings.Contains(progress.String(), want) {
			t.Errorf("progress lacks %q", want)
		}
	}
	// The cluster is gone: every port is free again.
	for _, s := range Specs(3, cfg.BasePort, "") {
		if err := portFree(s.HTTPAddr); err != nil {
			t.Errorf("after Run: %v", fmt.Errorf("node %s still up: %w", s.ID, err))
		}
	}
}
