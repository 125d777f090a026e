package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/membership"
	"github.com/heartbeat-sidecar/heartbeat/node"
)

const runUsage = `Usage: heartbeat run [flags]
       heartbeat [flags]              (the same, when the first argument is a flag)

Runs a Heartbeat node until SIGINT or SIGTERM, then stops gracefully (a
leader hands its leadership to another voter first).

Start every founding node with the same --initial-cluster; add a node later
with --join pointing at any member's peer address. With neither, the node
forms a cluster of one.

Example (3 nodes on one machine, see scripts/local-cluster.sh):
  heartbeat run --node-id n1 --peer-addr 127.0.0.1:7410 --client-addr 127.0.0.1:7411 \
    --http-addr 127.0.0.1:7412 --data-dir data/n1 \
    --initial-cluster n1=127.0.0.1:7410,n2=127.0.0.1:7420,n3=127.0.0.1:7430
`

// runFlags holds the run command's flag values before they become a
// node.Config.
type runFlags struct {
	id, clusterID, dataDir                                         string
	peerAddr, advertise, clientAddr, httpAddr                      string
	initialCluster, join                                           string
	nonVoter, fastFailover                                         bool
	heartbeatTimeout, electionTimeout, leaseDur, heartbeatInterval time.Duration
	logFormat, logLevel                                            string
	shutdownTimeout, drainTimeout                                  time.Duration
	appHealthURL                                                   string
	appHealthInterval                                              time.Duration
	leaderPriority                                                 int
	enablePprof                                                    bool
	priorityHoldoff                                                time.Duration
	caFile, certFile, keyFile, tokensFile, metricsAddr             string
	insecure                                                       bool
	maxRequestBytes, maxResources                                  int
	quotaBytes                                                     int64
	httpReadTimeout, httpIdleTimeout                               time.Duration
	maxWatches, maxWatchesPerClient                                int
}

// parseRunConfig turns the run command's arguments and environment into a
// validated node.Config. Every error is a usage error naming the flag.
func parseRunConfig(args []string, getenv env, stdout io.Writer) (node.Config, error) {
	def := node.DefaultConfig()
	var f runFlags
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.StringVar(&f.id, "node-id", "", "this node's id, unique in the cluster and stable across restarts (required)")
	fs.StringVar(&f.clusterID, "cluster-id", def.ClusterID, "cluster name; peers and data dirs of another cluster are refused")
	fs.StringVar(&f.dataDir, "data-dir", "", "directory for the raft log and snapshots (default data/<id>)")
	fs.StringVar(&f.peerAddr, "peer-addr", def.PeerAddr, "peer gRPC listen address (raft + cluster admin); use 0.0.0.0:7400 to serve other hosts")
	fs.StringVar(&f.advertise, "advertise-peer-addr", "", "peer address other nodes dial (default: --peer-addr; required when it is a wildcard)")
	fs.StringVar(&f.clientAddr, "client-addr", def.ClientAddr, "client gRPC listen address (Coordinator, health)")
	fs.StringVar(&f.httpAddr, "http-addr", def.HTTPAddr, "HTTP listen address (/healthz /readyz /metrics /v1/status /v1/members /v1/resources ...)")
	fs.StringVar(&f.initialCluster, "initial-cluster", "", "founding members, id=host:port,... (the same on every founding node)")
	fs.StringVar(&f.join, "join", "", "peer addresses of existing members to join through, host:port,...")
	fs.BoolVar(&f.nonVoter, "nonvoter", !def.Voter, "join as a non-voter (default: a voter); a founding node of --initial-cluster is a voter")
	fs.DurationVar(&f.heartbeatTimeout, "heartbeat-timeout", def.HeartbeatTimeout, "follower's wait for the leader before an election (silent failover bound)")
	fs.DurationVar(&f.electionTimeout, "election-timeout", def.ElectionTimeout, fmt.Sprintf("candidate's wait before a new election round (0: %s)", derived(election.DefaultElectionTimeout)))
	fs.DurationVar(&f.leaseDur, "lease-duration", def.LeaseDuration, fmt.Sprintf("leader lease length, <= --heartbeat-timeout (0: %s)", derived(election.DefaultLeaseDuration)))
	fs.DurationVar(&f.heartbeatInterval, "heartbeat-interval", def.HeartbeatInterval, fmt.Sprintf("leader's heartbeat period, <= --heartbeat-timeout/4 (0: %s)", derived(election.DefaultHeartbeatInterval)))
	fs.BoolVar(&f.fastFailover, "fast-failover", def.FastFailover, "detect a crashed leader through held streams and elect at once")
	fs.StringVar(&f.logFormat, "log-format", def.LogFormat, "log format: text or json")
	fs.StringVar(&f.logLevel, "log-level", def.LogLevel, "log level: trace, debug, info, warn, error")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", def.ShutdownTimeout, "bound on the graceful stop after SIGTERM")
	fs.DurationVar(&f.drainTimeout, "drain-timeout", def.DrainTimeout, "on SIGTERM, wait at most this long for this node's resources to move away before leaving")
	fs.StringVar(&f.appHealthURL, "app-health-url", "", "poll this http:// URL (loopback or this node's host) for the application's health; 2xx = healthy")
	fs.DurationVar(&f.appHealthInterval, "app-health-interval", def.AppHealthInterval, "poll period (and timeout) of --app-health-url")
	fs.BoolVar(&f.enablePprof, "enable-pprof", false, "serve Go's runtime profiles under /debug/pprof/ on the HTTP port")
	fs.IntVar(&f.leaderPriority, "leader-priority", -1, "this node's leader priority, 0..100: the leader hands leadership to a healthy voter with a higher one (-1: keep what the cluster has recorded, 0 for a new node)")
	fs.DurationVar(&f.priorityHoldoff, "priority-holdoff", def.PriorityHoldoff, "how long a higher-priority voter must stay healthy before the leader hands it leadership")
	fs.StringVar(&f.caFile, "cacert", "", "cluster CA certificate (PEM): with --cert and --key, mutual TLS on every port (heartbeat tls init makes them)")
	fs.StringVar(&f.certFile, "cert", "", "this node's certificate (PEM), naming heartbeat://<cluster-id>/node/<node-id>; reloaded when the file changes")
	fs.StringVar(&f.keyFile, "key", "", "this node's private key (PEM)")
	fs.StringVar(&f.tokensFile, "tokens-file", "", "bearer tokens for the client and HTTP ports, one \"<name> <role> <secret>\" per line (mode 0600); roles read, write, admin")
	fs.BoolVar(&f.insecure, "insecure", false, "allow non-loopback addresses without TLS: anyone who reaches a port then controls the cluster")
	fs.StringVar(&f.metricsAddr, "metrics-addr", "", "also serve /healthz, /readyz and /metrics on this plaintext address, with no credentials (for probes and scrapers)")
	fs.IntVar(&f.maxRequestBytes, "max-request-bytes", def.MaxRequestBytes, fmt.Sprintf("largest request on the client and HTTP ports, in bytes (HTTP body or gRPC message; %d..%d); larger: 413 / RESOURCE_EXHAUSTED", node.MinRequestBytes, node.MaxMaxRequestBytes))
	fs.Int64Var(&f.quotaBytes, "quota-bytes", def.QuotaBytes, "quota of the replicated state's size in bytes (resource ids, labels, 64 bytes each): the leader refuses registrations beyond it (507), reads and deletes still work (0: none)")
	fs.IntVar(&f.maxResources, "max-resources", def.MaxResources, "quota of registered resources: the leader refuses registrations beyond it (507), reads and deletes still work (0: none)")
	fs.DurationVar(&f.httpReadTimeout, "http-read-timeout", def.HTTPReadTimeout, "bound on reading a whole HTTP request, headers and body (a slower one is cut); not on streams")
	fs.DurationVar(&f.httpIdleTimeout, "http-idle-timeout", def.HTTPIdleTimeout, "close an HTTP keep-alive connection idle this long")
	fs.IntVar(&f.maxWatches, "max-watches", def.MaxWatches, "most streams (watches, keep-alives; SSE watches included) open at once on this node; one more is refused (429 / RESOURCE_EXHAUSTED)")
	fs.IntVar(&f.maxWatchesPerClient, "max-watches-per-client", def.MaxWatchesPerClient, "most streams open at once for one client (its identity and address)")
	if err := parseFlags(fs, args, getenv, stdout, runUsage); err != nil {
		return node.Config{}, err
	}
	if err := renamedEnv(getenv); err != nil {
		return node.Config{}, err
	}
	return f.config(def)
}

// config validates the flag values and builds the node.Config.
func (f runFlags) config(cfg node.Config) (node.Config, error) {
	if f.id == "" {
		return cfg, usageErrorf("missing --node-id (or %s)", envName("node-id"))
	}
	peers, err := node.ParsePeers(f.initialCluster)
	if err != nil {
		return cfg, usageErrorf("--initial-cluster: %v", err)
	}
	var join []string
	for _, a := range strings.Split(f.join, ",") {
		if a = strings.TrimSpace(a); a != "" {
			join = append(join, a)
		}
	}
	if len(peers) > 0 && !inPeers(peers, f.id) && len(join) == 0 {
		return cfg, usageErrorf("--node-id %q is not in --initial-cluster and no --join address is given", f.id)
	}
	switch f.logFormat {
	case "text", "json":
	default:
		return cfg, usageErrorf("--log-format %q: want text or json", f.logFormat)
	}
	cfg.ID, cfg.ClusterID = f.id, f.clusterID
	cfg.DataDir = f.dataDir
	if cfg.DataDir == "" {
		cfg.DataDir = filepath.Join("data", f.id)
	}
	cfg.PeerAddr, cfg.AdvertisePeerAddr = f.peerAddr, f.advertise
	cfg.ClientAddr, cfg.HTTPAddr = f.clientAddr, f.httpAddr
	cfg.InitialCluster, cfg.Join, cfg.Voter = peers, join, !f.nonVoter
	cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaseDuration = f.heartbeatTimeout, f.electionTimeout, f.leaseDur
	cfg.HeartbeatInterval = f.heartbeatInterval
	cfg.FastFailover = f.fastFailover
	cfg.LogFormat, cfg.LogLevel = f.logFormat, f.logLevel
	cfg.ShutdownTimeout = f.shutdownTimeout
	cfg.DrainTimeout = f.drainTimeout
	cfg.AppHealthURL, cfg.AppHealthInterval = f.appHealthURL, f.appHealthInterval
	switch {
	case f.leaderPriority == -1:
	case f.leaderPriority < 0 || f.leaderPriority > int(membership.MaxLeaderPriority):
		return cfg, usageErrorf("--leader-priority %d: want 0..%d (or -1: unset)", f.leaderPriority, membership.MaxLeaderPriority)
	default:
		p := uint32(f.leaderPriority)
		cfg.LeaderPriority = &p
	}
	cfg.PriorityHoldoff = f.priorityHoldoff
	cfg.EnablePprof = f.enablePprof
	cfg.CAFile, cfg.CertFile, cfg.KeyFile = f.caFile, f.certFile, f.keyFile
	cfg.TokensFile, cfg.Insecure, cfg.MetricsAddr = f.tokensFile, f.insecure, f.metricsAddr
	cfg.MaxRequestBytes, cfg.QuotaBytes, cfg.MaxResources = f.maxRequestBytes, f.quotaBytes, f.maxResources
	cfg.HTTPReadTimeout, cfg.HTTPIdleTimeout = f.httpReadTimeout, f.httpIdleTimeout
	cfg.MaxWatches, cfg.MaxWatchesPerClient = f.maxWatches, f.maxWatchesPerClient
	if err := cfg.Validate(); err != nil {
		msg := strings.TrimPrefix(err.Error(), node.ErrInvalidConfig.Error()+": ")
		return cfg, usageErrorf("%s", fieldsToFlags.Replace(msg))
	}
	return cfg, nil
}

// fieldsToFlags names config fields as the flags that set them.
var fieldsToFlags = strings.NewReplacer(
	"HeartbeatTimeout", "--heartbeat-timeout", "ElectionTimeout", "--election-timeout",
	"LeaseDuration", "--lease-duration", "HeartbeatInterval", "--heartbeat-interval", "PeerAddr", "--peer-addr", "ClientAddr", "--client-addr",
	"HTTPAddr", "--http-addr", "AdvertisePeerAddr", "--advertise-peer-addr", "LogLevel", "--log-level",
	"ClusterID", "--cluster-id", "InitialCluster", "--initial-cluster", "Join", "--join",
	"AppHealthURL", "--app-health-url", "AppHealthInterval", "--app-health-interval", "DrainTimeout", "--drain-timeout", "ShutdownTimeout", "--shutdown-timeout",
	"LeaderPriority", "--leader-priority", "PriorityHoldoff", "--priority-holdoff",
	"CAFile, CertFile and KeyFile", "--cacert, --cert and --key", "give CAFile, CertFile and KeyFile", "give --cacert, --cert and --key",
	"set Insecure", "give --insecure", "MetricsAddr", "--metrics-addr",
	"MaxRequestBytes", "--max-request-bytes", "QuotaBytes and MaxResources", "--quota-bytes and --max-resources",
	"HTTPReadTimeout", "--http-read-timeout", "HTTPIdleTimeout", "--http-idle-timeout",
	"MaxWatchesPerClient", "--max-watches-per-client", "MaxWatches", "--max-watches")

// derived describes a timing that follows --heartbeat-timeout.
func derived(def time.Duration) string {
	ratio := float64(def) / float64(election.DefaultHeartbeatTimeout)
	return fmt.Sprintf("%.2g x --heartbeat-timeout, %v at the default", ratio, def)
}

func inPeers(peers []election.Peer, id string) bool {
	for _, p := range peers {
		if p.ID == id {
			return true
		}
	}
	return false
}

// cmdRun runs a node until ctx ends (SIGINT/SIGTERM).
func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer, getenv env) error {
	cfg, err := parseRunConfig(args, getenv, stdout)
	if err != nil {
		return err
	}
	cfg.LogOutput = stderr
	n, err := node.New(cfg)
	if err != nil {
		return fmt.Errorf("start node %s: %w", cfg.ID, err)
	}
	return n.Run(ctx)
}
