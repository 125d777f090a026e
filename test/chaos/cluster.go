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
// every change rewrites it whole, in one nsenter call. The nat table, which
// Docker's embedded DNS uses, is never touched.
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

// netState is what the suite has done to one node's network, re-applied
// after a restart (a restarted container gets a fresh namespace).
type netState struct {
	blocks    []block
	loss      float64  // iptables statistic loss to/from peers, 0 = none
	lossPeers []string // peers the loss applies to
	netem     []string // tc netem arguments, nil = none
}

func (n netState) empty() bool { return len(n.blocks) == 0 && n.loss == 0 && n.netem == nil }

// Cluster drives the compose cluster from the host: kill, pause, restart,
// disconnect, iptables blocks and loss, and tc netem inside a node's
// namespace. Container ids are looked up once (they survive restarts); the
// PID is looked up again after every start. Methods are safe for concurrent
// use.
type Cluster struct {
	cfg     Config
	Compose *Compose
	Nodes   []string

	mu   sync.Mutex
	net  map[string]netState
	ids  map[string]string
	pids map[string]int
}

// NewCluster wraps a compose project; it starts nothing.
func NewCluster(cfg Config, c *Compose) *Cluster {
	return &Cluster{cfg: cfg, Compose: c, Nodes: cfg.NodeNames(), net: map[string]netState{},
		ids: map[string]string{}, pids: map[string]int{}}
}

// IP returns node nI's address on the private network.
func (c *Cluster) IP(node string) string {
	return fmt.Sprintf("%s.1%s", c.cfg.Subnet, strings.TrimPrefix(node, "n"))
}

// HTTPAddr and ClientAddr are node's HTTP and client gRPC addresses on the
// private network, which the host reaches through the bridge. The recorder
// uses these rather than the published 127.0.0.1 ports: docker-proxy would
// sit in the path, cost CPU on every poll, and accept connections for a
// node that is gone.
func (c *Cluster) HTTPAddr(node string) string { return c.IP(node) + ":7402" }

// ClientAddr is node's client gRPC address on the private network.
func (c *Cluster) ClientAddr(node string) string { return c.IP(node) + ":7401" }

// PublishedHTTPAddr is node's HTTP port published on 127.0.0.1 (n1 -> PP12).
func (c *Cluster) PublishedHTTPAddr(node string) string {
	return fmt.Sprintf("127.0.0.1:%s%s2", c.cfg.PortPrefix, strings.TrimPrefix(node, "n"))
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
// both Compose tools, whose container names differ) and caches it.
func (c *Cluster) ContainerID(ctx context.Context, node string) (string, error) {
	c.mu.Lock()
	id, ok := c.ids[node]
	c.mu.Unlock()
	if ok {
		return id, nil
	}
	id, err := run(ctx, "docker", "ps", "-aq",
		"--filter", "label=com.docker.compose.project="+c.Compose.Project,
		"--filter", "label=com.docker.compose.service="+node)
	if err != nil {
		return "", err
	}
	if id == "" || strings.Contains(id, "\n") {
		return "", fmt.Errorf("chaos: container of %s: found %q", node, id)
	}
	c.mu.Lock()
	c.ids[node] = id
	c.mu.Unlock()
	return id, nil
}

func (c *Cluster) containerIDs(ctx context.Context, nodes []string) ([]string, error) {
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
	ids, err := c.containerIDs(ctx, nodes)
	if err != nil {
		return err
	}
	c.forgetPIDs(nodes)
	_, err = run(ctx, "docker", append(append([]string{verb}, extra...), ids...)...)
	return err
}

func (c *Cluster) forgetPIDs(nodes []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range nodes {
		delete(c.pids, n)
	}
}

// Kill sends SIGKILL to nodes' processes (docker kill -s KILL).
func (c *Cluster) Kill(ctx context.Context, nodes ...string) error {
	return c.docker(ctx, "kill", nodes, "-s", "KILL")
}

// Stop stops nodes gracefully (SIGTERM, then SIGKILL after 15 s).
func (c *Cluster) Stop(ctx context.Context, nodes ...string) error {
	return c.docker(ctx, "stop", nodes, "-t", "15")
}

// Start starts stopped nodes, all at once (docker start of several ids is
// sequential and slow here), then re-applies their network faults.
func (c *Cluster) Start(ctx context.Context, nodes ...string) error {
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[i] = c.docker(ctx, "start", []string{n}); errs[i] != nil {
				return
			}
			c.mu.Lock()
			_, faulty := c.net[n]
			c.mu.Unlock()
			if faulty {
				errs[i] = c.applyNet(ctx, n)
			}
		}()
	}
	wg.Wait()
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
	c.mu.Lock()
	pid, ok := c.pids[node]
	c.mu.Unlock()
	if ok {
		return pid, nil
	}
	id, err := c.ContainerID(ctx, node)
	if err != nil {
		return 0, err
	}
	out, err := run(ctx, "docker", "inspect", "-f", "{{.State.Pid}}", id)
	if err != nil {
		return 0, err
	}
	pid, err = strconv.Atoi(out)
	if err != nil || pid == 0 {
		return 0, fmt.Errorf("chaos: %s is not running (pid %q)", node, out)
	}
	c.mu.Lock()
	c.pids[node] = pid
	c.mu.Unlock()
	return pid, nil
}

// applyNet rewrites node's chain and qdisc from its netState, in one
// nsenter call for the rules.
func (c *Cluster) applyNet(ctx context.Context, node string) error {
	c.mu.Lock()
	st := c.net[node]
	c.mu.Unlock()
	pid, err := c.PID(ctx, node)
	if err != nil {
		return err
	}
	ipt := "iptables -w -t filter "
	script := []string{
		ipt + "-N " + chain + " 2>/dev/null || true",
		ipt + "-C INPUT -j " + chain + " 2>/dev/null || " + ipt + "-I INPUT 1 -j " + chain,
		ipt + "-C OUTPUT -j " + chain + " 2>/dev/null || " + ipt + "-I OUTPUT 1 -j " + chain,
		ipt + "-F " + chain,
	}
	for _, b := range st.blocks {
		for _, p := range b.peers {
			script = append(script, ipt+"-A "+chain+" -s "+c.IP(p)+" -j DROP")
			if b.dir == Both {
				script = append(script, ipt+"-A "+chain+" -d "+c.IP(p)+" -j DROP")
			}
		}
	}
	if st.loss > 0 {
		prob := strconv.FormatFloat(st.loss, 'f', 3, 64)
		for _, p := range st.lossPeers {
			for _, dir := range []string{"-s", "-d"} {
				script = append(script, ipt+"-A "+chain+" "+dir+" "+c.IP(p)+" -m statistic --mode random --probability "+prob+" -j DROP")
			}
		}
	}
	if st.netem != nil {
		script = append(script, "tc qdisc replace dev eth0 root netem "+strings.Join(st.netem, " "))
	} else {
		script = append(script, "tc qdisc del dev eth0 root 2>/dev/null || true")
	}
	_, err = run(ctx, "nsenter", "-t", strconv.Itoa(pid), "-n", "sh", "-ec", strings.Join(script, "\n"))
	return err
}

func (c *Cluster) update(ctx context.Context, node string, fn func(*netState)) error {
	c.mu.Lock()
	st := c.net[node]
	fn(&st)
	if st.empty() {
		delete(c.net, node)
	} else {
		c.net[node] = st
	}
	c.mu.Unlock()
	return c.applyNet(ctx, node)
}

// Block drops node's traffic with peers (stateless DROP in the filter
// table, so established connections die too). dir Inbound drops only what
// node receives from them.
func (c *Cluster) Block(ctx context.Context, node string, peers []string, dir Direction) error {
	return c.update(ctx, node, func(st *netState) { st.blocks = append(st.blocks, block{slices.Clone(peers), dir}) })
}

// Partition cuts every node of side a from every node of side b, both ways
// (rules on the a side suffice for a stateless drop of both directions).
func (c *Cluster) Partition(ctx context.Context, a, b []string) error {
	errs := make([]error, len(a))
	var wg sync.WaitGroup
	for i, n := range a {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.Block(ctx, n, b, Both)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Heal removes the blocks of nodes (all nodes when none are given).
func (c *Cluster) Heal(ctx context.Context, nodes ...string) error {
	if len(nodes) == 0 {
		nodes = c.Nodes
	}
	var errs []error
	for _, n := range nodes {
		c.mu.Lock()
		had := len(c.net[n].blocks) > 0
		c.mu.Unlock()
		if had {
			errs = append(errs, c.update(ctx, n, func(st *netState) { st.blocks = nil }))
		}
	}
	return errors.Join(errs...)
}

// Loss drops each packet between node and peers with probability p
// (iptables statistic match; the fallback where netem is missing).
func (c *Cluster) Loss(ctx context.Context, node string, peers []string, p float64) error {
	return c.update(ctx, node, func(st *netState) { st.loss, st.lossPeers = p, slices.Clone(peers) })
}

// ClearLoss removes node's loss rules.
func (c *Cluster) ClearLoss(ctx context.Context, node string) error {
	return c.update(ctx, node, func(st *netState) { st.loss, st.lossPeers = 0, nil })
}

// Netem sets a netem qdisc on node's eth0, e.g. "delay 100ms 20ms" or
// "loss 20%". It fails on kernels without sch_netem (see NetemSupported).
func (c *Cluster) Netem(ctx context.Context, node string, args ...string) error {
	return c.update(ctx, node, func(st *netState) { st.netem = slices.Clone(args) })
}

// ClearNetem removes node's netem qdisc.
func (c *Cluster) ClearNetem(ctx context.Context, node string) error {
	c.mu.Lock()
	had := c.net[node].netem != nil
	c.mu.Unlock()
	if !had {
		return nil
	}
	return c.update(ctx, node, func(st *netState) { st.netem = nil })
}

// NetemSupported reports whether the kernel has sch_netem, by trying a
// qdisc on the loopback of node's namespace (and removing it).
func (c *Cluster) NetemSupported(ctx context.Context, node string) bool {
	pid, err := c.PID(ctx, node)
	if err != nil {
		return false
	}
	p := strconv.Itoa(pid)
	if _, err := run(ctx, "nsenter", "-t", p, "-n", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"); err != nil {
		return false
	}
	_, _ = run(ctx, "nsenter", "-t", p, "-n", "tc", "qdisc", "del", "dev", "lo", "root")
	return true
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
