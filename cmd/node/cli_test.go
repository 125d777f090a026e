package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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

// cli runs one command line in process with an empty environment.
func cli(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut, mapEnv(nil))
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

// TestCLICommands runs every client command of the CLI against a live
// in-process cluster of three: tables by default, JSON with --json, runtime
// failures with exit 1.
func TestCLICommands(t *testing.T) {
	c := startCLICluster(t, 3)
	leader := c.Leader()
	f := c.Followers()[0]
	addr := f.ClientAddr()

	t.Run("status", func(t *testing.T) {
		out := cliOK(t, "status", "--addr", addr)
		if !strings.Contains(out, "ID             "+f.ID()) || !strings.Contains(out, "LEADER         "+leader.ID()+" (") {
			t.Errorf("status table:\n%s", out)
		}
		var s node.Status
		cliJSON(t, &s, "status", "--addr", addr, "--json")
		if s.ID != f.ID() || s.Leader.ID != leader.ID() || s.Term == 0 || s.FencingToken == 0 || !s.Voter {
			t.Errorf("status --json: %+v", s)
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
			for _, k := range []string{"id", "state", "suffrage", "is_leader", "leader_priority", "addresses", "owned"} {
				if _, ok := m[k]; !ok {
					t.Errorf("members --json: member without %q: %v", k, m)
				}
			}
		}
	})

	t.Run("leader", func(t *testing.T) {
		out := cliOK(t, "leader", "--addr", addr)
		if !strings.HasPrefix(out, "leader="+leader.ID()+" address="+leader.PeerAddr()) || !strings.Contains(out, "fencing_token=") {
			t.Errorf("leader: %q", out)
		}
		var li node.LeaderInfo
		cliJSON(t, &li, "leader", "--addr", addr, "--json")
		if li.Leader.ID != leader.ID() || li.Leader.ClientAddress != leader.ClientAddr() || li.Leader.HTTPAddress != leader.HTTPAddr() ||
			li.FencingToken == 0 || li.IsSelf {
			t.Errorf("leader --json: %+v", li)
		}
	})

	t.Run("leader --watch", func(t *testing.T) {
		testLeaderWatch(t, leader, addr)
	})

	t.Run("health", func(t *testing.T) {
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
	})

	t.Run("resources and assignments", func(t *testing.T) {
		if out := cliOK(t, "resources", "put", "db-1", "--weight", "3", "--label", "zone=a", "--addr", addr); !strings.HasPrefix(out, "registered db-1") {
			t.Errorf("resources put: %q", out)
		}
		var rs []node.Resource
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
		var mine []node.Resource
		cliJSON(t, &mine, "assignments", "--node", owner, "--addr", addr, "--json")
		if len(mine) != 1 || mine[0].ID != "db-1" || mine[0].Owner != owner {
			t.Errorf("assignments --node %s --json: %+v", owner, mine)
		}
		if out := cliOK(t, "assignments", "--node", owner, "--addr", addr); !strings.Contains(out, "db-1") {
			t.Errorf("assignments:\n%s", out)
		}
		if out := cliOK(t, "drain", "--node", owner, "--addr", addr); !strings.HasPrefix(out, "drained "+owner) {
			t.Errorf("drain: %q", out)
		}
		if out := cliOK(t, "undrain", "--node", owner, "--addr", addr); !strings.HasPrefix(out, "undrained "+owner) {
			t.Errorf("undrain: %q", out)
		}
		if out := cliOK(t, "resources", "delete", "db-1", "--addr", addr); !strings.HasPrefix(out, "deleted db-1") {
			t.Errorf("resources delete: %q", out)
		}
	})

	t.Run("priority and members --watch", func(t *testing.T) {
		testPriorityWatch(t, c)
	})

	t.Run("transfer and step-down", func(t *testing.T) {
		l := c.Leader()
		target := c.Followers()[0]
		out := cliOK(t, "transfer", target.ID(), "--addr", addr)
		if want := fmt.Sprintf("leader %s -> %s (term ", l.ID(), target.ID()); !strings.HasPrefix(out, want) {
			t.Errorf("transfer: %q, want %q...", out, want)
		}
		if got := c.Leader(); got.ID() != target.ID() {
			t.Fatalf("leader after transfer: %s, want %s", got.ID(), target.ID())
		}
		// A no-op to the leader itself, with the flags before the id.
		var ch node.LeadershipChange
		cliJSON(t, &ch, "transfer", "--addr", addr, "--json", target.ID())
		if ch.Previous != target.ID() || ch.Leader.ID != target.ID() || ch.FencingToken == 0 {
			t.Errorf("transfer --json to the leader: %+v", ch)
		}
		cliJSON(t, &ch, "step-down", "--addr", addr, "--json")
		if ch.Previous != target.ID() || ch.Leader.ID == target.ID() {
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

	t.Run("join, leave, remove", func(t *testing.T) {
		testJoinLeaveRemove(t, c, addr)
	})

	t.Run("runtime failures", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"transfer", "nobody", "--addr", addr}, "NotFound"},
			{[]string{"priority", "--node", "nobody", "5", "--addr", addr}, "NotFound"},
			{[]string{"remove", "--id", "nobody", "--addr", addr}, "NotFound"},
			{[]string{"join", "--id", "n1", "--peer-addr", "127.0.0.1:1", "--addr", addr}, "AlreadyExists"},
		} {
			code, _, errOut := cli(tc.args...)
			if code != exitFailure || !strings.Contains(errOut, tc.want) {
				t.Errorf("heartbeat %s: exit %d %q, want 1 and %s", strings.Join(tc.args, " "), code, errOut, tc.want)
			}
		}
	})
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
			codes[i] = run(ctx, r.args, r.out, &bytes.Buffer{}, mapEnv(nil))
		}()
	}
	leaseMs := max(leader.Election().LeaseDuration(), leader.Election().OwnershipLeaseDuration()).Milliseconds()
	// 20 renewals with a lease left: a second at least.
	testwait.Eventually(t, cliWait, "20 renewals on leader --watch --json", func() (bool, string) {
		renewals := 0
		for _, line := range strings.Split(strings.TrimSpace(lines.String()), "\n") {
			var li node.LeaderInfo
			if err := json.Unmarshal([]byte(line), &li); err != nil {
				return false, fmt.Sprintf("line %q: %v", line, err)
			}
			if !li.IsSelf || li.Leader.ID != leader.ID() || li.LeaseRemainingMs < 0 || li.LeaseRemainingMs > leaseMs {
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
			codes[i] = run(ctx, args, out, &bytes.Buffer{}, mapEnv(nil))
		}()
	}
	testwait.Eventually(t, cliWait, "the first lists", func() (bool, string) {
		return strings.Contains(table.String(), "PRIORITY") && strings.Count(lines.String(), "\n") >= 1, table.String() + lines.String()
	})

	out := cliOK(t, "priority", "--node", l.ID(), "40", "--addr", addr)
	if !strings.HasPrefix(out, "set the leader priority of "+l.ID()+" to 40") {
		t.Errorf("priority: %q", out)
	}
	prioOf := func(ms []node.Member, id string) uint32 {
		for _, m := range ms {
			if m.ID == id {
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
			var mi node.MembersInfo
			if err := json.Unmarshal([]byte(line), &mi); err != nil {
				return false, fmt.Sprintf("members --watch --json line %q: %v", line, err)
			}
			jsonOK = jsonOK || (mi.Revision > 0 && prioOf(mi.Members, l.ID()) == 40)
		}
		return tableOK && jsonOK, table.String() + lines.String()
	})
	cancel()
	wg.Wait()
	if codes[0] != exitOK || codes[1] != exitOK {
		t.Errorf("members --watch after an interrupt: exit %v", codes)
	}

	var ms []node.Member
	cliJSON(t, &ms, "members", "--addr", addr, "--json")
	if p := prioOf(ms, l.ID()); p != 40 {
		t.Errorf("members --json: priority of %s %d, want 40", l.ID(), p)
	}
	var res struct {
		Priority uint32 `json:"priority"`
		Revision uint64 `json:"revision"`
	}
	cliJSON(t, &res, "priority", "0", "--addr", addr, "--json") // default: the node at --addr
	if res.Priority != 0 || res.Revision == 0 {
		t.Errorf("priority --json: %+v", res)
	}
	cliJSON(t, &ms, "members", "--addr", addr, "--json")
	if p := prioOf(ms, l.ID()); p != 0 {
		t.Errorf("priority of %s after priority 0: %d", l.ID(), p)
	}
}

// testJoinLeaveRemove: join adds n4 (non-voter), which then starts and
// leaves through its own client port; n5 is added and never started, then
// removed through the Coordinator (--addr), n6 through the peer port
// (--peer).
func testJoinLeaveRemove(t *testing.T, c *testcluster.Cluster, addr string) {
	peers := testcluster.FreeAddrs(t, 3)
	out := cliOK(t, "join", "--id", "n4", "--peer-addr", peers[0], "--nonvoter", "--addr", addr)
	if !strings.HasPrefix(out, "added n4 at "+peers[0]+" as a non-voter (log index ") {
		t.Errorf("join: %q", out)
	}
	// A repeat is a no-op once the node asked has applied the first.
	testwait.Eventually(t, cliWait, "n4 in the configuration of the node asked", func() (bool, string) {
		return hasSuffrage(t, addr, "n4", "nonvoter"), "not yet"
	})
	var jr struct {
		NodeID string `json:"node_id"`
		Voter  bool   `json:"voter"`
		Index  uint64 `json:"index"`
	}
	cliJSON(t, &jr, "join", "--id", "n4", "--peer-addr", peers[0], "--nonvoter", "--addr", addr, "--json")
	if jr.NodeID != "n4" || jr.Voter || jr.Index != 0 {
		t.Errorf("repeated join --json: %+v, want index 0", jr)
	}
	n4 := c.Join("n4", peers[0], false)
	c.Ready()

	var lr struct {
		NodeID string `json:"node_id"`
		Moved  *int   `json:"moved"`
	}
	cliJSON(t, &lr, "leave", "--addr", n4.ClientAddr(), "--json")
	if lr.NodeID != "n4" || lr.Moved == nil {
		t.Errorf("leave --json: %+v", lr)
	}
	select {
	case <-n4.Left():
	default:
		t.Error("n4 has not left after leave")
	}
	ctx, cancel := context.WithTimeout(context.Background(), cliWait)
	defer cancel()
	if err := n4.Shutdown(ctx); err != nil {
		t.Errorf("n4 shutdown: %v", err)
	}
	c.Forget("n4")
	var ms []node.Member
	testwait.Eventually(t, cliWait, "n4 recorded as left", func() (bool, string) {
		cliJSON(t, &ms, "members", "--addr", addr, "--json")
		for _, m := range ms {
			if m.ID == "n4" {
				return m.State == "left" && m.Suffrage == "", fmt.Sprintf("%+v", m)
			}
		}
		return false, "n4 not listed"
	})

	// The node asked decides on its own copy of the configuration: wait
	// until it has applied each join before the remove.
	cliOK(t, "join", "--id", "n5", "--peer-addr", peers[1], "--nonvoter", "--addr", addr)
	testwait.Eventually(t, cliWait, "n5 in the configuration of the node asked", func() (bool, string) {
		return hasSuffrage(t, addr, "n5", "nonvoter"), "not yet"
	})
	if out := cliOK(t, "remove", "--id", "n5", "--addr", addr); !strings.HasPrefix(out, "removed n5 (log index ") {
		t.Errorf("remove --addr: %q", out)
	}
	cliOK(t, "join", "--id", "n6", "--peer-addr", peers[2], "--nonvoter", "--addr", addr)
	testwait.Eventually(t, cliWait, "n6 in the configuration of the leader", func() (bool, string) {
		return hasSuffrage(t, c.Leader().ClientAddr(), "n6", "nonvoter"), "not yet"
	})
	var rr struct {
		NodeID string `json:"node_id"`
		Index  uint64 `json:"index"`
	}
	cliJSON(t, &rr, "remove", "--id", "n6", "--peer", c.Peers()[0].Address, "--json")
	if rr.NodeID != "n6" || rr.Index == 0 {
		t.Errorf("remove --peer --json: %+v", rr)
	}
	testwait.Eventually(t, cliWait, "n5 and n6 out of the raft configuration", func() (bool, string) {
		return !hasSuffrage(t, addr, "n5", "") && !hasSuffrage(t, addr, "n6", ""), "not yet"
	})
}

// hasSuffrage reports whether the node at addr lists member id in its raft
// configuration with the suffrage given (any, when "").
func hasSuffrage(t *testing.T, addr, id, suffrage string) bool {
	t.Helper()
	var ms []node.Member
	cliJSON(t, &ms, "members", "--addr", addr, "--json")
	for _, m := range ms {
		if m.ID == id && m.Suffrage != "" && (suffrage == "" || m.Suffrage == suffrage) {
			return true
		}
	}
	return false
}

// TestCLIUsage: usage errors exit 2 without asking a node (nothing listens
// on the address); --help exits 0 with the command's usage.
func TestCLIUsage(t *testing.T) {
	addr := "127.0.0.1:1"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"transfer"}, "missing the id"},
		{[]string{"transfer", "n1", "n2"}, `unexpected argument "n2"`},
		{[]string{"step-down", "n1"}, `unexpected argument "n1"`},
		{[]string{"priority"}, "missing the priority"},
		{[]string{"priority", "101"}, "0..100"},
		{[]string{"priority", "high"}, "0..100"},
		{[]string{"priority", "-1"}, "unknown flag"},
		{[]string{"priority", "1", "2"}, `unexpected argument "2"`},
		{[]string{"join", "--peer-addr", addr}, "missing --id"},
		{[]string{"join", "--id", "n4"}, "missing --peer-addr"},
		{[]string{"join", "--id", "n4", "--peer-addr", addr, "extra"}, `unexpected argument "extra"`},
		{[]string{"join", "--id", "n4", "--peer-addr", addr, "--voter"}, "unknown flag -voter"},
		{[]string{"leave", "n1"}, `unexpected argument "n1"`},
		{[]string{"remove", "--addr", addr}, "missing --id"},
		{[]string{"members", "--watch=sometimes"}, "watch"},
		{[]string{"health", "--json=maybe"}, "json"},
		{[]string{"leave", "--timeout", "0s"}, "--timeout must be positive"},
	} {
		code, out, errOut := cli(append(tc.args, "--addr", addr)...)
		if code != exitUsage || !strings.Contains(errOut, tc.want) {
			t.Errorf("heartbeat %s: exit %d, stdout %q, stderr %q; want 2 and %q", strings.Join(tc.args, " "), code, out, errOut, tc.want)
		}
	}
	for _, cmd := range []string{"step-down", "transfer", "priority", "join", "leave", "remove", "members", "health"} {
		code, out, _ := cli(cmd, "--help")
		if code != exitOK || !strings.Contains(out, "Usage: heartbeat "+cmd) || !strings.Contains(out, "--timeout") {
			t.Errorf("heartbeat %s --help: exit %d\n%s", cmd, code, out)
		}
	}
	if code, out, _ := cli("help"); code != exitOK {
		t.Errorf("help: exit %d", code)
	} else {
		for _, cmd := range []string{"step-down", "transfer ID", "priority [--node ID] N", "join --id ID --peer-addr A", "leave", "members [--addr A] [--watch]"} {
			if !strings.Contains(out, "heartbeat "+cmd) {
				t.Errorf("help lacks %q", cmd)
			}
		}
	}
	// The join flags are never read from the environment (HEARTBEAT_ID and
	// HEARTBEAT_PEER_ADDR configure run).
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"join", "--addr", addr}, &out, &errOut,
		mapEnv(map[string]string{"HEARTBEAT_ID": "n1", "HEARTBEAT_PEER_ADDR": "127.0.0.1:7400"}))
	if code != exitUsage || !strings.Contains(errOut.String(), "missing --id") {
		t.Errorf("join with HEARTBEAT_ID set: exit %d %q", code, errOut.String())
	}
}
