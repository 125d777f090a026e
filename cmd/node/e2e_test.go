package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	buildDir  string
)

// binary builds the heartbeat binary once per test run (without -race: it
// is the program under test, not the test).
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "heartbeat-bin-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(buildDir, "heartbeat")
		cmd := exec.Command("go", "build", "-o", binPath, ".")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// exitCode runs the binary and returns its exit code and output.
func exitCode(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")} // no HEARTBEAT_* from the caller
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String(), errOut.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String(), errOut.String()
	}
	t.Fatalf("run %v: %v", args, err)
	return -1, "", ""
}

func TestBinaryUsage(t *testing.T) {
	if code, out, _ := exitCode(t, "--help"); code != 0 || !strings.Contains(out, "Commands:") || !strings.Contains(out, "\n  leader ") {
		t.Errorf("--help: exit %d, output %q", code, out)
	}
	if code, out, _ := exitCode(t); code != 0 || !strings.Contains(out, "Commands:") {
		t.Errorf("no arguments: exit %d, output %q", code, out)
	}
	if code, out, _ := exitCode(t, "run", "--help"); code != 0 || !strings.Contains(out, "--initial-cluster") {
		t.Errorf("run --help: exit %d, output %q", code, out)
	}
	if code, _, errOut := exitCode(t, "--no-such-flag"); code != 2 || !strings.Contains(errOut, "unknown flag -no-such-flag") {
		t.Errorf("bad flag: exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut := exitCode(t, "run"); code != 2 || !strings.Contains(errOut, "missing --node-id") {
		t.Errorf("run without --id: exit %d, stderr %q", code, errOut)
	}
	if code, out, _ := exitCode(t, "version"); code != 0 || !strings.HasPrefix(out, "heartbeat ") {
		t.Errorf("version: exit %d, %q", code, out)
	}
}

// TestBinaryCluster starts three real processes and drives the CLI against them.
func TestBinaryCluster(t *testing.T) {
	bin := binary(t)
	dir := t.TempDir()
	ports := testcluster.FreePorts(t, 9)
	var members []string
	for i := 0; i < 3; i++ {
		members = append(members, fmt.Sprintf("n%d=127.0.0.1:%d", i+1, ports[3*i]))
	}
	clientAddr := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", ports[3*i+1]) }
	var procs []*exec.Cmd
	t.Cleanup(func() {
		for _, p := range procs {
			p.Process.Kill()
			p.Wait()
		}
	})
	for i := 0; i < 3; i++ {
		id := fmt.Sprintf("n%d", i+1)
		logf, err := os.Create(filepath.Join(dir, id+".log"))
		if err != nil {
			t.Fatal(err)
		}
		defer logf.Close()
		cmd := exec.Command(bin, "run")
		cmd.Env = []string{
			"HEARTBEAT_NODE_ID=" + id,
			"HEARTBEAT_DATA_DIR=" + filepath.Join(dir, id),
			fmt.Sprintf("HEARTBEAT_PEER_ADDR=127.0.0.1:%d", ports[3*i]),
			"HEARTBEAT_CLIENT_ADDR=" + clientAddr(i),
			fmt.Sprintf("HEARTBEAT_HTTP_ADDR=127.0.0.1:%d", ports[3*i+2]),
			"HEARTBEAT_INITIAL_CLUSTER=" + strings.Join(members, ","),
			"HEARTBEAT_LOG_FORMAT=json",
			// Lenient timing for a shared machine: no false election
			// between two checks. Crash failover does not wait for it.
			"HEARTBEAT_HEARTBEAT_TIMEOUT=1500ms",
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs = append(procs, cmd)
	}
	dumpLogs := func() {
		for i := 0; i < 3; i++ {
			b, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("n%d.log", i+1)))
			t.Logf("n%d log:\n%s", i+1, b)
		}
	}

	// Wait until every node is ready (health SERVING) and agrees on a leader.
	deadline := time.Now().Add(30 * time.Second)
	var leader string
	for {
		leaders := map[string]bool{}
		ready := 0
		for i := 0; i < 3; i++ {
			if code, _, _ := exitCode(t, "health", "--addr", clientAddr(i), "--timeout", "1s"); code == 0 {
				ready++
			}
			code, out, _ := exitCode(t, "status", "--addr", clientAddr(i), "--json")
			var s struct {
				Leader struct {
					ID string `json:"node_id"`
				} `json:"leader"`
			}
			if code == 0 && json.Unmarshal([]byte(out), &s) == nil {
				leaders[s.Leader.ID] = true
			}
		}
		if ready == 3 && len(leaders) == 1 && !leaders[""] {
			for l := range leaders {
				leader = l
			}
			break
		}
		if time.Now().After(deadline) {
			dumpLogs()
			t.Fatalf("no ready cluster with one leader: ready=%d leaders=%v", ready, leaders)
		}
		time.Sleep(100 * time.Millisecond)
	}

	code, out, errOut := exitCode(t, "status", "--addr", clientAddr(0))
	if code != 0 || !strings.Contains(out, "ID             n1") || !strings.Contains(out, "LEADER         "+leader+" (") ||
		!strings.Contains(out, "FENCING TOKEN") {
		t.Errorf("status: exit %d\n%s%s", code, out, errOut)
	}
	// members: every node registers itself in the membership state shortly
	// after it knows a leader.
	var lines []string
	for deadline := time.Now().Add(20 * time.Second); ; {
		code, out, errOut = exitCode(t, "members", "--addr", clientAddr(1))
		lines = tableLines(out)
		if code != 0 || len(lines) != 4 || !strings.HasPrefix(lines[0], "ID") {
			t.Fatalf("members: exit %d\n%s%s", code, out, errOut)
		}
		if strings.Count(out, " alive ") == 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i, l := range lines[1:] {
		f := strings.Fields(l)
		if f[0] != fmt.Sprintf("n%d", i+1) || f[1] != "alive" || f[2] != "voter" || (f[0] == leader) != (f[3] == "*") ||
			f[4] != "healthy" || f[5] != "false" {
			t.Errorf("members line %q (leader %s)", l, leader)
		}
	}

	// resources: put through one node, list through another, delete.
	if code, out, errOut := exitCode(t, "resources", "put", "db-1", "--weight", "3", "--addr", clientAddr(2)); code != 0 ||
		!strings.HasPrefix(out, "registered db-1") {
		t.Errorf("resources put: exit %d %q %q", code, out, errOut)
	}
	if code, _, errOut := exitCode(t, "resources", "put", "db-2", "--weight", "0", "--addr", clientAddr(2)); code != 2 ||
		!strings.Contains(errOut, "--weight") {
		t.Errorf("resources put --weight 0: exit %d %q", code, errOut)
	}
	var owner string
	for deadline := time.Now().Add(20 * time.Second); owner == "" && time.Now().Before(deadline); {
		code, out, _ := exitCode(t, "resources", "list", "--json", "--addr", clientAddr(0))
		var rs []struct {
			ID, Owner string
			Epoch     uint64
			Weight    uint32
		}
		if code == 0 && json.Unmarshal([]byte(out), &rs) == nil && len(rs) == 1 && rs[0].ID == "db-1" && rs[0].Weight == 3 && rs[0].Epoch > 0 {
			owner = rs[0].Owner
		}
		if owner == "" {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if owner == "" {
		t.Error("db-1 never listed with an owner")
	}
	if code, out, _ := exitCode(t, "resources", "list", "--addr", clientAddr(1)); code != 0 ||
		!strings.Contains(out, "db-1") || !strings.Contains(out, owner) {
		t.Errorf("resources list: exit %d %q", code, out)
	}
	if code, out, errOut := exitCode(t, "drain", "--node-id", owner, "--addr", clientAddr(0)); code != 0 || !strings.HasPrefix(out, "drained "+owner) {
		t.Errorf("drain: exit %d %q %q", code, out, errOut)
	}
	if code, out, errOut := exitCode(t, "undrain", "--node-id", owner, "--addr", clientAddr(0)); code != 0 || !strings.HasPrefix(out, "undrained "+owner) {
		t.Errorf("undrain: exit %d %q %q", code, out, errOut)
	}
	if code, _, errOut := exitCode(t, "drain", "--node-id", "nobody", "--addr", clientAddr(0)); code != 1 || !strings.Contains(errOut, "NotFound") {
		t.Errorf("drain of an unknown node: exit %d %q", code, errOut)
	}
	if code, out, errOut := exitCode(t, "resources", "delete", "db-1", "--addr", clientAddr(1)); code != 0 || !strings.HasPrefix(out, "deleted db-1") {
		t.Errorf("resources delete: exit %d %q %q", code, out, errOut)
	}
	if code, _, errOut := exitCode(t, "resources", "delete", "db-1", "--addr", clientAddr(1)); code != 1 || !strings.Contains(errOut, "NotFound") {
		t.Errorf("second delete: exit %d %q", code, errOut)
	}
	code, out, errOut = exitCode(t, "leader", "--addr", clientAddr(2))
	if code != 0 || !strings.HasPrefix(out, "leader="+leader+" address=127.0.0.1:") || !strings.Contains(out, "fencing_token=") {
		t.Errorf("leader: exit %d %q %q", code, out, errOut)
	}
	code, out, _ = exitCode(t, "leader", "--addr", clientAddr(2), "--json")
	var ev struct {
		Leader struct {
			ID string `json:"node_id"`
		} `json:"leader"`
		FencingToken uint64 `json:"fencing_token"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &ev) != nil || ev.Leader.ID != leader || ev.FencingToken == 0 {
		t.Errorf("leader --json: exit %d %q", code, out)
	}

	// leader --watch on the leader's own node prints it, then, once that
	// process is killed with SIGKILL, reconnects to another member (learned
	// from the first when the watch started) and prints the next leader.
	var leaderIdx int
	fmt.Sscanf(leader, "n%d", &leaderIdx)
	follower := 0
	if leader == "n1" {
		follower = 1
	}
	watch := exec.Command(bin, "leader", "--watch", "--addr", clientAddr(leaderIdx-1))
	watch.Env = []string{"PATH=" + os.Getenv("PATH")}
	stdout, err := watch.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	procs = append(procs, watch)
	lineCh := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lineCh <- sc.Text()
		}
		close(lineCh)
	}()
	next := func() string {
		select {
		case l, ok := <-lineCh:
			if !ok {
				t.Fatal("leader --watch ended early")
			}
			return l
		case <-time.After(30 * time.Second):
			t.Fatal("leader --watch printed nothing")
		}
		return ""
	}
	if l := next(); !strings.Contains(l, "leader="+leader+" ") || !strings.Contains(l, " is_self=true ") {
		t.Fatalf("first watch line %q, want leader %s serving it", l, leader)
	}
	procs[leaderIdx-1].Process.Signal(syscall.SIGKILL)
	var disconnected, reconnected bool
	for {
		l := next()
		disconnected = disconnected || strings.Contains(l, "disconnected=true endpoint="+clientAddr(leaderIdx-1))
		reconnected = reconnected || (disconnected && strings.Contains(l, "reconnected=true"))
		if reconnected && strings.Contains(l, "leader=n") && !strings.Contains(l, "leader="+leader+" ") {
			break
		}
	}
	// The crashed leader is removed through a surviving follower.
	code, out, errOut = exitCode(t, "remove", "--node-id", leader, "--addr", clientAddr(follower))
	if code != 0 || !strings.HasPrefix(out, "removed "+leader+" (revision ") {
		t.Errorf("remove: exit %d %q %q", code, out, errOut)
	}
	// The removed node is out of the raft configuration and, in the
	// membership state, left (not dead).
	code, out, _ = exitCode(t, "members", "--addr", clientAddr(follower), "--json")
	var after []struct {
		ID              string `json:"node_id"`
		State, Suffrage string
	}
	if code != 0 || json.Unmarshal([]byte(out), &after) != nil || len(after) != 3 {
		t.Errorf("members after remove: exit %d %s", code, out)
	}
	for _, m := range after {
		if m.ID == leader && (m.State != "left" || m.Suffrage != "") {
			t.Errorf("%s after remove: %+v, want left and out of the raft configuration", leader, m)
		}
	}

	// Ctrl-C ends --watch cleanly.
	watch.Process.Signal(os.Interrupt)
	for range lineCh {
	}
	if err := watch.Wait(); err != nil {
		t.Errorf("leader --watch after SIGINT: %v", err)
	}
	procs = procs[:len(procs)-1]

	// A survivor stops gracefully on SIGTERM with exit 0.
	p := procs[follower]
	p.Process.Signal(syscall.SIGTERM)
	if err := p.Wait(); err != nil {
		dumpLogs()
		t.Errorf("SIGTERM: %v", err)
	}
	procs = append(procs[:follower], procs[follower+1:]...)
}

// TestBinaryCorruptDataDir: run on a data dir whose raft.db is garbage exits
// with code 3 and one line naming the file and the way back, never a panic.
func TestBinaryCorruptDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "n1")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	garbage := bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef, 0x13}, 4000)
	if err := os.WriteFile(filepath.Join(dir, "raft.db"), garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := exitCode(t, "run", "--node-id", "n1", "--data-dir", dir,
		"--peer-addr", "127.0.0.1:0", "--client-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
	var line string
	for _, l := range strings.Split(errOut, "\n") {
		if strings.HasPrefix(l, "heartbeat run: ") {
			line = l
		}
	}
	if code != 3 || strings.Contains(errOut, "panic") {
		t.Fatalf("exit %d, want 3; stderr:\n%s", code, errOut)
	}
	for _, want := range []string{"data dir is corrupt", filepath.Join(dir, "raft.db"), "move the data dir " + dir + " away"} {
		if !strings.Contains(line, want) {
			t.Fatalf("error line %q does not say %q", line, want)
		}
	}
}
