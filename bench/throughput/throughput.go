package throughput

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/heartbeat-sidecar/heartbeat/bench"
	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/pki"
	"github.com/heartbeat-sidecar/heartbeat/rpc/transport"
)

// Kind names a transport under test.
type Kind string

// The transports compared.
const (
	Heartbeat    Kind = "heartbeat-grpc"     // rpc/transport
	HeartbeatTLS Kind = "heartbeat-grpc-tls" // rpc/transport with mutual TLS (pki certificates)
	TCP          Kind = "raft-tcp"           // raft.NewTCPTransport
)

// Sentinel errors.
var (
	// ErrInvalidConfig is wrapped by Config.Validate's errors.
	ErrInvalidConfig = errors.New("throughput: invalid config")
	// ErrNoLeader: the in-process cluster elected no leader in time.
	ErrNoLeader = errors.New("throughput: no leader elected")
)

// Config is one throughput measurement's setup.
type Config struct {
	Nodes     int    // voters (3)
	Entries   int    // entries applied per measurement
	Appliers  int    // concurrent goroutines calling raft.Apply on the leader
	EntrySize int    // bytes per entry
	Rounds    int    // Compare: measurements per transport, alternating
	Store     string // "mem" (raft.InmemStore) or "bolt" (raft-boltdb files under Dir)
	Dir       string // required for Store "bolt"
	// Raft timing, identical for both transports: Heartbeat's defaults.
	HeartbeatTimeout, ElectionTimeout, LeaderLeaseTimeout time.Duration
	// TLS: Compare also measures HeartbeatTLS and reports its ratio to Heartbeat.
	TLS bool
	// Logger receives raft's and the transports' logs; nil: none (shutdown errors are noise).
	Logger hclog.Logger
}

// DefaultConfig: 3 nodes, 20,000 entries of 64 bytes, 64 appliers, 3 rounds, in-memory
// stores, Heartbeat's default raft timing, the TLS variant included.
func DefaultConfig() Config {
	ec := election.DefaultConfig()
	return Config{
		Nodes: 3, Entries: 20000, Appliers: 64, EntrySize: 64, Rounds: 3, Store: "mem", TLS: true,
		HeartbeatTimeout:   ec.HeartbeatTimeout,
		ElectionTimeout:    ec.ElectionTimeout,
		LeaderLeaseTimeout: ec.LeaderLeaseTimeout,
	}
}

// Validate reports the first unusable field, wrapping ErrInvalidConfig.
func (c Config) Validate() error {
	switch {
	case c.Nodes < 1:
		return fmt.Errorf("%w: nodes %d", ErrInvalidConfig, c.Nodes)
	case c.Entries < 1 || c.Appliers < 1 || c.EntrySize < 0 || c.Rounds < 1:
		return fmt.Errorf("%w: entries, appliers and rounds must be positive", ErrInvalidConfig)
	case c.Store != "mem" && c.Store != "bolt":
		return fmt.Errorf("%w: store %q is neither mem nor bolt", ErrInvalidConfig, c.Store)
	case c.Store == "bolt" && c.Dir == "":
		return fmt.Errorf("%w: store bolt needs Dir", ErrInvalidConfig)
	case c.HeartbeatTimeout <= 0 || c.ElectionTimeout < c.HeartbeatTimeout ||
		c.LeaderLeaseTimeout <= 0 || c.LeaderLeaseTimeout > c.HeartbeatTimeout:
		return fmt.Errorf("%w: raft timing hb=%v election=%v lease=%v", ErrInvalidConfig,
			c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout)
	}
	return nil
}

// Compare measures both transports (and HeartbeatTLS with cfg.TLS) cfg.Rounds times each,
// alternating (so that machine noise hits all alike), and returns every run and the ratios
// of the median ops/s: Heartbeat ÷ TCP, and HeartbeatTLS ÷ Heartbeat.
func Compare(ctx context.Context, cfg Config) (bench.ThroughputResult, error) {
	var res bench.ThroughputResult
	if err := cfg.Validate(); err != nil {
		return res, err
	}
	kinds := []Kind{TCP, Heartbeat}
	if cfg.TLS {
		kinds = append(kinds, HeartbeatTLS)
	}
	ops := map[Kind][]float64{}
	for round := range cfg.Rounds {
		for _, k := range kinds {
			c := cfg
			if c.Store == "bolt" {
				c.Dir = filepath.Join(cfg.Dir, fmt.Sprintf("%s-%d", k, round))
			}
			t, err := Measure(ctx, c, k)
			if err != nil {
				return res, fmt.Errorf("%s round %d: %w", k, round+1, err)
			}
			res.Runs = append(res.Runs, t)
			ops[k] = append(ops[k], t.OpsPerSec)
		}
	}
	res.Ratio = median(ops[Heartbeat]) / median(ops[TCP])
	if cfg.TLS {
		res.TLSRatio = median(ops[HeartbeatTLS]) / median(ops[Heartbeat])
	}
	return res, nil
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Measure builds a fresh cluster on transport k, applies cfg.Entries entries and shuts the
// cluster down. The time counted runs from the first Apply to the last one's commit.
func Measure(ctx context.Context, cfg Config, k Kind) (bench.Throughput, error) {
	out := bench.Throughput{Transport: string(k), Store: cfg.Store, Entries: cfg.Entries, Appliers: cfg.Appliers}
	if err := cfg.Validate(); err != nil {
		return out, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = hclog.New(&hclog.LoggerOptions{Name: "throughput", Level: hclog.Off})
	}
	c, err := newCluster(cfg, k, logger)
	if err != nil {
		return out, err
	}
	defer c.shutdown()
	leader, err := c.waitLeader(ctx, 30*time.Second)
	if err != nil {
		return out, err
	}
	took, err := applyAll(ctx, leader, cfg)
	if err != nil {
		return out, err
	}
	out.Seconds = took.Seconds()
	out.OpsPerSec = float64(cfg.Entries) / took.Seconds()
	return out, nil
}

// applyAll runs cfg.Appliers goroutines that call Apply until cfg.Entries have committed.
func applyAll(ctx context.Context, r *raft.Raft, cfg Config) (time.Duration, error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, cfg.Appliers)
	entry := make([]byte, cfg.EntrySize)
	start := time.Now()
	for range cfg.Appliers {
		wg.Go(func() {
			for next.Add(1) <= int64(cfg.Entries) {
				if ctx.Err() != nil {
					errs <- ctx.Err()
					return
				}
				if err := r.Apply(entry, 10*time.Second).Error(); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return 0, fmt.Errorf("apply: %w", err)
	}
	return took, nil
}

// cluster is cfg.Nodes raft instances with what they own.
type cluster struct {
	rafts   []*raft.Raft
	closers []io.Closer // transports and stores, closed after every raft has shut down
	certs   string      // HeartbeatTLS: the certificates' temporary directory, removed last
}

func newCluster(cfg Config, k Kind, logger hclog.Logger) (*cluster, error) {
	c := &cluster{}
	trans := make([]raft.Transport, cfg.Nodes)
	var conf raft.Configuration
	if k == HeartbeatTLS {
		dir, err := makeCerts(cfg.Nodes)
		if err != nil {
			return nil, err
		}
		c.certs = dir
	}
	for i := range cfg.Nodes {
		id := raft.ServerID(fmt.Sprintf("t%d", i+1))
		tr, err := newTransport(k, id, c.certs, logger)
		if err != nil {
			c.shutdown()
			return nil, err
		}
		c.closers = append(c.closers, closerOf(tr))
		trans[i] = tr
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: id, Address: tr.LocalAddr()})
	}
	for i, tr := range trans {
		rc := raft.DefaultConfig()
		rc.LocalID = conf.Servers[i].ID
		rc.HeartbeatTimeout, rc.ElectionTimeout = cfg.HeartbeatTimeout, cfg.ElectionTimeout
		rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
		rc.Logger = logger.Named(string(rc.LocalID))
		logs, stable, err := c.stores(cfg, i)
		if err != nil {
			c.shutdown()
			return nil, err
		}
		snaps := raft.NewInmemSnapshotStore()
		if err := raft.BootstrapCluster(rc, logs, stable, snaps, tr, conf); err != nil {
			c.shutdown()
			return nil, fmt.Errorf("bootstrap: %w", err)
		}
		r, err := raft.NewRaft(rc, countFSM{}, logs, stable, snaps, tr)
		if err != nil {
			c.shutdown()
			return nil, fmt.Errorf("new raft: %w", err)
		}
		c.rafts = append(c.rafts, r)
	}
	return c, nil
}

// tlsCluster is the cluster id of the TLS variant's certificates and transports.
const tlsCluster = "throughput"

// makeCerts makes a CA and the certificates of nodes "t1".."tN" (pki.Init) in a new
// temporary directory, which the caller removes.
func makeCerts(n int) (string, error) {
	dir, err := os.MkdirTemp("", "hbtp-tls-")
	if err != nil {
		return "", err
	}
	nodes := make([]string, n)
	for i := range nodes {
		nodes[i] = fmt.Sprintf("t%d", i+1)
	}
	if _, err := pki.Init(pki.InitOptions{Dir: dir, Cluster: tlsCluster, Nodes: nodes}); err != nil {
		_ = os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

// nodeTLS is what a node's transport is given with TLS on, as a node builds it: the server
// demands a node of the cluster, dials verify the server by the cluster CA.
func nodeTLS(dir string, id raft.ServerID) (server, client *tls.Config, err error) {
	st, err := pki.NewStore(pki.StoreOptions{CAFile: filepath.Join(dir, "ca.pem"),
		CertFile: filepath.Join(dir, pki.CertFile(string(id))), KeyFile: filepath.Join(dir, pki.KeyFile(string(id)))})
	if err != nil {
		return nil, nil, err
	}
	return st.ServerTLSConfigExpect(true, pki.ExpectKind(pki.KindNode)), st.ClientTLSConfig(nil), nil
}

// newTransport makes node id's transport of kind k; certs is the directory of makeCerts
// (HeartbeatTLS only).
func newTransport(k Kind, id raft.ServerID, certs string, logger hclog.Logger) (raft.Transport, error) {
	switch k {
	case TCP:
		// Bind ":0" resolves to a real port only after listening; advertise that port.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		addr := ln.Addr().(*net.TCPAddr)
		_ = ln.Close()
		return raft.NewTCPTransportWithLogger(addr.String(), addr, 3, 10*time.Second, logger.Named("tcp"))
	case Heartbeat, HeartbeatTLS:
		tc := transport.DefaultConfig()
		tc.ID, tc.BindAddr, tc.ClusterID = id, "127.0.0.1:0", tlsCluster
		tc.Logger = logger.Named("grpc")
		if k == HeartbeatTLS {
			var err error
			if tc.ServerTLS, tc.ClientTLS, err = nodeTLS(certs, id); err != nil {
				return nil, err
			}
		}
		return transport.New(tc)
	}
	return nil, fmt.Errorf("%w: transport %q", ErrInvalidConfig, k)
}

func (c *cluster) stores(cfg Config, i int) (raft.LogStore, raft.StableStore, error) {
	if cfg.Store == "mem" {
		s := raft.NewInmemStore()
		return s, s, nil
	}
	s, err := raftboltdb.NewBoltStore(filepath.Join(cfg.Dir, fmt.Sprintf("t%d.db", i+1)))
	if err != nil {
		return nil, nil, fmt.Errorf("bolt: %w", err)
	}
	c.closers = append(c.closers, s)
	return s, s, nil
}

func (c *cluster) waitLeader(ctx context.Context, timeout time.Duration) (*raft.Raft, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, r := range c.rafts {
			if r.State() == raft.Leader {
				return r, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil, ErrNoLeader
}

// shutdown stops every raft (which closes its transport), then closes transports again
// (both are idempotent) and stores, then removes the certificates.
func (c *cluster) shutdown() {
	for _, r := range c.rafts {
		_ = r.Shutdown().Error()
	}
	for _, cl := range c.closers {
		_ = cl.Close()
	}
	if c.certs != "" {
		_ = os.RemoveAll(c.certs)
	}
}

// closerOf closes a transport. raft's NetworkTransport.Close leaves its pooled outgoing
// connections open, and with them the peers' connection handlers; CloseStreams ends them.
func closerOf(tr raft.Transport) io.Closer {
	if nt, ok := tr.(*raft.NetworkTransport); ok {
		return closeFunc(func() error {
			err := nt.Close()
			nt.CloseStreams()
			return err
		})
	}
	return tr.(io.Closer)
}

type closeFunc func() error

func (f closeFunc) Close() error { return f() }

// countFSM applies nothing: the measurement is of replication and commit, not of an FSM.
type countFSM struct{}

func (countFSM) Apply(*raft.Log) any                 { return nil }
func (countFSM) Snapshot() (raft.FSMSnapshot, error) { return emptySnap{}, nil }
func (countFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

type emptySnap struct{}

func (emptySnap) Persist(s raft.SnapshotSink) error { return s.Close() }
func (emptySnap) Release()                          {}
