package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
)

// TestCLILeaderWatchSurvivesKill: leader --watch --addr names only the
// leader's client address; the leader's node is then killed (closed
// abruptly, its listeners gone). Both watches (text and --json) say they
// were disconnected, reconnect to another member (learned from the first
// node when the watch started), and go on printing: the new leader, then a
// leadership change made through the CLI afterwards.
func TestCLILeaderWatchSurvivesKill(t *testing.T) {
	c := startCLICluster(t, 3)
	old := c.Leader()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var text, lines testcluster.SyncBuffer
	done := make(chan int, 2)
	go func() {
		done <- runCLI(ctx, nil, &text, &bytes.Buffer{}, "leader", "--watch", "--addr", old.ClientAddr())
	}()
	go func() {
		done <- runCLI(ctx, nil, &lines, &bytes.Buffer{}, "leader", "--watch", "--json", "--addr", old.ClientAddr())
	}()
	testwait.Eventually(t, cliWait, "both watches to name "+old.ID(), func() (bool, string) {
		return strings.Contains(text.String(), "leader="+old.ID()+" ") && strings.Contains(lines.String(), `"node_id":"`+old.ID()+`"`),
			text.String() + lines.String()
	})

	killed := time.Now()
	c.Kill(old.ID())
	next := c.Leader() // waits until the survivors agree on a new leader
	if next.ID() == old.ID() {
		t.Fatalf("%s still leads after it was killed", old.ID())
	}
	// The text watch: a disconnected line, then the new leader served by
	// another endpoint.
	testwait.Eventually(t, cliWait, "leader --watch to reconnect and print "+next.ID(), func() (bool, string) {
		out := text.String()
		i := strings.Index(out, "disconnected=true endpoint="+old.ClientAddr())
		if i < 0 {
			return false, out
		}
		after := out[i:]
		return strings.Contains(after, " reconnected=true endpoint=") && strings.Contains(after, "leader="+next.ID()+" "), out
	})
	t.Logf("leader --watch printed the new leader %s, served by another node, %v after the kill of %s (polled every 20ms)",
		next.ID(), time.Since(killed).Round(time.Millisecond), old.ID())
	// The JSON watch: the same, one object per line.
	testwait.Eventually(t, cliWait, "leader --watch --json to reconnect and name "+next.ID(), func() (bool, string) {
		var disconnected, reconnected, newLeader bool
		for _, line := range strings.Split(strings.TrimSpace(lines.String()), "\n") {
			var v leaderView
			if err := json.Unmarshal([]byte(line), &v); err != nil {
				t.Fatalf("leader --watch --json line %q: %v", line, err)
			}
			switch {
			case v.Disconnected:
				disconnected = disconnected || (v.Endpoint == old.ClientAddr() && v.Error != "")
			case disconnected && v.Reconnected:
				reconnected = v.Endpoint != old.ClientAddr()
			case reconnected && v.Leader.NodeID == next.ID() && v.FencingToken > 0:
				newLeader = true
			}
			if reconnected && v.Leader.NodeID == next.ID() {
				newLeader = true
			}
		}
		return disconnected && reconnected && newLeader, lines.String()
	})

	// The watches keep following: a transfer through the CLI shows up.
	target := c.Followers()[0]
	cliOK(t, "transfer", "--node-id", target.ID(), "--addr", next.ClientAddr())
	testwait.Eventually(t, cliWait, "both watches to show the transfer to "+target.ID(), func() (bool, string) {
		return strings.Contains(text.String(), "leader="+target.ID()+" ") && strings.Contains(lines.String(), `"node_id":"`+target.ID()+`"`),
			fmt.Sprintf("text:\n%s\njson:\n%s", text.String(), lines.String())
	})
	cancel()
	for range 2 {
		if code := <-done; code != exitOK {
			t.Errorf("leader --watch after an interrupt: exit %d", code)
		}
	}
}
