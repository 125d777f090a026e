package node

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/heartbeat-sidecar/heartbeat/apphealth"
	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/lifecycle"
	"github.com/heartbeat-sidecar/heartbeat/membership"
	"github.com/heartbeat-sidecar/heartbeat/rpc/transport"
)

// Sentinel errors; errors from this package wrap them with %w.
var (
	// ErrInvalidConfig wraps every Config.Validate failure; the message names
	// the field.
	ErrInvalidConfig = errors.New("node: invalid config")
	// ErrJoinRefused: the cluster refused this node's join for good (wrong
	// cluster id, id or address already in use, malformed request). Run
	// returns it. (It is lifecycle.ErrJoinRefused.)
	ErrJoinRefused = lifecycle.ErrJoinRefused
	// ErrClosed is returned by calls made after Shutdown or Close.
	ErrClosed = errors.New("node: closed")
	// ErrRemoved: the leader removed this node from the cluster while it
	// ran (heartbeat remove). Run returns it; started again, the node asks
	// to join anew. (It is lifecycle.ErrRemoved.)
	ErrRemoved = lifecycle.ErrRemoved
)

// Config configures a Node. Start from DefaultConfig, set ID and DataDir and
// either InitialCluster or Join (neither: a single-node cluster of itself).
type Config struct {
	// ID is this node's id, unique in the cluster and stable across restarts.
	ID string
	// ClusterID names the cluster; peers and data dirs of another cluster are
	// refused. Default "heartbeat".
	ClusterID string
	// DataDir holds the raft log, stable store and snapshots. Created if missing.
	DataDir string

	// PeerAddr is where the peer gRPC server (raft + ClusterAdmin) listens.
	// Port 0 picks a free port; see Node.PeerAddr. Default 127.0.0.1:7400.
	PeerAddr string
	// AdvertisePeerAddr is the peer address other nodes use. Empty: the bound
	// PeerAddr, which then must not be a wildcard (0.0.0.0, ::).
	AdvertisePeerAddr string
	// ClientAddr is where the client gRPC server (Coordinator, health,
	// reflection) listens. Default 127.0.0.1:7401.
	ClientAddr string
	// HTTPAddr is where the HTTP server listens. Default 127.0.0.1:7402.
	HTTPAddr string

	// MetricsAddr, when set, is a second, plaintext HTTP listener for
	// probes and scrapers: /healthz, /readyz and /metrics only, with no
	// credentials asked (etcd's --listen-metrics-urls). Empty: none (those
	// routes stay on HTTPAddr, where /metrics then needs role read).
	MetricsAddr string

	// CAFile, CertFile and KeyFile (PEM; all three or none) turn on mutual
	// TLS on every port: peers must present a node certificate of the
	// cluster CA naming their own id, and the client and HTTP ports verify
	// client certificates (package pki; heartbeat tls init makes them). The
	// certificate must be this node's: heartbeat://<ClusterID>/node/<ID>.
	// The files are read again when they change (rotation without restart).
	CAFile, CertFile, KeyFile string
	// TokensFile names a file of bearer tokens ("<name> <role> <secret>" per
	// line, mode 0600; package authz) accepted on the client and HTTP ports
	// from callers that cannot present a certificate.
	TokensFile string
	// Insecure allows a port on a non-loopback address without TLS: anyone
	// who reaches it can then change the cluster. Without TLS and without
	// tokens every caller is an admin.
	Insecure bool

	// InitialCluster is the static initial member list, given identically to
	// every founding node. A node with no state that finds its ID here
	// bootstraps the cluster with the whole list.
	InitialCluster []election.Peer
	// Join lists peer addresses of existing members. A node with no raft state
	// that is not in InitialCluster asks them to add it.
	Join []string
	// Voter: join as a voter (true) or as a non-voter. Default true.
	Voter bool

	// Timings, passed to election.Config. HeartbeatTimeout zero keeps
	// election's default; ElectionTimeout and LeaseDuration zero follow
	// HeartbeatTimeout in election's default proportions (with the defaults:
	// 250ms, 250ms, 200ms). LeaseDuration must stay <= HeartbeatTimeout.
	HeartbeatTimeout time.Duration
	ElectionTimeout  time.Duration
	LeaseDuration    time.Duration
	// HeartbeatInterval is the leader's heartbeat period (election.Config);
	// zero follows HeartbeatTimeout in election's default proportion.
	HeartbeatInterval time.Duration
	// FastFailover enables crash detection through held streams. Default true.
	FastFailover bool

	// FSM is the replicated state machine raft applies the log to. nil: a
	// new membership.FSM (members, resources, assignments), with the
	// reconciler, the resource API and application liveness. Another
	// *membership.FSM is used the same way; any other raft.FSM turns the
	// membership features off (their API calls answer Unimplemented).
	FSM raft.FSM
	// Membership configures the membership FSM built when FSM is nil.
	Membership membership.Config
	// Reconciler tunes the leader's failure detector and assignment loop
	// (SelfID and Logger are filled in by the node).
	Reconciler membership.ReconcilerConfig
	// DrainTimeout bounds the drain of a planned stop (Shutdown): the node
	// waits this long at most for its resources to move away before it
	// records itself as left (which takes up to 2s more). Default 5s; it must
	// stay below ShutdownTimeout, which bounds the whole graceful stop of Run.
	DrainTimeout time.Duration

	// AppHealthURL, when set, is polled every AppHealthInterval: a 2xx
	// answer means the local application is healthy. Only http:// on a
	// loopback host or one of this node's own hosts. Empty: no polling.
	AppHealthURL string
	// AppHealthInterval is the poll period and timeout of AppHealthURL.
	// Default 1s, at least 50ms.
	AppHealthInterval time.Duration
	// Push heartbeats need no configuration: once the application calls
	// Coordinator.AppHeartbeat, a lapsed TTL makes it unhealthy.

	// LeaderPriority, when not nil, is this node's leader priority
	// (0..membership.MaxLeaderPriority), sent with its registration at every
	// start: it overrides a priority set through the API meanwhile. nil
	// keeps the registered one (0 for a new member). The leader hands
	// leadership to a healthy, caught-up voter with a higher priority than
	// its own (see PriorityHoldoff); equal priorities never move it.
	LeaderPriority *uint32
	// PriorityHoldoff is how long a higher-priority voter must have been
	// continuously alive, healthy, not draining and answering heartbeats
	// before the leader hands it leadership: a flapping node does not
	// bounce leadership. Longer is steadier, shorter moves sooner. Default
	// 3s; at least 100ms.
	PriorityHoldoff time.Duration

	// MaxRequestBytes bounds one request on the client port: an HTTP body
	// and the gRPC message of a call (the client port's MaxRecvMsgSize),
	// the same on every path, checked at the edge before anything is
	// decoded or proposed. Oversized: ResourceExhausted (reason TOO_LARGE),
	// HTTP 413. Default DefaultMaxRequestBytes (1.5 MiB, etcd's default);
	// MinRequestBytes..MaxMaxRequestBytes. Whatever passes is still refused
	// when the command made of it is over membership.MaxCommandBytes.
	MaxRequestBytes int
	// QuotaBytes bounds the replicated state's size (membership.State.Bytes:
	// resource ids, labels and membership.ResourceOverhead each): beyond it
	// the leader refuses registrations that grow the state
	// (ResourceExhausted, reason QUOTA_EXCEEDED, HTTP 507) and raises
	// heartbeat_quota_alarm{kind="bytes"}; reads and deletes still work. The
	// leader's value holds (see api.Quota). Default DefaultQuotaBytes
	// (256 MiB); 0: no bound.
	QuotaBytes int64
	// MaxResources bounds the number of resources in the same way
	// (heartbeat_quota_alarm{kind="resources"}). Default
	// DefaultMaxResources (1,000,000); 0: no bound.
	MaxResources int

	// JoinRetryMax caps the backoff between join attempts. Default 2s.
	JoinRetryMax time.Duration
	// ShutdownTimeout bounds Run's graceful Shutdown after its context ends.
	// Default 10s.
	ShutdownTimeout time.Duration

	// LogFormat is "text" or "json"; LogLevel is an hclog level name (trace,
	// debug, info, warn, error). Used only when Logger is nil; logs go to
	// LogOutput (default stderr).
	LogFormat string
	LogLevel  string
	LogOutput io.Writer
	// EnablePprof serves Go's runtime profiles under /debug/pprof/ on the
	// HTTP port (off by default: a profile costs CPU and shows internals).
	EnablePprof bool

	// Connection and stream limits (node/limits.go; README "Limits"). Zero
	// takes the default, a negative value is refused.
	//
	// HTTPReadHeaderTimeout bounds the reading of a request's headers on the
	// HTTP ports (HTTPAddr, MetricsAddr). Default 5s.
	HTTPReadHeaderTimeout time.Duration
	// HTTPReadTimeout bounds the reading of a whole request, headers and
	// body: a slower body is cut (400) and its connection closed. A stream
	// (an SSE watch) is a long response, not a long request: it is not
	// bounded. Default 30s.
	HTTPReadTimeout time.Duration
	// HTTPIdleTimeout closes a keep-alive connection that carries no request
	// this long. Default 60s.
	HTTPIdleTimeout time.Duration
	// HTTPMaxHeaderBytes bounds a request's header bytes (beyond: 431).
	// Default 64 KiB.
	HTTPMaxHeaderBytes int
	// MaxWatches caps the streams open at once on the client port (watches
	// of leader, members and assignments, keep-alives, health watches; the
	// HTTP port's SSE watches are such streams too); MaxWatchesPerClient
	// caps those of one client (its authenticated name and its address).
	// One more is refused: ResourceExhausted, over HTTP 429. Defaults
	// DefaultMaxWatches and DefaultMaxWatchesPerClient.
	MaxWatches, MaxWatchesPerClient int

	// WrapTransport, when set, wraps the peer transport raft uses (tests put
	// internal/faultnet's fault injector here). The wrapper owns the transport:
	// its Close must close it. nil: raft uses the gRPC transport directly.
	WrapTransport func(*transport.Transport) PeerTransport

	// Logger, when set, is used as the base logger ("node"=ID is added to
	// every line).
	Logger hclog.Logger
}

// PeerTransport is what the node needs of its peer transport: raft's
// transport with held streams (election.Transport), the per-peer heartbeat
// acknowledgments that feed the lease and the failure detector, and the
// ownership grants that ride the heartbeats.
// *transport.Transport and *faultnet.Transport implement it.
type PeerTransport interface {
	election.Transport
	Acks() map[raft.ServerAddress]transport.Ack
	SetGrantHooks(transport.GrantHooks)
	Grants() map[raft.ServerAddress]time.Time
	HoldGrants(addrs []raft.ServerAddress) (release func())
}

// Defaults and bounds of the limits (see Config.MaxRequestBytes,
// Config.QuotaBytes, Config.MaxResources).
const (
	DefaultMaxRequestBytes = 3 << 19  // 1.5 MiB, as etcd's --max-request-bytes
	MinRequestBytes        = 64 << 10 // a batch of a few hundred resources
	// MaxMaxRequestBytes is the peer transport's message limit
	// (transport.Config.MaxMsgSize): a forwarded write must fit in it.
	MaxMaxRequestBytes  = 64 << 20
	DefaultQuotaBytes   = 256 << 20
	DefaultMaxResources = 1_000_000
)

// DefaultConfig returns the defaults: loopback ports 7400/7401/7402, cluster
// "heartbeat", voter, fast failover on, election's default heartbeat timeout
// (election timeout and lease derived from it), text logs at info.
func DefaultConfig() Config {
	ec := election.DefaultConfig()
	return Config{
		ClusterID:         "heartbeat",
		PeerAddr:          "127.0.0.1:7400",
		ClientAddr:        "127.0.0.1:7401",
		HTTPAddr:          "127.0.0.1:7402",
		Voter:             true,
		HeartbeatTimeout:  ec.HeartbeatTimeout,
		FastFailover:      ec.FastFailover,
		JoinRetryMax:      2 * time.Second,
		ShutdownTimeout:   10 * time.Second,
		Membership:        membership.DefaultConfig(),
		Reconciler:        membership.DefaultReconcilerConfig(),
		DrainTimeout:      5 * time.Second,
		PriorityHoldoff:   3 * time.Second,
		MaxRequestBytes:   DefaultMaxRequestBytes,
		QuotaBytes:        DefaultQuotaBytes,
		MaxResources:      DefaultMaxResources,
		AppHealthInterval: time.Second,
		LogFormat:         "text",
		LogLevel:          "info",

		HTTPReadHeaderTimeout: DefaultHTTPReadHeaderTimeout,
		HTTPReadTimeout:       DefaultHTTPReadTimeout,
		HTTPIdleTimeout:       DefaultHTTPIdleTimeout,
		HTTPMaxHeaderBytes:    DefaultHTTPMaxHeaderBytes,
		MaxWatches:            DefaultMaxWatches,
		MaxWatchesPerClient:   DefaultMaxWatchesPerClient,
	}
}

// safePathName reports whether id can name a file in a directory and nothing
// else: not "." or "..", no path separator of any platform, no NUL or other
// control character, no invalid UTF-8. The CLI's default data dir is
// data/<id>; "../x" would put it outside data/.
func safePathName(id string) bool {
	if id == "." || id == ".." || !utf8.ValidString(id) || strings.ContainsAny(id, "/\\") {
		return false
	}
	for _, r := range id {
		if unicode.IsControl(r) {
			return false
		}
	}
	return filepath.IsLocal(id)
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
}

// Validate checks what the node itself needs; election.Config.Validate checks
// the timings when New builds the election config (its error is wrapped too).
func (c Config) Validate() error {
	switch {
	case c.ID == "":
		return invalid("ID is empty")
	case strings.ContainsAny(c.ID, ",= \t\n"):
		return invalid("ID %q may not contain ',', '=' or spaces", c.ID)
	case !safePathName(c.ID):
		return invalid("ID %q is not a safe file name (the default data dir is data/<ID>): no '/', '\\', NUL or control characters, not '.' or '..'", c.ID)
	case c.ClusterID == "":
		return invalid("ClusterID is empty")
	case c.DataDir == "":
		return invalid("DataDir is empty")
	case c.HeartbeatTimeout < 0 || c.ElectionTimeout < 0 || c.LeaseDuration < 0 || c.HeartbeatInterval < 0:
		return invalid("timings may not be negative")
	case c.JoinRetryMax < 0 || c.ShutdownTimeout < 0 || c.DrainTimeout < 0:
		return invalid("JoinRetryMax, ShutdownTimeout and DrainTimeout may not be negative")
	case c.ShutdownTimeout > 0 && c.DrainTimeout >= c.ShutdownTimeout:
		return invalid("DrainTimeout %v must be below ShutdownTimeout %v", c.DrainTimeout, c.ShutdownTimeout)
	case c.MaxRequestBytes < MinRequestBytes || c.MaxRequestBytes > MaxMaxRequestBytes:
		return invalid("MaxRequestBytes %d outside %d..%d", c.MaxRequestBytes, MinRequestBytes, MaxMaxRequestBytes)
	case c.QuotaBytes < 0 || c.MaxResources < 0:
		return invalid("QuotaBytes and MaxResources may not be negative (0: no bound)")
	case c.LeaderPriority != nil && *c.LeaderPriority > membership.MaxLeaderPriority:
		return invalid("LeaderPriority %d: want 0..%d", *c.LeaderPriority, membership.MaxLeaderPriority)
	case c.PriorityHoldoff != 0 && c.PriorityHoldoff < 100*time.Millisecond:
		return invalid("PriorityHoldoff %v: at least 100ms (0: the default)", c.PriorityHoldoff)
	case c.AppHealthURL != "" && c.AppHealthInterval < 50*time.Millisecond:
		return invalid("AppHealthInterval %v: at least 50ms", c.AppHealthInterval)
	}
	if err := c.validateLimits(); err != nil {
		return err
	}
	if c.AppHealthURL != "" {
		if err := apphealth.CheckURL(c.AppHealthURL, c.PeerAddr, c.AdvertisePeerAddr, c.ClientAddr, c.HTTPAddr); err != nil {
			return invalid("AppHealthURL: %v", err)
		}
	}
	if c.FSM == nil {
		if err := c.Membership.Validate(); err != nil {
			return invalid("Membership: %v", err)
		}
	}
	rc := c.Reconciler
	rc.SelfID = c.ID
	if err := rc.Validate(); err != nil {
		return invalid("Reconciler: %v", err)
	}
	addrs := map[string]string{"PeerAddr": c.PeerAddr, "ClientAddr": c.ClientAddr, "HTTPAddr": c.HTTPAddr}
	if c.MetricsAddr != "" {
		addrs["MetricsAddr"] = c.MetricsAddr
	}
	for name, addr := range addrs {
		if err := checkHostPort(addr); err != nil {
			return invalid("%s: %v", name, err)
		}
	}
	if n := countSet(c.CAFile, c.CertFile, c.KeyFile); n != 0 && n != 3 {
		return invalid("CAFile, CertFile and KeyFile go together (TLS): %d of 3 set", n)
	}
	if c.AdvertisePeerAddr != "" {
		if err := checkAdvertise(c.AdvertisePeerAddr); err != nil {
			return invalid("AdvertisePeerAddr: %v", err)
		}
	} else if host, _, _ := net.SplitHostPort(c.PeerAddr); host == "" || net.ParseIP(host).IsUnspecified() {
		return invalid("PeerAddr %q is a wildcard: set AdvertisePeerAddr to the address peers should dial", c.PeerAddr)
	}
	for i, a := range c.Join {
		if err := checkAdvertise(a); err != nil {
			return invalid("Join[%d]: %v", i, err)
		}
	}
	switch c.LogFormat {
	case "", "text", "json":
	default:
		return invalid("LogFormat %q: want text or json", c.LogFormat)
	}
	if c.LogLevel != "" && hclog.LevelFromString(c.LogLevel) == hclog.NoLevel {
		return invalid("LogLevel %q: want trace, debug, info, warn or error", c.LogLevel)
	}
	if err := ValidatePeers(c.InitialCluster); err != nil {
		return invalid("InitialCluster: %v", err)
	}
	if len(c.InitialCluster) > 0 && !inPeers(c.InitialCluster, c.ID) && len(c.Join) == 0 {
		return invalid("ID %q is not in InitialCluster and no Join address is given", c.ID)
	}
	if !c.TLS() && !c.Insecure {
		for _, name := range []string{"PeerAddr", "ClientAddr", "HTTPAddr"} {
			if !isLoopback(addrs[name]) {
				return invalid("%s %s is not a loopback address and TLS is off: give CAFile, CertFile and KeyFile (heartbeat tls init makes them), or set Insecure to accept that anyone who reaches the port controls the cluster", name, addrs[name])
			}
		}
		if c.AdvertisePeerAddr != "" && !isLoopback(c.AdvertisePeerAddr) {
			return invalid("AdvertisePeerAddr %s is not a loopback address and TLS is off: give CAFile, CertFile and KeyFile, or set Insecure", c.AdvertisePeerAddr)
		}
	}
	// Let the election check the timings now, so that a bad combination is a
	// configuration error before anything starts.
	ec := c.electionTimings(election.DefaultConfig())
	ec.ID, ec.ClusterID, ec.DataDir = c.ID, c.ClusterID, c.DataDir
	ec.Acks = func() map[raft.ServerAddress]election.Ack { return nil }
	ec.ErrPeerClosed, ec.ErrGoodbye = errors.New("closed"), errors.New("goodbye")
	if err := ec.Validate(); err != nil {
		return invalid("timings: %v", strings.TrimPrefix(err.Error(), election.ErrInvalidConfig.Error()+": "))
	}
	return nil
}

// TLS reports whether the node runs with mutual TLS.
func (c Config) TLS() bool { return c.CAFile != "" }

// countSet counts the non-empty strings.
func countSet(ss ...string) int {
	n := 0
	for _, s := range ss {
		if s != "" {
			n++
		}
	}
	return n
}

// isLoopback reports whether host:port names a loopback host (127.0.0.0/8,
// ::1, localhost). A wildcard host is not loopback.
func isLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// scale returns d × num / den.
func scale(d, num, den time.Duration) time.Duration {
	return time.Duration(float64(d) * float64(num) / float64(den))
}

// electionTimings applies the node's timings (zero: keep ec's) to ec.
func (c Config) electionTimings(ec election.Config) election.Config {
	if c.HeartbeatTimeout > 0 {
		ec.HeartbeatTimeout = c.HeartbeatTimeout
	}
	// Zero election timeout and lease follow the heartbeat timeout in
	// election's default proportions, so lowering one flag is enough.
	if c.ElectionTimeout > 0 {
		ec.ElectionTimeout = c.ElectionTimeout
	} else if c.HeartbeatTimeout > 0 {
		ec.ElectionTimeout = scale(c.HeartbeatTimeout, election.DefaultElectionTimeout, election.DefaultHeartbeatTimeout)
	}
	if c.LeaseDuration > 0 {
		ec.LeaseDuration = c.LeaseDuration
	} else if c.HeartbeatTimeout > 0 {
		ec.LeaseDuration = scale(c.HeartbeatTimeout, election.DefaultLeaseDuration, election.DefaultHeartbeatTimeout)
	}
	if c.HeartbeatInterval > 0 {
		ec.HeartbeatInterval = c.HeartbeatInterval
	} else if c.HeartbeatTimeout > 0 {
		ec.HeartbeatInterval = scale(c.HeartbeatTimeout, election.DefaultHeartbeatInterval, election.DefaultHeartbeatTimeout)
	}
	// raft's leader lease follows the heartbeat timeout too: raft requires
	// it <= HeartbeatTimeout, and it must outlast the gap between two
	// heartbeats, or the leader steps down between them.
	if c.HeartbeatTimeout > 0 {
		ec.LeaderLeaseTimeout = scale(c.HeartbeatTimeout, election.DefaultLeaderLeaseTimeout, election.DefaultHeartbeatTimeout)
	}
	ec.FastFailover = c.FastFailover
	return ec
}

// ValidatePeers checks a member list: ids and addresses present, well formed
// and unique.
func ValidatePeers(peers []election.Peer) error {
	ids := map[string]bool{}
	addrs := map[string]bool{}
	for _, p := range peers {
		switch {
		case p.ID == "":
			return fmt.Errorf("empty id (for address %q)", p.Address)
		case ids[p.ID]:
			return fmt.Errorf("duplicate id %q", p.ID)
		case addrs[p.Address]:
			return fmt.Errorf("duplicate address %q", p.Address)
		}
		if err := checkAdvertise(p.Address); err != nil {
			return fmt.Errorf("%s: %v", p.ID, err)
		}
		ids[p.ID], addrs[p.Address] = true, true
	}
	return nil
}

// ParsePeers parses an initial-cluster list "n1=127.0.0.1:7410,n2=...";
// every member is a voter. Spaces around items are ignored; "" gives nil.
func ParsePeers(s string) ([]election.Peer, error) {
	var peers []election.Peer
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		id, addr, ok := strings.Cut(item, "=")
		if !ok || strings.TrimSpace(id) == "" || strings.TrimSpace(addr) == "" {
			return nil, fmt.Errorf("bad member %q: want id=host:port", item)
		}
		peers = append(peers, election.Peer{ID: strings.TrimSpace(id), Address: strings.TrimSpace(addr), Voter: true})
	}
	if err := ValidatePeers(peers); err != nil {
		return nil, err
	}
	return peers, nil
}

func inPeers(peers []election.Peer, id string) bool {
	for _, p := range peers {
		if p.ID == id {
			return true
		}
	}
	return false
}

// checkHostPort accepts host:port with a numeric port (host may be empty or a
// wildcard: it is a bind address).
func checkHostPort(addr string) error {
	if addr == "" {
		return errors.New("empty address")
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("bad address %q: %v", addr, err)
	}
	if _, err := net.LookupPort("tcp", port); err != nil || port == "" {
		return fmt.Errorf("bad port in %q", addr)
	}
	return nil
}

// checkAdvertise accepts host:port that another node can dial: a host is
// required and may not be a wildcard, the port not 0.
func checkAdvertise(addr string) error {
	if err := checkHostPort(addr); err != nil {
		return err
	}
	host, port, _ := net.SplitHostPort(addr)
	if host == "" {
		return fmt.Errorf("address %q has no host", addr)
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return fmt.Errorf("address %q is a wildcard; other nodes cannot dial it", addr)
	}
	if port == "0" {
		return fmt.Errorf("address %q has port 0", addr)
	}
	return nil
}

// newLogger builds the base logger from LogFormat, LogLevel and LogOutput,
// without the "node" field: the transport and the election add it themselves.
func (c Config) newLogger() hclog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	out := c.LogOutput
	if out == nil {
		out = os.Stderr
	}
	level := hclog.Info
	if c.LogLevel != "" {
		level = hclog.LevelFromString(c.LogLevel)
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:       "heartbeat",
		Level:      level,
		Output:     out,
		JSONFormat: c.LogFormat == "json",
	})
}
