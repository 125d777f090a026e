package bench

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/pki"
)

// Kind is the flag dialect of a node binary.
type Kind string

// The node binaries the benchmark knows how to start.
const (
	// KindHeartbeat is bin/heartbeat (./cmd/node), started with its "run" flags.
	KindHeartbeat Kind = "heartbeat"
	// KindRaftTCP is bench/cmd/rafttcp: stock hashicorp/raft on raft.NewTCPTransport.
	KindRaftTCP Kind = "rafttcp"
)

// Timing sets a system's raft timers; a zero field leaves the binary's own default.
type Timing struct {
	HeartbeatTimeout time.Duration `json:"heartbeat_timeout"`
	ElectionTimeout  time.Duration `json:"election_timeout"`
	// LeaseTimeout is --leader-lease-timeout for rafttcp and --lease-duration for Heartbeat.
	LeaseTimeout time.Duration `json:"lease_timeout"`
}

// String renders the timing as "hb=…/el=…/lease=…", "default" for an all-zero Timing.
func (t Timing) String() string {
	if t == (Timing{}) {
		return "default"
	}
	return fmt.Sprintf("hb=%v/el=%v/lease=%v", t.HeartbeatTimeout, t.ElectionTimeout, t.LeaseTimeout)
}

// System is one thing to benchmark: a binary, its dialect and its timing.
type System struct {
	Name   string   // label in the report, e.g. "rafttcp-default"
	Kind   Kind     // flag dialect
	Binary string   // path of the executable
	Timing Timing   // zero: the binary's defaults
	Args   []string // extra flags appended to every node's command line
	// Note describes the timing in the report when Timing is zero (the binary's defaults).
	Note string
	// TLS runs the nodes with mutual TLS on every port (Heartbeat only): --cacert, --cert and
	// --key from TLSDir, and the benchmark reaches them over HTTPS (and gRPC with TLS) with
	// the admin client certificate there. Runner.Run fills TLSDir (MakeTLS into
	// WorkDir/<name>/tls) when it is empty.
	TLS    bool
	TLSDir string
}

// TimingText is how the report shows the system's timing.
func (s System) TimingText() string {
	if s.Timing == (Timing{}) && s.Note != "" {
		return s.Note
	}
	return s.Timing.String()
}

// NodeSpec is where one node of a cluster lives.
type NodeSpec struct {
	ID         string
	PeerAddr   string // raft transport
	ClientAddr string // Heartbeat's client gRPC (unused by rafttcp)
	HTTPAddr   string // /v1/status
	DataDir    string
	LogPath    string
	// HTTPS: the HTTP port serves HTTPS (a TLS system); see HTTPBase.
	HTTPS bool
}

// HTTPBase is the base URL of the node's HTTP port: "http://host:port", or "https://host:port"
// for a TLS system. The fetch helpers take it (or a bare host:port, meaning plain HTTP).
func (s NodeSpec) HTTPBase() string {
	if s.HTTPS {
		return "https://" + s.HTTPAddr
	}
	return "http://" + s.HTTPAddr
}

// ClusterID is the --cluster-id of every Heartbeat cluster the benchmark starts, and the
// cluster its certificates name.
const ClusterID = "bench"

// ClientName is the admin client certificate MakeTLS issues (client.pem, client-key.pem): the
// benchmark's own identity toward TLS nodes.
const ClientName = "client"

// MakeTLS makes a fresh CA in dir (replacing any there) and the certificates of nodes
// "n1".."nN" and of the admin client ClientName, all of cluster ClusterID (pki.Init).
func MakeTLS(dir string, n int) error {
	nodes := make([]string, n)
	for i := range nodes {
		nodes[i] = fmt.Sprintf("n%d", i+1)
	}
	_, err := pki.Init(pki.InitOptions{Dir: dir, Cluster: ClusterID, Nodes: nodes, Force: true,
		Clients: []pki.ClientSpec{{Name: ClientName, Roles: []pki.Role{pki.RoleAdmin}}}})
	return err
}

// ClientTLS is the TLS configuration the benchmark dials TLS nodes with: the admin client
// certificate in dir, the server verified by the cluster CA (not by host name).
func ClientTLS(dir string) (*tls.Config, error) {
	st, err := pki.NewStore(pki.StoreOptions{CAFile: filepath.Join(dir, "ca.pem"),
		CertFile: filepath.Join(dir, pki.CertFile(ClientName)), KeyFile: filepath.Join(dir, pki.KeyFile(ClientName))})
	if err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	return st.ClientTLSConfig(nil), nil
}

// Specs lays out n nodes "n1".."nN" on 127.0.0.1: node i uses basePort+10i (peer),
// basePort+10i+1 (client) and basePort+10i+2 (HTTP), data and logs under dir.
func Specs(n, basePort int, dir string) []NodeSpec {
	out := make([]NodeSpec, n)
	for i := range out {
		id := fmt.Sprintf("n%d", i+1)
		port := basePort + 10*(i+1)
		out[i] = NodeSpec{
			ID:         id,
			PeerAddr:   "127.0.0.1:" + strconv.Itoa(port),
			ClientAddr: "127.0.0.1:" + strconv.Itoa(port+1),
			HTTPAddr:   "127.0.0.1:" + strconv.Itoa(port+2),
			DataDir:    filepath.Join(dir, id, "data"),
			LogPath:    filepath.Join(dir, id, "node.log"),
		}
	}
	return out
}

// InitialCluster renders "n1=127.0.0.1:port,..." from the peer addresses of specs.
func InitialCluster(specs []NodeSpec) string {
	parts := make([]string, len(specs))
	for i, s := range specs {
		parts[i] = s.ID + "=" + s.PeerAddr
	}
	return strings.Join(parts, ",")
}

// NodeArgs is the command line (without the binary) that starts node s of system sys.
func NodeArgs(sys System, s NodeSpec, initial string) []string {
	var args []string
	t := sys.Timing
	switch sys.Kind {
	case KindHeartbeat:
		args = []string{"run", "--node-id", s.ID, "--cluster-id", ClusterID, "--data-dir", s.DataDir,
			"--peer-addr", s.PeerAddr, "--client-addr", s.ClientAddr, "--http-addr", s.HTTPAddr,
			"--initial-cluster", initial, "--log-format", "text", "--log-level", "info"}
		args = appendDur(args, "--lease-duration", t.LeaseTimeout)
		if sys.TLS {
			args = append(args, "--cacert", filepath.Join(sys.TLSDir, "ca.pem"),
				"--cert", filepath.Join(sys.TLSDir, pki.CertFile(s.ID)), "--key", filepath.Join(sys.TLSDir, pki.KeyFile(s.ID)))
		}
	default:
		args = []string{"--id", s.ID, "--raft-addr", s.PeerAddr, "--http-addr", s.HTTPAddr,
			"--data-dir", s.DataDir, "--initial-cluster", initial, "--log-level", "info"}
		args = appendDur(args, "--leader-lease-timeout", t.LeaseTimeout)
	}
	args = appendDur(args, "--heartbeat-timeout", t.HeartbeatTimeout)
	args = appendDur(args, "--election-timeout", t.ElectionTimeout)
	return append(args, sys.Args...)
}

func appendDur(args []string, flag string, d time.Duration) []string {
	if d == 0 {
		return args
	}
	return append(args, flag+"="+d.String())
}

// Proc is one node process. Its exit is reaped by a goroutine that Kill and Close wait for.
type Proc struct {
	Spec NodeSpec
	sys  System
	args []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when the current process has been reaped
}

// Start launches the process (again, after a kill: same data dir, log appended).
// It fails if the previous process has not exited.
func (p *Proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exited != nil {
		select {
		case <-p.exited:
		default:
			return fmt.Errorf("%s: still running", p.Spec.ID)
		}
	}
	if err := os.MkdirAll(filepath.Dir(p.Spec.LogPath), 0o755); err != nil {
		return err
	}
	logf, err := os.OpenFile(p.Spec.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "=== %s start: %s %s\n", time.Now().Format(time.RFC3339Nano), p.sys.Binary,
		strings.Join(p.args, " "))
	cmd := exec.Command(p.sys.Binary, p.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group: a ^C at the terminal reaches only the benchmark, which then kills
	// its nodes; Pdeathsig kills them if the benchmark itself is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", p.Spec.ID, err)
	}
	exited := make(chan struct{})
	p.cmd, p.exited = cmd, exited
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(exited)
	}()
	return nil
}

// PID of the current process (0 if never started).
func (p *Proc) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Signal sends sig to the current process.
func (p *Proc) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return fmt.Errorf("%s: not started", p.Spec.ID)
	}
	return p.cmd.Process.Signal(sig)
}

// Kill sends SIGKILL (and SIGCONT, in case it was stopped) and waits up to timeout for the
// process to be reaped.
func (p *Proc) Kill(timeout time.Duration) error {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Process.Signal(syscall.SIGCONT)
	select {
	case <-exited:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("%s (pid %d) not reaped after SIGKILL", p.Spec.ID, cmd.Process.Pid)
	}
}

// Exited reports whether the current process has ended.
func (p *Proc) Exited() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exited == nil {
		return true
	}
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// Cluster is N processes of one system on loopback.
type Cluster struct {
	Sys   System
	Procs []*Proc
	// TLS is the client configuration for a TLS system's nodes (ClientTLS), nil for plaintext.
	TLS *tls.Config
}

// HTTPClient is a keep-alive client for this cluster's HTTP ports (HTTPS with the admin
// certificate for a TLS system): see NewHTTPClient.
func (c *Cluster) HTTPClient(timeout time.Duration) *http.Client {
	return NewHTTPClient(timeout, c.TLS)
}

// StartCluster checks that every port is free, then starts n nodes of sys with fresh data
// dirs under dir. On error, nodes already started are killed. A TLS system needs its
// certificates in sys.TLSDir (MakeTLS).
func StartCluster(sys System, n, basePort int, dir string) (*Cluster, error) {
	specs := Specs(n, basePort, dir)
	c := &Cluster{Sys: sys}
	if sys.TLS {
		if sys.Kind != KindHeartbeat || sys.TLSDir == "" {
			return nil, fmt.Errorf("%w: TLS needs a heartbeat system and its TLSDir", ErrBadConfig)
		}
		cfg, err := ClientTLS(sys.TLSDir)
		if err != nil {
			return nil, err
		}
		c.TLS = cfg
		for i := range specs {
			specs[i].HTTPS = true
		}
	}
	for _, s := range specs {
		for _, addr := range []string{s.PeerAddr, s.ClientAddr, s.HTTPAddr} {
			if err := portFree(addr); err != nil {
				return nil, err
			}
		}
		if err := os.RemoveAll(s.DataDir); err != nil {
			return nil, err
		}
	}
	initial := InitialCluster(specs)
	for _, s := range specs {
		p := &Proc{Spec: s, sys: sys, args: NodeArgs(sys, s, initial)}
		if err := p.Start(); err != nil {
			c.Close()
			return nil, err
		}
		c.Procs = append(c.Procs, p)
	}
	return c, nil
}

func portFree(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("port %s is taken (choose another --base-port): %w", addr, err)
	}
	return ln.Close()
}

// IDs returns the node ids in order.
func (c *Cluster) IDs() []string {
	out := make([]string, len(c.Procs))
	for i, p := range c.Procs {
		out[i] = p.Spec.ID
	}
	return out
}

// Targets returns the status poll targets of every node.
func (c *Cluster) Targets() []Target {
	out := make([]Target, len(c.Procs))
	for i, p := range c.Procs {
		out[i] = Target{ID: p.Spec.ID, HTTPAddr: p.Spec.HTTPBase(), TLS: c.TLS}
	}
	return out
}

// Proc returns the node with that id, or nil.
func (c *Cluster) Proc(id string) *Proc {
	for _, p := range c.Procs {
		if p.Spec.ID == id {
			return p
		}
	}
	return nil
}

// Close kills every node and waits for each to be reaped.
func (c *Cluster) Close() error {
	var errs []error
	for _, p := range c.Procs {
		errs = append(errs, p.Kill(10*time.Second))
	}
	return errors.Join(errs...)
}
