// Command chaos-replay re-checks a saved chaos history and writes its report
// and timeline again, without Docker:
//
//	go run ./test/chaos/cmd/chaos-replay -history test/chaos/out/history.json -out /tmp/replay
//
// Use it to look at a failed run again, or after changing a checker.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/test/chaos"
)

func main() {
	history := flag.String("history", "test/chaos/out/history.json", "history saved by the chaos suite")
	out := flag.String("out", ".", "directory for report.md and timeline.svg")
	tol := flag.Duration("tolerance", chaos.DefaultCheckOptions().Tolerance, "clock-read tolerance of the checkers")
	flag.Parse()
	if err := run(*history, *out, *tol); err != nil {
		fmt.Fprintln(os.Stderr, "chaos-replay:", err)
		os.Exit(1)
	}
}

func run(history, out string, tol time.Duration) error {
	s, err := chaos.ReadSnapshot(history)
	if err != nil {
		return err
	}
	vs := chaos.CheckAll(s, chaos.CheckOptions{Tolerance: tol})
	for _, v := range vs {
		fmt.Println(v)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	write := func(name string, fn func(*os.File) error) error {
		f, err := os.Create(filepath.Join(out, name))
		if err != nil {
			return err
		}
		if err := fn(f); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	info := chaos.ReportInfo{Config: chaos.DefaultConfig(), Began: s.Began, Duration: s.Length,
		Command: "go run ./test/chaos/cmd/chaos-replay -history " + history,
		Notes:   []string{"replayed from a saved history: configuration lines are defaults, not the run's"}}
	if err := write("report.md", func(f *os.File) error { return chaos.WriteReport(f, s, vs, info) }); err != nil {
		return err
	}
	if err := write("timeline.svg", func(f *os.File) error { return chaos.WriteTimeline(f, s) }); err != nil {
		return err
	}
	fmt.Printf("%d violation(s); wrote %s and %s\n", len(vs), filepath.Join(out, "report.md"), filepath.Join(out, "timeline.svg"))
	return nil
}
