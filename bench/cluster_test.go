package bench

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSpecsAndArgs(t *testing.T) {
	specs := Specs(3, 27400, "/w")
	if specs[1].ID != "n2" || specs[1].PeerAddr != "127.0.0.1:27420" || specs[1].ClientAddr != "127.0.0.1:27421" ||
		specs[1].HTTPAddr != "127.0.0.1:27422" || specs[1].DataDir != "/w/n2/data" {
		t.Errorf("spec n2 = %+v", specs[1])
	}
	initial := InitialCluster(specs)
	if initial != "n1=127.0.0.1:27410,n2=127.0.0.1:27420,n3=127.0.0.1:27430" {
		t.Errorf("initial cluster %q", initial)
	}
	timing := Timing{HeartbeatTimeout: 100 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond, LeaseTimeout: 80 * time.Millisecond}
	for _, tc := range []struct {
		sys      System
		want     []string
		notWant  []string
		firstArg string
	}{
		{System{Kind: KindHeartbeat, Timing: timing, Args: []string{"--fast-failover=false"}},
			[]string{"--lease-duration=80ms", "--heartbeat-timeout=100ms", "--election-timeout=200ms",
				"--cluster-id", "--client-addr", "--fast-failover=false"},
			[]string{"--leader-lease-timeout=80ms"}, "run"},
		{System{Kind: KindRaftTCP, Timing: timing},
			[]string{"--leader-lease-timeout=80ms", "--heartbeat-timeout=100ms", "--raft-addr"},
			[]string{"--lease-duration=80ms", "--client-addr", "run"}, "--id"},
		{System{Kind: KindRaftTCP}, nil, []string{"--heartbeat-timeout", "--leader-lease-timeout"}, "--id"},
	} {
		args := NodeArgs(tc.sys, specs[0], initial)
		line := strings.Join(args, " ")
		if args[0] != tc.firstArg {
			t.Errorf("%s: first arg %q, want %q", tc.sys.Kind, args[0], tc.firstArg)
		}
		for _, w := range tc.want {
			if !slices.Contains(args, w) {
				t.Errorf("%s: %q lacks %s", tc.sys.Kind, line, w)
			}
		}
		for _, w := range tc.notWant {
			if strings.Contains(line, w) {
				t.Errorf("%s: %q has %s", tc.sys.Kind, line, w)
			}
		}
	}
	if (Timing{}).String() != "default" || !strings.Contains(timing.String(), "hb=100ms") {
		t.Errorf("timing strings %q %q", Timing{}, timing)
	}
}

func TestRunConfigValidate(t *testing.T) {
	if err := DefaultRunConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*RunConfig){
		"two nodes": func(c *RunConfig) { c.Nodes = 2 },
		"low port":  func(c *RunConfig) { c.BasePort = 80 },
		"no poll":   func(c *RunConfig) { c.PollInterval = 0 },
		"no dir":    func(c *RunConfig) { c.WorkDir = "" },
	} {
		c := DefaultRunConfig()
		mut(&c)
		if _, err := NewRunner(c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestBurnUsesCPUAndStops(t *testing.T) {
	before, err := ReadProc(ownPID())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	Burn(ctx, 1) // returns only when ctx ends
	after, err := ReadProc(ownPID())
	if err != nil {
		t.Fatal(err)
	}
	if after.CPUTicks <= before.CPUTicks {
		t.Errorf("burning 300 ms used no CPU tick (%d -> %d)", before.CPUTicks, after.CPUTicks)
	}
}
