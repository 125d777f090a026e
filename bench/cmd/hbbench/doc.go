// Command hbbench runs the benchmark the project's issue asks for and prints figures: a
// 5-node cluster of separate processes on 127.0.0.1, for Heartbeat and, in the same run, for
// hashicorp/raft on its own TCP transport (bench/cmd/rafttcp) at raft's default timing and at
// Heartbeat's, side by side and as ratios.
//
//	go run ./bench/cmd/hbbench            # the full run: 20 kills, 20 stops, 30 s idle, 10 min busy
//	go run ./bench/cmd/hbbench --quick    # 3 kills, 3 stops, 5 s idle, 20 s busy: a few minutes
//	go run ./bench/cmd/hbbench --curve    # also failover vs idle CPU at 100ms, 250ms, 500ms, 1s
//
// Per system, in order: idle CPU and RSS (pollers stopped), crash failover (SIGKILL of the
// leader), silent failover (SIGSTOP, SIGCONT after), elections during the busy phase (a CPU
// burner — this same binary's "burn" subcommand, GOMAXPROCS=2 — keeps both cores busy).
// Then apply throughput in process (package bench/throughput). Progress goes to stderr, the
// final tables to stdout and to --out (results.json, results.md). bench/README.md explains
// every figure and how it is measured.
//
// Unless --heartbeat-bin and --rafttcp-bin are given, the binaries are built first with
// `go build` from the module root (so the command must run inside the repository).
package main
