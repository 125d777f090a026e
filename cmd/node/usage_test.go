package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestCLIUsage: usage errors exit 2 without asking a node (nothing listens
// on the address), old flag spellings included, each naming its
// replacement; --help exits 0 with the command's usage.
func TestCLIUsage(t *testing.T) {
	addr := "127.0.0.1:1"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"transfer"}, "missing --node-id"},
		{[]string{"transfer", "n1", "n2"}, `unexpected argument "n2"`},
		{[]string{"transfer", "--node-id", "n1", "n2"}, `name different members`},
		{[]string{"step-down", "n1"}, `unexpected argument "n1"`},
		{[]string{"priority"}, "missing --priority"},
		{[]string{"priority", "101"}, "0..100"},
		{[]string{"priority", "--priority", "101"}, "0..100"},
		{[]string{"priority", "high"}, "0..100"},
		{[]string{"priority", "--priority", "5", "6"}, `unexpected argument "6"`},
		{[]string{"priority", "1", "2"}, `unexpected argument "2"`},
		{[]string{"join", "--peer-addr", addr}, "missing --node-id"},
		{[]string{"join", "--node-id", "n4"}, "missing --peer-addr"},
		{[]string{"join", "--node-id", "n4", "--peer-addr", addr, "extra"}, `unexpected argument "extra"`},
		{[]string{"leave", "n1"}, `unexpected argument "n1"`},
		{[]string{"remove"}, "missing --node-id"},
		{[]string{"assignments", "n1"}, "--node-id"},
		{[]string{"members", "--watch=sometimes"}, "watch"},
		{[]string{"health", "--json=maybe"}, "json"},
		{[]string{"leave", "--timeout", "0s"}, "--timeout must be positive"},
		{[]string{"app-heartbeat", "--ttl", "1ms"}, "--ttl"},
		{[]string{"resources", "put", "db-1", "--weight", "0"}, "--weight"},
		{[]string{"resources", "put"}, "missing resource id"},
		{[]string{"resources", "frob"}, "unknown subcommand"},
		// Old spellings are refused, each naming its replacement.
		{[]string{"join", "--id", "n4", "--peer-addr", addr}, "unknown flag -id (replaced by --node-id"},
		{[]string{"join", "--node-id", "n4", "--peer-addr", addr, "--voter"}, "unknown flag -voter (replaced by --nonvoter"},
		{[]string{"remove", "--id", "n4"}, "unknown flag -id (replaced by --node-id"},
		{[]string{"remove", "--node-id", "n4", "--peer", addr}, "unknown flag -peer (replaced by --addr"},
		{[]string{"drain", "--node", "n1"}, "unknown flag -node (replaced by --node-id"},
		{[]string{"undrain", "--node", "n1"}, "unknown flag -node (replaced by --node-id"},
		{[]string{"assignments", "--node", "n1"}, "unknown flag -node (replaced by --node-id"},
		{[]string{"priority", "--node", "n1", "5"}, "unknown flag -node (replaced by --node-id"},
	} {
		code, out, errOut := cli(append(tc.args, "--addr", addr)...)
		if code != exitUsage || !strings.Contains(errOut, tc.want) {
			t.Errorf("heartbeat %s: exit %d, stdout %q, stderr %q; want 2 and %q", strings.Join(tc.args, " "), code, out, errOut, tc.want)
		}
	}
	for _, cmd := range commands {
		for _, args := range [][]string{{cmd.name, "--help"}, {"help", cmd.name}} {
			code, out, _ := cli(args...)
			if code != exitOK || !strings.Contains(out, "Usage: heartbeat "+cmd.name) {
				t.Errorf("heartbeat %s: exit %d\n%s", strings.Join(args, " "), code, out)
			}
			if cmd.name != "run" && cmd.name != "version" && cmd.name != "resources" && cmd.name != "tls" && cmd.name != "recover" && !strings.Contains(out, "--addr") {
				t.Errorf("heartbeat %s lists no --addr:\n%s", strings.Join(args, " "), out)
			}
		}
	}
	for _, sub := range []string{"init", "inspect"} {
		if code, out, _ := cli("tls", sub, "--help"); code != exitOK || !strings.Contains(out, "Usage: heartbeat tls "+sub) {
			t.Errorf("heartbeat tls %s --help: exit %d\n%s", sub, code, out)
		}
	}
	for _, sub := range []string{"list", "put", "delete"} {
		if code, out, _ := cli("resources", sub, "--help"); code != exitOK || !strings.Contains(out, "Usage: heartbeat resources "+sub) ||
			!strings.Contains(out, "--addr") {
			t.Errorf("heartbeat resources %s --help: exit %d\n%s", sub, code, out)
		}
	}
	// No arguments, help, -h and --help list every subcommand, one line each.
	for _, args := range [][]string{nil, {"help"}, {"-h"}, {"--help"}} {
		code, out, _ := cli(args...)
		if code != exitOK {
			t.Errorf("heartbeat %v: exit %d", args, code)
			continue
		}
		for _, cmd := range commands {
			if !strings.Contains(out, "\n  "+cmd.name+" ") || !strings.Contains(out, cmd.summary+"\n") {
				t.Errorf("heartbeat %v lacks the line of %s:\n%s", args, cmd.name, out)
			}
		}
	}
	// The join and remove flags are never read from the environment
	// (HEARTBEAT_NODE_ID and HEARTBEAT_PEER_ADDR configure run).
	for _, args := range [][]string{{"join", "--addr", addr}, {"remove", "--addr", addr}} {
		var out, errOut bytes.Buffer
		code := run(context.Background(), args, &out, &errOut,
			mapEnv(map[string]string{"HEARTBEAT_NODE_ID": "n1", "HEARTBEAT_PEER_ADDR": "127.0.0.1:7400"}))
		if code != exitUsage || !strings.Contains(errOut.String(), "missing --node-id") {
			t.Errorf("%s with HEARTBEAT_NODE_ID set: exit %d %q", args[0], code, errOut.String())
		}
	}
}
