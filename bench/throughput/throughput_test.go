package throughput

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func small() Config {
	c := DefaultConfig()
	c.Entries, c.Appliers, c.Rounds, c.TLS = 400, 16, 1, false
	return c
}

func TestCompareMeasuresBothTransports(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := Compare(ctx, small())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Runs) != 2 {
		t.Fatalf("runs = %d, want 2 (one per transport)", len(res.Runs))
	}
	seen := map[string]bool{}
	for _, r := range res.Runs {
		seen[r.Transport] = true
		if r.Entries != 400 || r.OpsPerSec <= 0 || r.Seconds <= 0 {
			t.Errorf("run %+v: want 400 entries at a positive rate", r)
		}
	}
	if !seen[string(TCP)] || !seen[string(Heartbeat)] {
		t.Errorf("transports measured: %v", seen)
	}
	want := res.Runs[1].OpsPerSec / res.Runs[0].OpsPerSec // one round: medians are the runs
	if res.Ratio != want {
		t.Errorf("ratio %v, want heartbeat/tcp = %v", res.Ratio, want)
	}
}

// TestCompareWithTLS: with TLS, the mutual-TLS transport is measured too (certificates
// made and removed by the measurement) and its ratio to the plaintext transport reported.
func TestCompareWithTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := small()
	c.TLS = true
	res, err := Compare(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Runs) != 3 || res.Runs[2].Transport != string(HeartbeatTLS) || res.Runs[2].OpsPerSec <= 0 {
		t.Fatalf("runs %+v, want tcp, heartbeat, heartbeat with TLS", res.Runs)
	}
	if want := res.Runs[2].OpsPerSec / res.Runs[1].OpsPerSec; res.TLSRatio != want {
		t.Errorf("TLS ratio %v, want %v", res.TLSRatio, want)
	}
	before, _ := filepath.Glob(filepath.Join(os.TempDir(), "hbtp-tls-*"))
	if _, err := Measure(ctx, small(), HeartbeatTLS); err != nil {
		t.Fatal(err)
	}
	if after, _ := filepath.Glob(filepath.Join(os.TempDir(), "hbtp-tls-*")); len(after) > len(before) {
		t.Errorf("certificate directories left behind: %v", after)
	}
}

func TestBoltStore(t *testing.T) {
	c := small()
	c.Entries, c.Store, c.Dir = 100, "bolt", t.TempDir()
	r, err := Measure(context.Background(), c, Heartbeat)
	if err != nil {
		t.Fatal(err)
	}
	if r.Store != "bolt" || r.OpsPerSec <= 0 {
		t.Errorf("got %+v", r)
	}
}

func TestValidate(t *testing.T) {
	for name, mut := range map[string]func(*Config){
		"no entries":  func(c *Config) { c.Entries = 0 },
		"bad store":   func(c *Config) { c.Store = "disk" },
		"bolt no dir": func(c *Config) { c.Store = "bolt" },
		"lease > hb":  func(c *Config) { c.LeaderLeaseTimeout = 2 * c.HeartbeatTimeout },
	} {
		c := DefaultConfig()
		mut(&c)
		if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: err = %v, want ErrInvalidConfig", name, err)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("default: %v", err)
	}
	if _, err := Measure(context.Background(), DefaultConfig(), Kind("udp")); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("unknown transport: err = %v", err)
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{{[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// BenchmarkApply reports apply throughput per transport; ns/op is the time of one Apply with
// 64 in flight (cluster setup is not timed): go test -run XXX -bench Apply ./bench/throughput
func BenchmarkApply(b *testing.B) {
	for _, k := range []Kind{TCP, Heartbeat} {
		b.Run(string(k), func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.Entries = max(b.N, 1)
			logger := hclog.New(&hclog.LoggerOptions{Level: hclog.Off})
			c, err := newCluster(cfg, k, logger)
			if err != nil {
				b.Fatal(err)
			}
			defer c.shutdown()
			leader, err := c.waitLeader(context.Background(), 30*time.Second)
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			took, err := applyAll(context.Background(), leader, cfg)
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(cfg.Entries)/took.Seconds(), "ops/s")
		})
	}
}
