package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// Sentinel errors of the reference peer's configuration and lifecycle.
var (
	// ErrBadFlag reports a missing or malformed flag value.
	ErrBadFlag = errors.New("bad flag")
	// ErrNotLeader is returned by apply on a node that is not the raft leader.
	ErrNotLeader = errors.New("not the leader")
)

// Config is one reference node's configuration; the command line fills it.
type Config struct {
	ID                 string        // this node's raft server id, e.g. "n1"
	RaftAddr           string        // TCP address raft listens on and advertises
	HTTPAddr           string        // address of the /v1/status and /v1/apply endpoints
	DataDir            string        // bolt file and snapshots live here; created if missing
	InitialCluster     []Member      // every voter, identical on every node
	HeartbeatTimeout   time.Duration // raft.Config.HeartbeatTimeout
	ElectionTimeout    time.Duration // raft.Config.ElectionTimeout
	LeaderLeaseTimeout time.Duration // raft.Config.LeaderLeaseTimeout
	LogLevel           string        // hclog level name
}

// Member is one voter of the static initial cluster.
type Member struct {
	ID   string
	Addr string
}

// DefaultConfig returns the timing of raft.DefaultConfig() and empty identity fields.
func DefaultConfig() Config {
	rc := raft.DefaultConfig()
	return Config{
		HeartbeatTimeout:   rc.HeartbeatTimeout,
		ElectionTimeout:    rc.ElectionTimeout,
		LeaderLeaseTimeout: rc.LeaderLeaseTimeout,
		LogLevel:           "info",
	}
}

// Validate reports the first missing or inconsistent field, wrapping ErrBadFlag.
func (c Config) Validate() error {
	switch {
	case c.ID == "":
		return fmt.Errorf("%w: --id is required", ErrBadFlag)
	case c.RaftAddr == "":
		return fmt.Errorf("%w: --raft-addr is required", ErrBadFlag)
	case c.HTTPAddr == "":
		return fmt.Errorf("%w: --http-addr is required", ErrBadFlag)
	case c.DataDir == "":
		return fmt.Errorf("%w: --data-dir is required", ErrBadFlag)
	case len(c.InitialCluster) == 0:
		return fmt.Errorf("%w: --initial-cluster is required", ErrBadFlag)
	case c.LeaderLeaseTimeout > c.HeartbeatTimeout:
		return fmt.Errorf("%w: --leader-lease-timeout %v exceeds --heartbeat-timeout %v",
			ErrBadFlag, c.LeaderLeaseTimeout, c.HeartbeatTimeout)
	}
	for _, m := range c.InitialCluster {
		if m.ID == c.ID {
			if m.Addr != c.RaftAddr {
				return fmt.Errorf("%w: --initial-cluster gives %s address %s, --raft-addr is %s",
					ErrBadFlag, m.ID, m.Addr, c.RaftAddr)
			}
			return nil
		}
	}
	return fmt.Errorf("%w: --id %s is not in --initial-cluster", ErrBadFlag, c.ID)
}

// ParseInitialCluster parses "n1=127.0.0.1:7410,n2=127.0.0.1:7420" into members.
func ParseInitialCluster(s string) ([]Member, error) {
	var out []Member
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		id, addr, ok := strings.Cut(part, "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("%w: --initial-cluster entry %q is not id=host:port", ErrBadFlag, part)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("%w: --initial-cluster entry %q: %v", ErrBadFlag, part, err)
		}
		if seen[id] {
			return nil, fmt.Errorf("%w: --initial-cluster names %s twice", ErrBadFlag, id)
		}
		seen[id] = true
		out = append(out, Member{ID: id, Addr: addr})
	}
	return out, nil
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rafttcp:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "rafttcp:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (Config, error) {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("rafttcp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.ID, "id", "", "raft server id of this node")
	fs.StringVar(&cfg.RaftAddr, "raft-addr", "", "raft TCP address (listen and advertise), host:port")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", "", "HTTP address of /v1/status and /v1/apply")
	fs.StringVar(&cfg.DataDir, "data-dir", "", "directory of the bolt store and snapshots")
	cluster := fs.String("initial-cluster", "", `every voter, "n1=127.0.0.1:7410,n2=..."`)
	fs.DurationVar(&cfg.HeartbeatTimeout, "heartbeat-timeout", cfg.HeartbeatTimeout, "raft HeartbeatTimeout")
	fs.DurationVar(&cfg.ElectionTimeout, "election-timeout", cfg.ElectionTimeout, "raft ElectionTimeout")
	fs.DurationVar(&cfg.LeaderLeaseTimeout, "leader-lease-timeout", cfg.LeaderLeaseTimeout, "raft LeaderLeaseTimeout")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "trace, debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return Config{}, fmt.Errorf("%w: %v", ErrBadFlag, err)
	}
	members, err := ParseInitialCluster(*cluster)
	if err != nil {
		return Config{}, err
	}
	cfg.InitialCluster = members
	return cfg, cfg.Validate()
}

// run starts the node, serves HTTP until ctx ends, then shuts raft down.
func run(ctx context.Context, cfg Config) error {
	logger := hclog.New(&hclog.LoggerOptions{
		Name: "rafttcp", Level: hclog.LevelFromString(cfg.LogLevel), Output: os.Stderr,
	})
	n, err := openNode(cfg, logger)
	if err != nil {
		return err
	}
	srv, err := serveHTTP(cfg.HTTPAddr, n, logger)
	if err != nil {
		_ = n.close()
		return err
	}
	<-ctx.Done()
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutCtx) // stop serving first, then raft, then storage
	return n.close()
}

// node is the raft instance with the stores it owns.
type node struct {
	id    string
	raft  *raft.Raft
	store *raftboltdb.BoltStore
	tr    *raft.NetworkTransport
	fsm   *counterFSM
}

func openNode(cfg Config, logger hclog.Logger) (*node, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	store, err := raftboltdb.NewBoltStore(filepath.Join(cfg.DataDir, "raft.db"))
	if err != nil {
		return nil, fmt.Errorf("bolt store: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2, logger.Named("snapshots"))
	if err != nil {
		_ = store.Close()
		return nil, fmt.Errorf("snapshot store: %w", err)
	}
	adv, err := net.ResolveTCPAddr("tcp", cfg.RaftAddr)
	if err != nil {
		_ = store.Close()
		return nil, fmt.Errorf("raft addr: %w", err)
	}
	tr, err := raft.NewTCPTransportWithLogger(cfg.RaftAddr, adv, 3, 10*time.Second, logger.Named("transport"))
	if err != nil {
		_ = store.Close()
		return nil, fmt.Errorf("tcp transport: %w", err)
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.Logger = logger.Named("raft")
	fsm := &counterFSM{}
	fail := func(err error) (*node, error) {
		_ = tr.Close()
		_ = store.Close()
		return nil, err
	}
	existing, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		return fail(fmt.Errorf("read state: %w", err))
	}
	if !existing {
		var conf raft.Configuration
		for _, m := range cfg.InitialCluster {
			conf.Servers = append(conf.Servers, raft.Server{
				Suffrage: raft.Voter, ID: raft.ServerID(m.ID), Address: raft.ServerAddress(m.Addr),
			})
		}
		if err := raft.BootstrapCluster(rc, store, store, snaps, tr, conf); err != nil {
			return fail(fmt.Errorf("bootstrap: %w", err))
		}
	}
	r, err := raft.NewRaft(rc, fsm, store, store, snaps, tr)
	if err != nil {
		return fail(fmt.Errorf("new raft: %w", err))
	}
	return &node{id: cfg.ID, raft: r, store: store, tr: tr, fsm: fsm}, nil
}

// close shuts raft down (not gracefully: no hand-off), then the transport and the store.
func (n *node) close() error {
	err := n.raft.Shutdown().Error()
	if cerr := n.tr.Close(); err == nil {
		err = cerr
	}
	if cerr := n.store.Close(); err == nil {
		err = cerr
	}
	return err
}

// apply appends count small entries, all in flight at once, and waits for every one.
func (n *node) apply(count int) (time.Duration, error) {
	if n.raft.State() != raft.Leader {
		return 0, ErrNotLeader
	}
	start := time.Now()
	futures := make([]raft.ApplyFuture, count)
	entry := make([]byte, 16)
	for i := range futures {
		futures[i] = n.raft.Apply(entry, 10*time.Second)
	}
	for _, f := range futures {
		if err := f.Error(); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// counterFSM counts applied entries; its snapshot is the count.
type counterFSM struct {
	count atomic.Uint64 // written by raft's FSM goroutine; atomic so that others may read it
}

func (f *counterFSM) Apply(*raft.Log) any { f.count.Add(1); return nil }

func (f *counterFSM) Snapshot() (raft.FSMSnapshot, error) {
	return countSnapshot(f.count.Load()), nil
}

func (f *counterFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var c uint64
	if _, err := fmt.Fscan(rc, &c); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	f.count.Store(c)
	return nil
}

type countSnapshot uint64

func (s countSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := fmt.Fprintf(sink, "%d\n", uint64(s)); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (countSnapshot) Release() {}
