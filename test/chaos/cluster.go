//go:build chaos

package chaos

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// chain is the iptables chain (filter table only) holding the suite's DROP
// rules inside a container's network namespace. INPUT and OUTPUT jump to it;
// healing flushes it. The nat table, which Docker's embedded DNS uses, is
// never touched.
const chain = "HBCHAOS"

// Direction of a network block, seen from the blocked node.
type Direction int

// Directions.
const (
	// Both drops packets from and to the peers.
	Both Direction = iota
	// Inbound drops only packets from the peers: the node stops hearing
	// them. (TCP needs both ways, so connections break either way; what
	// differs is which side's SYNs and datagrams still arrive.)
	Inbound
)

type block struct {
	peers []string
	dir   Direction
}

// Cluster drives the compose cluster from the host: kill, pause, restart,
// disconnect, iptables blocks and tc netem inside a node's namespace. It
// remembers the blocks and netem settings it applied and re-applies them
// when it restarts a node, because a restarted container gets a new network
// namespace (and a new PID, looked up again for every command).
type Cluster struct {
	cfg     Config
	Compose *Compose
	Nodes   []string

	mu     sync.Mutex
	blocks map[string][]block
	netem  map[string][]string
}

// NewCluster wraps a compose project; it starts nothing.
func NewCluster(cfg Config, c *Compose) *Cluster {
	return &Cluster{cfg: cfg, Compose: c, Nodes: cfg.NodeNames(), blocks: map[string][]block{}, netem: map[string][]string{}}
}

// IP returns node nI's address on the private network.
func (c *Cluster) IP(node string) string {
	return fmt.Sprintf("%s.1%s", c.cfg.Subnet, strings.TrimPrefix(node, "n"))
}

// HTTPAddr and ClientAddr are node's published ports on 127.0.0.1.
func (c *Cluster) HTTPAddr(node string) string {
	return fmt.Sprintf("127.0.0.1:%s%s2", c.cfg.PortPrefix, strings.TrimPrefix(node, "n"))
}

// ClientAddr is node's published client gRPC port on 127.0.0.1.
func (c *Cluster) ClientAddr(node string) string {
	return fmt.Sprintf("127.0.0.1:%s%s1", c.cfg.PortPrefix, strings.TrimPrefix(node, "n"))
}

// Up removes anything left from an earlier run of this project and starts
// the cluster.
func (c *Cluster) Up(ctx context.Context) error {
	if _, err := c.Compose.Run(ctx, "down", "-v", "--remove-orphans", "--timeout", "1"); err != nil {
		return err
	}
	_, err := c.Compose.Run(ctx, "up", "-d")
	return err
}

// Down stops and removes the containers, the network and the volumes (the
// iptables rules and qdiscs live in the containers' namespaces and go with
// them).
func (c *Cluster) Down(ctx context.Context) error {
	_, err := c.Compose.Run(ctx, "down", "-v", "--remove-orphans", "--timeout", "1")
	return err
}

// ContainerID finds node's container by its compose labels (this works for
// both Compose tools, whose container names differ).
func (c *Cluster) ContainerID(ctx context.Context, node string) (string, error) {
	id, err := run(ctx, "docker", "ps", "-aq",
		"--filter", "label=com.docker.compose.project="+c.Compose.Project,
		"--filter", "label=com.docker.compose.service="+node)
	if err != nil {
		return "", err
	}
	if id == "" || strings.Contains(id, "\n") {
		return "", fmt.Errorf("chaos: container of %s: found %q", node, id)
	}
	return id, nil
}

func (c *Cluster) ids(ctx context.Context, nodes []string) ([]string, error) {
	var ids []string
	for _, n := range nodes {
		id, err := c.ContainerID(ctx, n)
		if err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, nil
}

func (c *Cluster) docker(ctx context.Context, verb string, nodes []string, extra ...string) error {
	ids, err := c.ids(ctx, nodes)
	if err != nil {
		return err
	}
	_, err = run(ctx, "docker", append(append([]string{verb}, extra...), ids...)...)
	return err
}

// Kill sends SIGKILL to nodes' processes (docker kill -s KILL).
func (c *Cluster) Kill(ctx context.Context, nodes ...string) error {
	return c.docker(ctx, "kill", nodes, "-s", "KILL")
}

// Stop stops nodes gracefully (SIGTERM, then SIGKILL after 15 s).
func (c *Cluster) Stop(ctx context.Context, nodes ...string) error {
	return c.docker(ctx, "stop", nodes, "-t", "15")
}

// Start starts stopped nodes and re-applies their blocks and netem.
func (c *Cluster) Start(ctx context.Context, nodes ...string) error {
	if err := c.docker(ctx, "start", nodes); err != nil {
		return err
	}
	var errs []error
	for _, n := range nodes {
		errs = append(errs, c.reapply(ctx, n))
	}
	return errors.Join(errs...)
}

// Pause freezes nodes (cgroup freezer: nothing closes, nothing answers).
func (c *Cluster) Pause(ctx context.Context, nodes ...string) error {
	return c.docker(ctx, "pause", nodes)
}

// Unpause thaws nodes.
func (c *Cluster) Unpause(ctx context.Context, nodes ...string) error {
	return c.docker(ctx, "unpause", nodes)
}

// network returns the compose network's name.
func (c *Cluster) network(ctx context.Context) (string, error) {
	name, err := run(ctx, "docker", "network", "ls", "--format", "{{.Name}}",
		"--filter", "label=com.docker.compose.project="+c.Compose.Project,
		"--filter", "label=com.docker.compose.network=heartbeat")
	if err != nil {
		return "", err
	}
	if name == "" || strings.Contains(name, "\n") {
		return "", fmt.Errorf("chaos: compose network: found %q", name)
	}
	return name, nil
}

// Disconnect removes node from the compose network (the host loses it too).
func (c *Cluster) Disconnect(ctx context.Context, node string) error {
	netw, err := c.network(ctx)
	if err != nil {
		return err
	}
	id, err := c.ContainerID(ctx, node)
	if err != nil {
		return err
	}
	_, err = run(ctx, "docker", "network", "disconnect", netw, id)
	return err
}

// Connect puts node back on the compose network at its fixed address.
func (c *Cluster) Connect(ctx context.Context, node string) error {
	netw, err := c.network(ctx)
	if err != nil {
		return err
	}
	id, err := c.ContainerID(ctx, node)
	if err != nil {
		return err
	}
	_, err = run(ctx, "docker", "network", "connect", "--ip", c.IP(node), netw, id)
	return err
}

// PID returns the host PID of node's process; it changes on every restart.
func (c *Cluster) PID(ctx context.Context, node string) (int, error) {
	id, err := c.ContainerID(ctx, node)
	if err != nil {
		return 0, err
	}
	out, err := run(ctx, "docker", "inspect", "-f", "{{.State.Pid}}", id)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(out)
	if err != nil || pid == 0 {
		return 0, fmt.Errorf("chaos: %s is not running (pid %q)", node, out)
	}
	return pid, nil
}

// nsenter runs cmd in node's network namespace.
func (c *Cluster) nsenter(ctx context.Context, node string, cmd ...string) error {
	pid, err := c.PID(ctx, node)
	if err != nil {
		return err
	}
	_, err = run(ctx, "nsenter", append([]string{"-t", strconv.Itoa(pid), "-n"}, cmd...)...)
	return err
}

// ensureChain creates the chain and the INPUT/OUTPUT jumps once per namespace.
func (c *Cluster) ensureChain(ctx context.Context, node string) error {
	if c.nsenter(ctx, node, "iptables", "-w", "-t", "filter", "-L", chain, "-n") == nil {
		return nil
	}
	for _, args := range [][]string{
		{"-N", chain}, {"-I", "INPUT", "1", "-j", chain}, {"-I", "OUTPUT", "1", "-j", chain},
	} {
		if err := c.nsenter(ctx, node, append([]string{"iptables", "-w", "-t", "filter"}, args...)...); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) applyBlock(ctx context.Context, node string, b block) error {
	if err := c.ensureChain(ctx, node); err != nil {
		return err
	}
	for _, p := range b.peers {
		ip := c.IP(p)
		rules := [][]string{{"-A", chain, "-s", ip, "-j", "DROP"}}
		if b.dir == Both {
			rules = append(rules, []string{"-A", chain, "-d", ip, "-j", "DROP"})
		}
		for _, r := range rules {
			if err := c.nsenter(ctx, node, append([]string{"iptables", "-w", "-t", "filter"}, r...)...); err != nil {
				return err
			}
		}
	}
	return nil
}

// Block drops node's traffic with peers (stateless DROP in the filter
// table, so established connections die too). dir Inbound drops only what
// node receives from them.
func (c *Cluster) Block(ctx context.Context, node string, peers []string, dir Direction) error {
	b := block{peers: slices.Clone(peers), dir: dir}
	c.mu.Lock()
	c.blocks[node] = append(c.blocks[node], b)
	c.mu.Unlock()
	return c.applyBlock(ctx, node, b)
}

// Partition cuts every node of side a from every node of side b, both ways
// (rules on the a side only suffice for a stateless drop of both directions).
func (c *Cluster) Partition(ctx context.Context, a, b []string) error {
	var errs []error
	for _, n := range a {
		errs = append(errs, c.Block(ctx, n, b, Both))
	}
	return errors.Join(errs...)
}

// Heal flushes the blocks of nodes (all nodes when none are given).
func (c *Cluster) Heal(ctx context.Context, nodes ...string) error {
	if len(nodes) == 0 {
		nodes = c.Nodes
	}
	var errs []error
	for _, n := range nodes {
		c.mu.Lock()
		had := len(c.blocks[n]) > 0
		delete(c.blocks, n)
		c.mu.Unlock()
		if had {
			errs = append(errs, c.nsenter(ctx, n, "iptables", "-w", "-t", "filter", "-F", chain))
		}
	}
	return errors.Join(errs...)
}

// Netem sets a netem qdisc on node's eth0, e.g. "delay 100ms 20ms" or "loss 20%".
func (c *Cluster) Netem(ctx context.Context, node string, args ...string) error {
	c.mu.Lock()
	c.netem[node] = slices.Clone(args)
	c.mu.Unlock()
	return c.nsenter(ctx, node, append([]string{"tc", "qdisc", "replace", "dev", "eth0", "root", "netem"}, args...)...)
}

// ClearNetem removes node's netem qdisc.
func (c *Cluster) ClearNetem(ctx context.Context, node string) error {
	c.mu.Lock()
	_, had := c.netem[node]
	delete(c.netem, node)
	c.mu.Unlock()
	if !had {
		return nil
	}
	return c.nsenter(ctx, node, "tc", "qdisc", "del", "dev", "eth0", "root")
}

// reapply puts node's blocks and netem back after a restart.
func (c *Cluster) reapply(ctx context.Context, node string) error {
	c.mu.Lock()
	bs := slices.Clone(c.blocks[node])
	nm := c.netem[node]
	c.mu.Unlock()
	var errs []error
	for _, b := range bs {
		errs = append(errs, c.applyBlock(ctx, node, b))
	}
	if nm != nil {
		errs = append(errs, c.nsenter(ctx, node, append([]string{"tc", "qdisc", "replace", "dev", "eth0", "root", "netem"}, nm...)...))
	}
	return errors.Join(errs...)
}

// Logs returns `docker logs` of node (stdout and stderr, with timestamps).
func (c *Cluster) Logs(ctx context.Context, node string) (string, error) {
	id, err := c.ContainerID(ctx, node)
	if err != nil {
		return "", err
	}
	out, err := runCombined(ctx, "docker", "logs", "--timestamps", id)
	return out, err
}

// Running reports whether node's container runs (and is not paused).
func (c *Cluster) Running(ctx context.Context, node string) bool {
	id, err := c.ContainerID(ctx, node)
	if err != nil {
		return false
	}
	out, err := run(ctx, "docker", "inspect", "-f", "{{.State.Status}}", id)
	return err == nil && out == "running"
}
