package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/hashicorp/go-hclog"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil:
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

// run parses args, then runs a worker until ctx ends; logs go to logOut.
func run(ctx context.Context, args []string, logOut io.Writer) error {
	cfg, err := parseFlags(args, logOut)
	if err != nil {
		return err
	}
	w, err := NewWorker(cfg)
	if err != nil {
		return err
	}
	return w.Run(ctx)
}

// parseFlags turns the command line into a Config whose Logger writes to
// logOut.
func parseFlags(args []string, logOut io.Writer) (Config, error) {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(logOut)
	sidecar := fs.String("sidecar", "127.0.0.1:7401", "client gRPC address of the local sidecar (the node this worker runs beside)")
	peers := fs.String("peers", "", "client gRPC addresses of other nodes, comma-separated (read fallbacks)")
	fs.StringVar(&cfg.LedgerPath, "ledger", "/tmp/hb-ledger", "fenced ledger file the leader-only job appends to (shared by the workers)")
	fs.StringVar(&cfg.ShardLedgers, "shard-ledgers", "", "directory of the per-resource fenced ledgers (default: the --ledger path + \".shards\")")
	fs.DurationVar(&cfg.TTL, "ttl", cfg.TTL, "application heartbeat TTL (sent every ttl/3)")
	fs.DurationVar(&cfg.WorkInterval, "work-interval", cfg.WorkInterval, "period of the work on each owned resource (one record in its ledger)")
	fs.DurationVar(&cfg.LeaderInterval, "leader-interval", cfg.LeaderInterval, "period of the leader-only job's ledger writes")
	level := fs.String("log-level", "info", "trace, debug, info, warn or error")
	var cacert, cert, key string
	fs.StringVar(&cacert, "cacert", os.Getenv("HEARTBEAT_CACERT"), "the cluster's CA bundle (PEM): with --cert and --key, dial the sidecars with mutual TLS (env HEARTBEAT_CACERT)")
	fs.StringVar(&cert, "cert", os.Getenv("HEARTBEAT_CERT"), "this worker's client certificate (PEM; role write) (env HEARTBEAT_CERT)")
	fs.StringVar(&key, "key", os.Getenv("HEARTBEAT_KEY"), "its private key (PEM) (env HEARTBEAT_KEY)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: worker --sidecar HOST:PORT [--peers HOST:PORT,...] [--ledger FILE] [flags]\n\n"+
			"An example application beside a Heartbeat sidecar: it pushes app heartbeats, works on the\n"+
			"resources its node owns while its ownership lease holds (one fenced ledger per resource,\n"+
			"the epoch as token), and appends to a fenced ledger while its node leads.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if cacert != "" || cert != "" || key != "" {
		tc, err := TLSConfig(cacert, cert, key)
		if err != nil {
			return cfg, err
		}
		cfg.TLS = tc
	}
	cfg.Endpoints = []string{*sidecar}
	for _, p := range strings.Split(*peers, ",") {
		if p = strings.TrimSpace(p); p != "" {
			cfg.Endpoints = append(cfg.Endpoints, p)
		}
	}
	lvl := hclog.LevelFromString(*level)
	if lvl == hclog.NoLevel {
		return cfg, fmt.Errorf("bad --log-level %q", *level)
	}
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "worker", Level: lvl, Output: logOut})
	return cfg, cfg.Validate()
}
