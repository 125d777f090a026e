package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/client"
	"github.com/heartbeat-sidecar/heartbeat/node"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil:
		fmt.Fprintln(os.Stderr, "embedded:", err)
		os.Exit(1)
	}
}

// options are the command line.
type options struct {
	id, dataDir, peerAddr, clientAddr, httpAddr, logLevel string
	resources                                             int
	duration                                              time.Duration
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("embedded", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.id, "id", "embedded", "node id")
	fs.StringVar(&o.dataDir, "data-dir", "data/embedded", "raft data directory (kept across runs)")
	fs.StringVar(&o.peerAddr, "peer-addr", "127.0.0.1:0", "peer gRPC address (port 0: any free port)")
	fs.StringVar(&o.clientAddr, "client-addr", "127.0.0.1:0", "client gRPC address (port 0: any free port)")
	fs.StringVar(&o.httpAddr, "http-addr", "127.0.0.1:0", "HTTP address (port 0: any free port)")
	fs.StringVar(&o.logLevel, "log-level", "warn", "the node's log level (logs go to stderr)")
	fs.IntVar(&o.resources, "resources", 6, "number of resources to register (job-0, job-1, ...)")
	fs.DurationVar(&o.duration, "duration", 0, "stop after this long (0: run until SIGINT/SIGTERM)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.resources < 0 || o.resources > 1000 {
		return o, fmt.Errorf("--resources %d: want 0..1000", o.resources)
	}
	return o, nil
}

// run embeds a node, uses it through the client package, and stops it
// gracefully when ctx ends (or after --duration). The report goes to
// stdout, the node's log to stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if o.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}

	// 1. The node: with neither InitialCluster nor Join it forms a cluster
	// of one (restarted on the same data dir, it resumes).
	cfg := node.DefaultConfig()
	cfg.ID = o.id
	cfg.DataDir = o.dataDir
	cfg.PeerAddr, cfg.ClientAddr, cfg.HTTPAddr = o.peerAddr, o.clientAddr, o.httpAddr
	cfg.LogLevel = o.logLevel
	cfg.LogOutput = stderr
	n, err := node.New(cfg)
	if err != nil {
		return fmt.Errorf("start node: %w", err)
	}
	// Run serves until its context ends, then shuts the node down
	// gracefully; it is stopped after the application below is done.
	nodeCtx, stopNode := context.WithCancel(context.Background())
	nodeDone := make(chan error, 1)
	go func() { nodeDone <- n.Run(nodeCtx) }()
	stop := func() error {
		stopNode()
		return <-nodeDone
	}
	fmt.Fprintf(stdout, "node %s: peer %s, client %s, HTTP %s\n", n.ID(), n.PeerAddr(), n.ClientAddr(), n.HTTPAddr())

	// 2. The application, talking to its own node like any client.
	appErr := app(ctx, n, o, stdout)
	if errors.Is(appErr, context.Canceled) || errors.Is(appErr, context.DeadlineExceeded) {
		appErr = nil // the run was meant to end
	}
	err = errors.Join(appErr, stop())
	if err == nil {
		fmt.Fprintln(stdout, "stopped cleanly")
	}
	return err
}

// app is the embedding application's part: wait until its node leads,
// register resources, print the leadership and the assignments, then follow
// assignment changes until ctx ends.
func app(ctx context.Context, n *node.Node, o options, stdout io.Writer) error {
	ccfg := client.DefaultConfig()
	ccfg.Endpoints = []string{n.ClientAddr()}
	cl, err := client.New(ccfg)
	if err != nil {
		return err
	}
	defer cl.Close()

	// A single node elects itself within a few heartbeat timeouts.
	var leader client.Leader
	for {
		if leader, err = cl.Leader(ctx); err == nil && leader.LocalLeads() {
			break
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "leader: %s (this node: %v), fencing token %d\n", leader.ID, leader.LocalLeads(), leader.FencingToken)
	// The node's Go methods say the same, without a round trip.
	st := n.Status()
	fmt.Fprintf(stdout, "node status: state %s, is_leader %v, term %d\n", st.State, st.IsLeader, st.Term)

	specs := make([]client.ResourceSpec, o.resources)
	for i := range specs {
		specs[i] = client.ResourceSpec{ID: fmt.Sprintf("job-%d", i)}
	}
	if len(specs) > 0 {
		wr, err := cl.Register(ctx, specs...)
		if err != nil {
			return fmt.Errorf("register: %w", err)
		}
		fmt.Fprintf(stdout, "registered %d resources at revision %d\n", len(specs), wr.Revision)
	}

	// The leader's reconciler assigns them shortly after they commit.
	var mine client.Listing
	for {
		if mine, err = cl.MyResources(ctx); err == nil && len(mine.Resources) >= o.resources {
			break
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "%s owns %d resources at revision %d: %s\n", n.ID(), len(mine.Resources), mine.Revision, listing(mine.Resources))

	fmt.Fprintln(stdout, "watching assignments (Ctrl-C to stop)")
	for ev := range cl.WatchAssignments(ctx, n.ID(), mine.Revision) {
		switch {
		case ev.Err != nil:
			return fmt.Errorf("watch: %w", ev.Err)
		case ev.Kind == client.KindResync:
			fmt.Fprintf(stdout, "resync at revision %d: %s\n", ev.Revision, listing(ev.Resources))
		default:
			fmt.Fprintf(stdout, "%s %s owner=%q epoch=%d (revision %d)\n", ev.Kind, ev.ResourceID, ev.Owner, ev.Epoch, ev.Revision)
		}
	}
	return ctx.Err()
}

// listing is "job-0@12 job-1@12 ..." (id@epoch, sorted by id).
func listing(rs []client.Resource) string {
	parts := make([]string, 0, len(rs))
	for _, r := range rs {
		parts = append(parts, fmt.Sprintf("%s@%d", r.ID, r.Epoch))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// sleep waits d or until ctx ends (then it returns ctx.Err()).
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
