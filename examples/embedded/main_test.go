package main

import (
	"context"
	"io"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestEmbedded runs the program for a few seconds, twice on the same data
// dir: a single node elects itself, owns every resource it registered, and
// stops cleanly; the second run resumes with a higher fencing token and the
// same resources.
func TestEmbedded(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	first := runFor(t, dir, "4")
	second := runFor(t, dir, "4")

	tokenRE := regexp.MustCompile(`leader: embedded \(this node: true\), fencing token (\d+)`)
	m1, m2 := tokenRE.FindStringSubmatch(first), tokenRE.FindStringSubmatch(second)
	if m1 == nil || m2 == nil {
		t.Fatalf("no leadership line:\n--- first\n%s--- second\n%s", first, second)
	}
	t1, _ := strconv.ParseUint(m1[1], 10, 64)
	t2, _ := strconv.ParseUint(m2[1], 10, 64)
	if t2 <= t1 {
		t.Fatalf("second run's token %d is not above the first's %d", t2, t1)
	}
}

// runFor runs the program with --duration 3s on dir and checks its output.
func runFor(t *testing.T, dir, resources string) string {
	t.Helper()
	var out, logs testcluster.SyncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	err := run(ctx, []string{"--data-dir", dir, "--duration", "3s", "--resources", resources, "--log-level", "warn"}, &out, &logs)
	if err != nil {
		t.Fatalf("run: %v\nstdout:\n%s\nlogs:\n%s", err, out.String(), logs.String())
	}
	if d := time.Since(start); d < 3*time.Second {
		t.Fatalf("run returned after %v; want it to serve for --duration 3s", d)
	}
	got := out.String()
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^node embedded: peer 127\.0\.0\.1:\d+, client 127\.0\.0\.1:\d+, HTTP 127\.0\.0\.1:\d+$`),
		regexp.MustCompile(`(?m)^leader: embedded \(this node: true\), fencing token [1-9]\d*$`),
		regexp.MustCompile(`(?m)^node status: state leader, is_leader true, term [1-9]\d*$`),
		regexp.MustCompile(`(?m)^embedded owns 4 resources at revision \d+: job-0@\d+ job-1@\d+ job-2@\d+ job-3@\d+$`),
		regexp.MustCompile(`(?m)^stopped cleanly$`),
	} {
		if !want.MatchString(got) {
			t.Errorf("output lacks %s:\n%s", want, got)
		}
	}
	if strings.Contains(logs.String(), "[ERROR]") {
		t.Errorf("the node logged errors:\n%s", logs.String())
	}
	return got
}

func TestParseFlags(t *testing.T) {
	for _, args := range [][]string{{"--resources", "-1"}, {"--resources", "5000"}, {"extra"}} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) accepted a bad command line", args)
		}
	}
	o, err := parseFlags(nil, io.Discard)
	if err != nil || o.id != "embedded" || o.resources != 6 || o.clientAddr != "127.0.0.1:0" {
		t.Fatalf("defaults = %+v, %v", o, err)
	}
}
