package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
	"github.com/heartbeat-sidecar/heartbeat/node"
)

// cliWait bounds every wait of the in-process CLI tests (shared machine,
// -race).
const cliWait = 20 * time.Second

// startCLICluster starts voters n1..n<voters> and waits for a leader and
// for every node's membership record.
func startCLICluster(t *testing.T, voters int) *testcluster.Cluster {
	t.Helper()
	return testcluster.Start(t, voters, testcluster.Options{Wait: cliWait})
}

// covered records the commands that exited 0 through the helpers below, for
// TestCLICommands' check that it ran every subcommand.
var covered = struct {
	sync.Mutex
	m map[string]bool
}{m: map[string]bool{}}

// runCLI runs one command line in process with the environment given and
// records a success in covered.
func runCLI(ctx context.Context, environ map[string]string, stdout, stderr interface{ Write([]byte) (int, error) }, args ...string) int {
	code := run(ctx, args, stdout, stderr, mapEnv(environ))
	if code == exitOK && len(args) > 0 {
		covered.Lock()
		covered.m[args[0]] = true
		covered.Unlock()
	}
	return code
}

// cli runs one command line in process with an empty environment.
func cli(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = runCLI(context.Background(), nil, &out, &errOut, args...)
	return code, out.String(), errOut.String()
}

// cliOK runs a command line that must exit 0 and returns its output.
func cliOK(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := cli(args...)
	if code != exitOK {
		t.Fatalf("heartbeat %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// cliJSON runs a command line that must exit 0 and decodes its output.
func cliJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out := cliOK(t, args...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("heartbeat %s: output is not the JSON wanted (%v):\n%s", strings.Join(args, " "), err, out)
	}
}

// hasKeys fails the test unless the JSON object m has every key.
func hasKeys(t *testing.T, what string, m map[string]any, keys ...string) {
	t.Helper()
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			t.Errorf("%s: no key %q in %v", what, k, m)
		}
	}
}

// TestCLICommands runs every subcommand of the CLI against a live
// in-process cluster of three (run included: it starts a fourth node that
// joins, then leaves) and checks its output: tables or text by default, JSON
// with --json, runtime failures with exit 1. It fails when a subcommand was
// never run successfully, so a new one needs a case here.
func TestCLICommands(t *testing.T) {
	covered.Lock()
	clear(covered.m)
	covered.Unlock()
	c := startCLICluster(t, 3)
	leader := c.Leader()
	f := c.Followers()[0]
	addr := f.ClientAddr()

	t.Run("status", func(t *testing.T) {
		out := cliOK(t, "status", "--addr", addr)
		if !strings.Contains(out, "ID             "+f.ID()) || !strings.Contains(out, "LEADER         "+leader.ID()+" (") {
			t.Errorf("status table:\n%s", out)
		}
		var s statusView
		cliJSON(t, &s, "status", "--addr", addr, "--json")
		if s.NodeID != f.ID() || s.Leader.NodeID != leader.ID() || s.Term == 0 || s.FencingToken == 0 || !s.Voter || s.IsLeader ||
			s.Read == nil || !s.Read.Consistent {
			t.Errorf("status --json: %+v", s)
		}
		var m map[string]any
		cliJSON(t, &m, "status", "--addr", addr, "--json", "--stale")
		hasKeys(t, "status --json", m, "node_id", "cluster_id", "state", "term", "leader", "fencing_token", "is_leader", "lease_until",
			"commit_index", "applied_index", "voter", "read")
	})

	t.Run("HEARTBEAT_ADDR", func(t *testing.T) {
		// The environment names the node asked; --addr wins over it.
		var out bytes.Buffer
		if code := runCLI(context.Background(), map[string]string{"HEARTBEAT_ADDR": leader.ClientAddr()}, &out, &bytes.Buffer{}, "status", "--stale"); code != exitOK ||
			!strings.Contains(out.String(), "ID             "+leader.ID()+"\n") {
			t.Errorf("status with HEARTBEAT_ADDR=%s: exit %d\n%s", leader.ClientAddr(), code, out.String())
		}
		out.Reset()
		if code := runCLI(context.Background(), map[string]string{"HEARTBEAT_ADDR": leader.ClientAddr()}, &out, &bytes.Buffer{}, "status", "--stale", "--addr", addr); code != exitOK ||
			!strings.Contains(out.String(), "ID             "+f.ID()+"\n") {
			t.Errorf("status --addr %s with HEARTBEAT_ADDR set: exit %d\n%s", addr, code, out.String())
		}
	})

	t.Run("members", func(t *testing.T) {
		out := cliOK(t, "members", "--addr", addr)
		lines := tableLines(out)
		if len(lines) != 4 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[0], "PRIORITY") {
			t.Fatalf("members table:\n%s", out)
		}
		for _, l := range lines[1:] {
			fs := strings.Fields(l)
			if fs[1] != "alive" || fs[2] != "voter" || (fs[0] == leader.ID()) != (fs[3] == "*") || fs[4] != "healthy" || fs[7] != "0" {
				t.Errorf("members line %q", l)
			}
		}
		var ms []map[string]any
		cliJSON(t, &ms, "members", "--addr", addr, "--json")
		if len(ms) != 3 {
			t.Fatalf("members --json: %v", ms)
		}
		for _, m := range ms {
			hasKeys(t, "members --json", m, "node_id", "state", "suffrage", "raft_leader", "voter", "app_healthy", "draining", "owned",
				"leader_priority", "address", "client_address", "http_address", "last_contact")
		}
	})

	t.Run("leader", func(t *testing.T) {
		out := cliOK(t, "leader", "--addr", addr)
		if !strings.HasPrefix(out, "leader="+leader.ID()+" address="+leader.PeerAddr()+" client="+leader.ClientAddr()) ||
			!strings.Contains(out, "fencing_token=") || !strings.Contains(out, "\nread: consistent at revision ") {
			t.Errorf("leader: %q", out)
		}
		var li leaderView
		cliJSON(t, &li, "leader", "--addr", addr, "--json")
		if li.Leader.NodeID != leader.ID() || li.Leader.ClientAddress != leader.ClientAddr() || li.Leader.HTTPAddress != leader.HTTPAddr() ||
			li.FencingToken == 0 || li.IsSelf || li.Endpoint != addr || li.Read == nil {
			t.Errorf("leader --json: %+v", li)
		}
		cliJSON(t, &li, "leader", "--addr", leader.ClientAddr(), "--json", "--stale")
		if !li.IsSelf || li.LeaseUntil == nil || li.Read == nil || li.Read.Consistent {
			t.Errorf("leader --json --stale on the leader: %+v", li)
		}
	})

	t.Run("leader --watch", func(t *testing.T) {
		testLeaderWatch(t, leader, addr)
	})

	t.Run("health and version", func(t *testing.T) {
		if out := cliOK(t, "health", "--addr", addr); strings.TrimSpace(out) != "SERVING" {
			t.Errorf("health: %q", out)
		}
		var h struct {
			Status  string `json:"status"`
			Serving bool   `json:"serving"`
		}
		cliJSON(t, &h, "health", "--addr", addr, "--json")
		if h.Status != "SERVING" || !h.Serving {
			t.Errorf("health --json: %+v", h)
		}
		if out := cliOK(t, "version"); !strings.HasPrefix(out, "heartbeat ") || !strings.Contains(out, "hashicorp/raft") {
			t.Errorf("version: %q", out)
		}
	})

	t.Run("resources and assignments", func(t *testing.T) {
		testResources(t, addr)
	})

	t.Run("app-heartbeat", func(t *testing.T) {
		out := cliOK(t, "app-heartbeat", "--ttl", "1m", "--addr", addr)
		if !strings.HasPrefix(out, "app_healthy=true draining=false state=alive") {
			t.Errorf("app-heartbeat: %q", out)
		}
		var h map[string]any
		cliJSON(t, &h, "app-heartbeat", "--addr", addr, "--json")
		if h["app_healthy"] != true || h["state"] != "alive" || h["ttl_ms"] != 10000.0 {
			t.Errorf("app-heartbeat --json: %v", h)
		}
	})

	t.Run("priority and members --watch", func(t *testing.T) {
		testPriorityWatch(t, c)
	})

	t.Run("transfer and step-down", func(t *testing.T) {
		l := c.Leader()
		target := c.Followers()[0]
		out := cliOK(t, "transfer", "--node-id", target.ID(), "--addr", addr)
		if want := fmt.Sprintf("leader %s -> %s (term ", l.ID(), target.ID()); !strings.HasPrefix(out, want) {
			t.Errorf("transfer: %q, want %q...", out, want)
		}
		if got := c.Leader(); got.ID() != target.ID() {
			t.Fatalf("leader after transfer: %s, want %s", got.ID(), target.ID())
		}
		// A no-op to the leader itself, with the shorthand after the flags.
		var ch changeView
		cliJSON(t, &ch, "transfer", "--addr", addr, "--json", target.ID())
		if ch.Previous != target.ID() || ch.Leader.NodeID != target.ID() || ch.FencingToken == 0 {
			t.Errorf("transfer --json to the leader: %+v", ch)
		}
		cliJSON(t, &ch, "step-down", "--addr", addr, "--json")
		if ch.Previous != target.ID() || ch.Leader.NodeID == target.ID() {
			t.Errorf("step-down --json: %+v", ch)
		}
		l = c.Leader()
		if l.ID() == target.ID() {
			t.Fatalf("%s still leads after step-down", l.ID())
		}
		out = cliOK(t, "step-down", "--addr", addr)
		if !strings.HasPrefix(out, "leader "+l.ID()+" -> ") {
			t.Errorf("step-down: %q", out)
		}
		if c.Leader().ID() == l.ID() {
			t.Errorf("%s still leads after step-down", l.ID())
		}
	})

	t.Run("join, run, leave, remove", func(t *testing.T) {
		testJoinRunLeaveRemove(t, c, addr)
	})

	t.Run("runtime failures", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"transfer", "--node-id", "nobody", "--addr", addr}, "NotFound"},
			{[]string{"priority", "--node-id", "nobody", "5", "--addr", addr}, "NotFound"},
			{[]string{"drain", "--node-id", "nobody", "--addr", addr}, "NotFound"},
			{[]string{"remove", "--node-id", "nobody", "--addr", addr}, "NotFound"},
			{[]string{"assignments", "--node-id", "nobody", "--addr", addr}, "NotFound"},
			{[]string{"join", "--node-id", "n1", "--peer-addr", "127.0.0.1:1", "--addr", addr}, "AlreadyExists"},
			{[]string{"resources", "delete", "never-registered", "--addr", addr}, "NotFound"},
		} {
			code, _, errOut := cli(tc.args...)
			if code != exitFailure || !strings.Contains(errOut, tc.want) {
				t.Errorf("heartbeat %s: exit %d %q, want 1 and %s", strings.Join(tc.args, " "), code, errOut, tc.want)
			}
		}
	})

	t.Run("snapshot, recover", func(t *testing.T) {
		// The whole of them is TestSnapshotSaveRestore and
		// TestRecoverTwoOfFive; here they only count as run: a backup,
		// restored into a new dir, which recover then rewrites.
		dir := t.TempDir()
		file := filepath.Join(dir, "backup.hb")
		cliOK(t, "snapshot", "save", file, "--addr", addr)
		cliOK(t, "snapshot", "inspect", file)
		cliOK(t, "snapshot", "restore", file, "--data-dir", filepath.Join(dir, "m1"), "--node-id", "m1", "--peer-addr", "127.0.0.1:7410")
		cliOK(t, "recover", "--data-dir", filepath.Join(dir, "m1"), "--voters", "m1=127.0.0.1:7410")
	})

	t.Run("tls", func(t *testing.T) {
		// The whole of tls is TestCLITLS; here it only counts as run.
		dir := filepath.Join(t.TempDir(), "tls")
		cliOK(t, "tls", "init", "--out", dir, "--nodes", "n1")
		cliOK(t, "tls", "inspect", filepath.Join(dir, "n1.pem"))
	})

	covered.Lock()
	defer covered.Unlock()
	for _, cmd := range commands {
		if !covered.m[cmd.name] {
			t.Errorf("TestCLICommands never ran 'heartbeat %s' successfully: add a case for it", cmd.name)
		}
	}
}

// testResources: put, list, assignments (and --watch), drain, undrain,
// delete through a follower.
func testResources(t *testing.T, addr string) {
	if out := cliOK(t, "resources", "put", "db-1", "--weight", "3", "--label", "zone=a", "--addr", addr); !strings.HasPrefix(out, "registered db-1 (revision ") {
		t.Errorf("resources put: %q", out)
	}
	var rs []resourceView
	testwait.Eventually(t, cliWait, "db-1 owned", func() (bool, string) {
		cliJSON(t, &rs, "resources", "list", "--addr", addr, "--json")
		return len(rs) == 1 && rs[0].Owner != "" && rs[0].Epoch > 0, fmt.Sprintf("%+v", rs)
	})
	if rs[0].ID != "db-1" || rs[0].Weight != 3 || rs[0].Labels["zone"] != "a" {
		t.Errorf("resources list --json: %+v", rs)
	}
	owner := rs[0].Owner
	if out := cliOK(t, "resources", "list", "--addr", addr); !strings.Contains(out, "OWNER") || !strings.Contains(out, "db-1") ||
		!strings.Contains(out, owner) {
		t.Errorf("resources list:\n%s", out)
	}
	var mine []resourceView
	cliJSON(t, &mine, "assignments", "--node-id", owner, "--addr", addr, "--json")
	if len(mine) != 1 || mine[0].ID != "db-1" || mine[0].Owner != owner {
		t.Errorf("assignments --node-id %s --json: %+v", owner, mine)
	}
	if out := cliOK(t, "assignments", "--node-id", owner, "--addr", addr); !strings.Contains(out, "db-1") {
		t.Errorf("assignments:\n%s", out)
	}

	// assignments --watch on the owner: the listing, then db-1 moving away
	// when the owner drains.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var watchOut testcluster.SyncBuffer
	done := make(chan int, 1)
	go func() {
		done <- runCLI(ctx, nil, &watchOut, &bytes.Buffer{}, "assignments", "--watch", "--json", "--node-id", owner, "--addr", addr)
	}()
	testwait.Eventually(t, cliWait, "the first listing of assignments --watch", func() (bool, string) {
		return strings.Contains(watchOut.String(), `"kind":"resync"`), watchOut.String()
	})
	var res map[string]any
	cliJSON(t, &res, "drain", "--node-id", owner, "--addr", addr, "--json")
	if res["node_id"] != owner || res["draining"] != true || res["revision"] == 0.0 {
		t.Errorf("drain --json: %v", res)
	}
	testwait.Eventually(t, cliWait, "assignments --watch to show db-1 moving off "+owner, func() (bool, string) {
		for _, line := range strings.Split(strings.TrimSpace(watchOut.String()), "\n") {
			var ev assignmentEventView
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Fatalf("assignments --watch --json line %q: %v", line, err)
			}
			if ev.Kind == "assigned" && ev.ResourceID == "db-1" && ev.PrevOwner == owner && ev.Owner != owner && ev.Revision > 0 {
				return true, ""
			}
		}
		return false, watchOut.String()
	})
	cancel()
	if code := <-done; code != exitOK {
		t.Errorf("assignments --watch after an interrupt: exit %d", code)
	}
	if out := cliOK(t, "undrain", "--node-id", owner, "--addr", addr); !strings.HasPrefix(out, "undrained "+owner+" (revision ") {
		t.Errorf("undrain: %q", out)
	}
	if out := cliOK(t, "resources", "delete", "db-1", "--addr", addr); !strings.HasPrefix(out, "deleted db-1 (revision ") {
		t.Errorf("resources delete: %q", out)
	}
}

// testLeaderWatch: leader --watch on the leader shows its lease on every
// line, renewals at most once a second (--json: every renewal, one object
// per line); on a follower (at followerAddr) no lease. All end cleanly when
// interrupted.
func testLeaderWatch(t *testing.T, leader *node.Node, followerAddr string) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var table, lines, follower testcluster.SyncBuffer
	var wg sync.WaitGroup
	runs := []struct {
		args []string
		out  *testcluster.SyncBuffer
	}{
		{[]string{"leader", "--watch", "--addr", leader.ClientAddr()}, &table},
		{[]string{"leader", "--watch", "--json", "--addr", leader.ClientAddr()}, &lines},
		{[]string{"leader", "--watch", "--addr", followerAddr}, &follower},
	}
	codes := make([]int, len(runs))
	began := time.Now()
	for i, r := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = runCLI(ctx, nil, r.out, &bytes.Buffer{}, r.args...)
		}()
	}
	leaseMs := max(leader.Election().LeaseDuration(), leader.Election().OwnershipLeaseDuration()).Milliseconds()
	// 20 renewals with a lease left: a second at least.
	testwait.Eventually(t, cliWait, "20 renewals on leader --watch --json", func() (bool, string) {
		renewals := 0
		for _, line := range strings.Split(strings.TrimSpace(lines.String()), "\n") {
			var li leaderView
			if err := json.Unmarshal([]byte(line), &li); err != nil {
				return false, fmt.Sprintf("line %q: %v", line, err)
			}
			if !li.IsSelf || li.Leader.NodeID != leader.ID() || li.LeaseRemainingMs < 0 || li.LeaseRemainingMs > leaseMs ||
				li.Endpoint != leader.ClientAddr() || li.Observed == nil {
				t.Fatalf("leader --watch --json on the leader: %q", line)
			}
			if li.LeaseRemainingMs > 0 {
				renewals++
			}
		}
		return renewals >= 20, lines.String()
	})
	textLines := strings.Split(strings.TrimSpace(table.String()), "\n")
	elapsed := time.Since(began)
	cancel()
	wg.Wait()
	for i, code := range codes {
		if code != exitOK {
			t.Errorf("heartbeat %s after an interrupt: exit %d", strings.Join(runs[i].args, " "), code)
		}
	}
	for _, l := range textLines {
		var ms int64
		i := strings.Index(l, " is_self=true lease_remaining=")
		if i < 0 || !strings.Contains(l, "leader="+leader.ID()+" ") {
			t.Errorf("leader --watch on the leader: line %q without its lease", l)
			continue
		}
		if _, err := fmt.Sscanf(l[i:], " is_self=true lease_remaining=%dms", &ms); err != nil || ms < 0 || ms > leaseMs {
			t.Errorf("leader --watch on the leader: line %q: lease %d ms, %v", l, ms, err)
		}
	}
	// The first line, then a renewal at most every second.
	if most := 2 + int(elapsed/renewalLineEvery); len(textLines) == 0 || len(textLines) > most {
		t.Errorf("leader --watch printed %d lines in %v, want 1..%d:\n%s", len(textLines), elapsed, most, table.String())
	}
	if out := follower.String(); !strings.Contains(out, "leader="+leader.ID()+" ") || strings.Contains(out, "lease_remaining") {
		t.Errorf("leader --watch on a follower:\n%s", out)
	}
}

// testPriorityWatch: members --watch prints the list, then again after a
// priority change (set with priority, on the leader so that leadership
// stays), and ends cleanly when interrupted; --json prints one object per
// line.
func testPriorityWatch(t *testing.T, c *testcluster.Cluster) {
	l := c.Leader()
	addr := l.ClientAddr()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var table, lines testcluster.SyncBuffer
	var wg sync.WaitGroup
	codes := make([]int, 2)
	for i, args := range [][]string{{"members", "--watch", "--addr", addr}, {"members", "--watch", "--json", "--addr", addr}} {
		out := &table
		if i == 1 {
			out = &lines
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = runCLI(ctx, nil, out, &bytes.Buffer{}, args...)
		}()
	}
	testwait.Eventually(t, cliWait, "the first lists", func() (bool, string) {
		return strings.Contains(table.String(), "PRIORITY") && strings.Count(lines.String(), "\n") >= 1, table.String() + lines.String()
	})

	out := cliOK(t, "priority", "--node-id", l.ID(), "--priority", "40", "--addr", addr)
	if !strings.HasPrefix(out, "set the leader priority of "+l.ID()+" to 40 (revision ") {
		t.Errorf("priority: %q", out)
	}
	prioOf := func(ms []memberView, id string) uint32 {
		for _, m := range ms {
			if m.NodeID == id {
				return m.LeaderPriority
			}
		}
		return 1000
	}
	testwait.Eventually(t, cliWait, "the watches to show priority 40", func() (bool, string) {
		var tableOK bool
		for _, line := range strings.Split(table.String(), "\n") {
			if fs := strings.Fields(line); len(fs) > 7 && fs[0] == l.ID() && fs[7] == "40" {
				tableOK = true
			}
		}
		var jsonOK bool
		for _, line := range strings.Split(strings.TrimSpace(lines.String()), "\n") {
			var ev membersEventView
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				return false, fmt.Sprintf("members --watch --json line %q: %v", line, err)
			}
			jsonOK = jsonOK || (ev.Revision > 0 && ev.Endpoint == addr && prioOf(ev.Members, l.ID()) == 40)
		}
		return tableOK && jsonOK, table.String() + lines.String()
	})
	cancel()
	wg.Wait()
	if codes[0] != exitOK || codes[1] != exitOK {
		t.Errorf("members --watch after an interrupt: exit %v", codes)
	}

	var ms []memberView
	cliJSON(t, &ms, "members", "--addr", addr, "--json")
	if p := prioOf(ms, l.ID()); p != 40 {
		t.Errorf("members --json: priority of %s %d, want 40", l.ID(), p)
	}
	var res struct {
		NodeID   string `json:"node_id"`
		Priority uint32 `json:"priority"`
		Revision uint64 `json:"revision"`
	}
	cliJSON(t, &res, "priority", "0", "--addr", addr, "--json") // default: the node at --addr
	if res.NodeID != l.ID() || res.Priority != 0 || res.Revision == 0 {
		t.Errorf("priority --json: %+v", res)
	}
	cliJSON(t, &ms, "members", "--addr", addr, "--json")
	if p := prioOf(ms, l.ID()); p != 0 {
		t.Errorf("priority of %s after priority 0: %d", l.ID(), p)
	}
}

// testJoinRunLeaveRemove: join adds n4 (non-voter), which 'run' then
// starts in process and which leaves through its own client port ('run'
// returns); n5 is added and never started, then removed with --node-id, n6
// with the positional shorthand.
func testJoinRunLeaveRemove(t *testing.T, c *testcluster.Cluster, addr string) {
	peers := testcluster.FreeAddrs(t, 3)
	out := cliOK(t, "join", "--node-id", "n4", "--peer-addr", peers[0], "--nonvoter", "--addr", addr)
	if !strings.HasPrefix(out, "added n4 at "+peers[0]+" as a non-voter (revision ") {
		t.Errorf("join: %q", out)
	}
	// A repeat is a no-op once the node asked has applied the first.
	testwait.Eventually(t, cliWait, "n4 in the configuration of the node asked", func() (bool, string) {
		return hasSuffrage(t, addr, "n4", "nonvoter"), "not yet"
	})
	var jr struct {
		NodeID   string  `json:"node_id"`
		NonVoter bool    `json:"nonvoter"`
		Revision *uint64 `json:"revision"`
	}
	cliJSON(t, &jr, "join", "--node-id", "n4", "--peer-addr", peers[0], "--nonvoter", "--addr", addr, "--json")
	if jr.NodeID != "n4" || !jr.NonVoter || jr.Revision == nil || *jr.Revision != 0 {
		t.Errorf("repeated join --json: %+v, want revision 0", jr)
	}

	// run starts n4, which joins through n1's peer port.
	own := testcluster.FreeAddrs(t, 2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runLog := testcluster.NewWriter(t)
	done := make(chan int, 1)
	go func() {
		done <- runCLI(ctx, nil, runLog, runLog, "run", "--node-id", "n4", "--nonvoter", "--data-dir", filepath.Join(t.TempDir(), "n4"),
			"--peer-addr", peers[0], "--client-addr", own[0], "--http-addr", own[1], "--join", c.Peers()[0].Address,
			"--heartbeat-timeout", "1500ms", "--log-level", "warn")
	}()
	testwait.Eventually(t, cliWait, "n4 ready, and a non-voter alive in its own configuration", func() (bool, string) {
		code, out, errOut := cli("health", "--addr", own[0], "--timeout", "1s")
		if code != exitOK {
			return false, out + errOut
		}
		var ms []memberView
		cliJSON(t, &ms, "members", "--addr", own[0], "--json", "--stale")
		for _, m := range ms {
			if m.NodeID == "n4" {
				return m.Suffrage == "nonvoter" && m.State == "alive", fmt.Sprintf("%+v", m)
			}
		}
		return false, "n4 not listed by itself"
	})
	var st statusView
	cliJSON(t, &st, "status", "--addr", own[0], "--json", "--stale")
	if st.NodeID != "n4" || st.Voter {
		t.Errorf("status of the node run started: %+v, want n4, a non-voter", st)
	}

	var lr struct {
		NodeID string `json:"node_id"`
		Moved  *int   `json:"moved"`
	}
	cliJSON(t, &lr, "leave", "--addr", own[0], "--json")
	if lr.NodeID != "n4" || lr.Moved == nil {
		t.Errorf("leave --json: %+v", lr)
	}
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("run after leave: exit %d", code)
		}
	case <-time.After(cliWait):
		t.Fatal("run did not return after leave")
	}
	var ms []memberView
	testwait.Eventually(t, cliWait, "n4 recorded as left", func() (bool, string) {
		cliJSON(t, &ms, "members", "--addr", addr, "--json")
		for _, m := range ms {
			if m.NodeID == "n4" {
				return m.State == "left" && m.Suffrage == "", fmt.Sprintf("%+v", m)
			}
		}
		return false, "n4 not listed"
	})

	// The node asked decides on its own copy of the configuration: wait
	// until it has applied each join before the remove.
	for _, id := range []string{"n5", "n6"} {
		peer := peers[1]
		if id == "n6" {
			peer = peers[2]
		}
		cliOK(t, "join", "--node-id", id, "--peer-addr", peer, "--nonvoter", "--addr", addr)
		testwait.Eventually(t, cliWait, id+" in the configuration of the leader", func() (bool, string) {
			return hasSuffrage(t, c.Leader().ClientAddr(), id, "nonvoter"), "not yet"
		})
	}
	if out := cliOK(t, "remove", "--node-id", "n5", "--addr", addr); !strings.HasPrefix(out, "removed n5 (revision ") {
		t.Errorf("remove --node-id: %q", out)
	}
	var rr struct {
		NodeID   string `json:"node_id"`
		Revision uint64 `json:"revision"`
	}
	cliJSON(t, &rr, "remove", "n6", "--addr", addr, "--json")
	if rr.NodeID != "n6" || rr.Revision == 0 {
		t.Errorf("remove n6 --json: %+v", rr)
	}
	testwait.Eventually(t, cliWait, "n5 and n6 out of the raft configuration", func() (bool, string) {
		return !hasSuffrage(t, addr, "n5", "") && !hasSuffrage(t, addr, "n6", ""), "not yet"
	})
}

// hasSuffrage reports whether the node at addr lists member id in its raft
// configuration with the suffrage given (any, when "").
func hasSuffrage(t *testing.T, addr, id, suffrage string) bool {
	t.Helper()
	var ms []memberView
	cliJSON(t, &ms, "members", "--addr", addr, "--json")
	for _, m := range ms {
		if m.NodeID == id && m.Suffrage != "" && (suffrage == "" || m.Suffrage == suffrage) {
			return true
		}
	}
	return false
}
