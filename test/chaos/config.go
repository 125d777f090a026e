package chaos

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Fault kinds.
const (
	KindQuiet             = "quiet"              // nothing: a fault-free window (L2)
	KindKill              = "kill"               // SIGKILL one node, restart it after
	KindKillMajority      = "kill-majority"      // SIGKILL a majority (leader included), restart
	KindKillAll           = "kill-all"           // SIGKILL every node, restart all (S4)
	KindPauseLong         = "pause-long"         // docker pause longer than the heartbeat timeout
	KindPauseShort        = "pause-short"        // docker pause shorter than it: no election (L2)
	KindIsolate           = "isolate"            // iptables: one node cut from every peer
	KindDisconnect        = "net-disconnect"     // docker network disconnect (host loses it too)
	KindPartitionMinority = "partition-minority" // a minority side without the leader
	KindPartitionMajority = "partition-majority" // the leader's side is the minority
	KindOneWay            = "one-way"            // a node stops hearing its peers; they still hear it
	KindFlap              = "flapping-link"      // a cut between two nodes toggled on and off
	KindDelay             = "netem-delay"        // added latency with jitter on one node (needs sch_netem)
	KindLoss              = "packet-loss"        // random loss on one node (netem, else iptables statistic)
	KindRolling           = "rolling-restart"    // docker stop (SIGTERM) + start, one node at a time
)

// Sentinel errors.
var (
	// ErrConfig wraps every invalid Config.
	ErrConfig = errors.New("chaos: invalid config")
)

// Config drives one chaos run. Zero durations mean "the node's default".
type Config struct {
	// Quick runs every fault once; otherwise each runs Runs times.
	Quick bool
	Runs  int
	// Seed picks targets (which follower, which minority) reproducibly.
	Seed int64
	// Nodes is 3 or 5.
	Nodes int
	// Project is the compose project name; Subnet the first three octets of
	// the private network; PortPrefix the first two digits of the published
	// ports (n1 -> PortPrefix+"11"/"12").
	Project, Subnet, PortPrefix string
	// Image is the node image, built by scripts/docker-build.sh.
	Image string
	// Node timings, passed to every node as HEARTBEAT_* variables.
	HeartbeatTimeout, ElectionTimeout, LeaseDuration time.Duration
	// CrashBound bounds failover after a crash (kill), SilentBound after a
	// silent failure (pause, partition), RestartBound after restarts.
	CrashBound, SilentBound, RestartBound time.Duration
	// Poll is the /v1/status polling period; PollTimeout its deadline.
	Poll, PollTimeout time.Duration
	// Out is where report.md, timeline.svg and (on failure) histories and
	// node logs go.
	Out string
	// Faults, when not empty, runs only these faults: a kind ("pause-long")
	// or kind/target ("pause-long/leader"). The quiet window always runs.
	Faults []string
	// UnsafeNoLeaseTimer runs the application workload's clients with
	// client.Config.UnsafeNoLeaseTimer: only to watch the A1 checker catch
	// the overlaps that follow (a planted violation).
	UnsafeNoLeaseTimer bool
	// StaleReads makes the reads-and-writes workload read stale: only to
	// watch the R1 checker catch a node answering from its old state (a
	// planted violation).
	StaleReads bool
	// Insecure runs the cluster in plaintext (HEARTBEAT_INSECURE, the
	// docker-compose.insecure.yml override) instead of mutual TLS: only to
	// compare failover figures with and without TLS.
	Insecure bool
}

// DefaultConfig is the full suite on 5 nodes with the nodes' own timings.
func DefaultConfig() Config {
	return Config{
		Runs:         5,
		Seed:         1,
		Nodes:        5,
		Project:      "heartbeat-chaos",
		Subnet:       "172.28.6",
		PortPrefix:   "76",
		Image:        "heartbeat:chaos",
		CrashBound:   2 * time.Second,
		SilentBound:  5 * time.Second,
		RestartBound: 20 * time.Second,
		Poll:         20 * time.Millisecond,
		PollTimeout:  300 * time.Millisecond,
		Out:          "out",
	}
}

// ConfigFromEnv starts from DefaultConfig and applies CHAOS_QUICK, CHAOS_RUNS,
// CHAOS_SEED, CHAOS_NODES, CHAOS_PROJECT, CHAOS_SUBNET, CHAOS_PORT_PREFIX,
// CHAOS_IMAGE, CHAOS_HEARTBEAT_TIMEOUT, CHAOS_ELECTION_TIMEOUT,
// CHAOS_LEASE_DURATION, CHAOS_CRASH_BOUND, CHAOS_SILENT_BOUND,
// CHAOS_RESTART_BOUND, CHAOS_OUT, CHAOS_FAULTS (comma-separated) and
// CHAOS_UNSAFE_NO_LEASE_TIMER, CHAOS_STALE_READS and CHAOS_INSECURE, then
// validates.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	c := DefaultConfig()
	var errs []error
	str := func(name string, dst *string) {
		if v := getenv(name); v != "" {
			*dst = v
		}
	}
	num := func(name string, dst *int) {
		if v := getenv(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", name, v, err))
			}
			*dst = n
		}
	}
	dur := func(name string, dst *time.Duration) {
		if v := getenv(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", name, v, err))
			}
			*dst = d
		}
	}
	flag := func(name string) bool {
		v := getenv(name)
		return v != "" && v != "0" && v != "false"
	}
	c.Quick = flag("CHAOS_QUICK")
	c.UnsafeNoLeaseTimer = flag("CHAOS_UNSAFE_NO_LEASE_TIMER")
	c.StaleReads = flag("CHAOS_STALE_READS")
	c.Insecure = flag("CHAOS_INSECURE")
	if v := getenv("CHAOS_FAULTS"); v != "" {
		c.Faults = strings.Split(v, ",")
	}
	num("CHAOS_RUNS", &c.Runs)
	if v := getenv("CHAOS_SEED"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("CHAOS_SEED=%q: %w", v, err))
		}
		c.Seed = n
	}
	num("CHAOS_NODES", &c.Nodes)
	str("CHAOS_PROJECT", &c.Project)
	str("CHAOS_SUBNET", &c.Subnet)
	str("CHAOS_PORT_PREFIX", &c.PortPrefix)
	str("CHAOS_IMAGE", &c.Image)
	dur("CHAOS_HEARTBEAT_TIMEOUT", &c.HeartbeatTimeout)
	dur("CHAOS_ELECTION_TIMEOUT", &c.ElectionTimeout)
	dur("CHAOS_LEASE_DURATION", &c.LeaseDuration)
	dur("CHAOS_CRASH_BOUND", &c.CrashBound)
	dur("CHAOS_SILENT_BOUND", &c.SilentBound)
	dur("CHAOS_RESTART_BOUND", &c.RestartBound)
	str("CHAOS_OUT", &c.Out)
	if len(errs) > 0 {
		return c, fmt.Errorf("%w: %w", ErrConfig, errors.Join(errs...))
	}
	if c.Quick {
		c.Runs = 1
	}
	return c, c.Validate()
}

// Validate reports what is wrong with c, wrapping ErrConfig.
func (c Config) Validate() error {
	var errs []error
	if c.Runs < 1 {
		errs = append(errs, fmt.Errorf("runs %d < 1", c.Runs))
	}
	if c.Nodes != 3 && c.Nodes != 5 {
		errs = append(errs, fmt.Errorf("nodes %d: the compose file has 3 or 5", c.Nodes))
	}
	if c.Project == "" || c.Image == "" || c.Out == "" {
		errs = append(errs, errors.New("project, image and out must be set"))
	}
	if len(c.PortPrefix) != 2 {
		errs = append(errs, fmt.Errorf("port prefix %q: want two digits", c.PortPrefix))
	}
	for name, d := range map[string]time.Duration{"heartbeat timeout": c.HeartbeatTimeout,
		"election timeout": c.ElectionTimeout, "lease duration": c.LeaseDuration} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s %s < 0", name, d))
		}
	}
	if c.CrashBound <= 0 || c.SilentBound <= 0 || c.RestartBound <= 0 || c.Poll <= 0 || c.PollTimeout <= 0 {
		errs = append(errs, errors.New("bounds and poll periods must be > 0"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrConfig, errors.Join(errs...))
	}
	return nil
}

// NodeNames returns n1..nN.
func (c Config) NodeNames() []string {
	out := make([]string, c.Nodes)
	for i := range out {
		out[i] = fmt.Sprintf("n%d", i+1)
	}
	return out
}

// OutDir returns Out made absolute against the package directory.
func (c Config) OutDir() string {
	if filepath.IsAbs(c.Out) {
		return c.Out
	}
	wd, err := os.Getwd()
	if err != nil {
		return c.Out
	}
	return filepath.Join(wd, c.Out)
}
