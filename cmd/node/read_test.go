package main

import (
	"strings"
	"testing"
)

// TestCLIReadModes: every read command is consistent by default and says
// so in a last "read:" line; --stale asks for a stale read and says that.
func TestCLIReadModes(t *testing.T) {
	c := startCLICluster(t, 3)
	addr := c.Followers()[0].ClientAddr()
	for _, cmd := range [][]string{
		{"status"}, {"members"}, {"leader"}, {"resources", "list"}, {"assignments"},
	} {
		args := append(append([]string{}, cmd...), "--addr", addr)
		out := cliOK(t, args...)
		if !strings.Contains(out, "read: consistent at revision ") || !strings.Contains(out, ", leader n") {
			t.Errorf("heartbeat %s: no consistent read line:\n%s", strings.Join(args, " "), out)
		}
		out = cliOK(t, append(args, "--stale")...)
		if !strings.Contains(out, "read: stale at revision ") {
			t.Errorf("heartbeat %s --stale: no stale read line:\n%s", strings.Join(args, " "), out)
		}
	}
}

// tableLines splits a command's table output into lines, without the
// trailing "read:" line that says how fresh it was.
func tableLines(out string) []string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if n := len(lines); n > 0 && strings.HasPrefix(lines[n-1], "read: ") {
		lines = lines[:n-1]
	}
	return lines
}
