package main

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseFlags(t *testing.T) {
	ok := []string{"--id", "n1", "--raft-addr", "127.0.0.1:7410", "--http-addr", "127.0.0.1:7412",
		"--data-dir", "/tmp/x", "--initial-cluster", "n1=127.0.0.1:7410,n2=127.0.0.1:7420"}
	cfg, err := parseFlags(ok, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.InitialCluster) != 2 || cfg.InitialCluster[1] != (Member{"n2", "127.0.0.1:7420"}) ||
		cfg.HeartbeatTimeout != time.Second || cfg.LeaderLeaseTimeout != 500*time.Millisecond {
		t.Errorf("parsed %+v", cfg)
	}
	for name, args := range map[string][]string{
		"no id":            {"--raft-addr", "a:1", "--http-addr", "a:2", "--data-dir", "d", "--initial-cluster", "n1=a:1"},
		"id not a member":  {"--id", "n3", "--raft-addr", "a:1", "--http-addr", "a:2", "--data-dir", "d", "--initial-cluster", "n1=a:1"},
		"address mismatch": {"--id", "n1", "--raft-addr", "a:9", "--http-addr", "a:2", "--data-dir", "d", "--initial-cluster", "n1=a:1"},
		"bad member":       {"--id", "n1", "--raft-addr", "a:1", "--http-addr", "a:2", "--data-dir", "d", "--initial-cluster", "n1"},
		"duplicate member": {"--id", "n1", "--raft-addr", "a:1", "--http-addr", "a:2", "--data-dir", "d", "--initial-cluster", "n1=a:1,n1=a:3"},
		"no port":          {"--id", "n1", "--raft-addr", "a", "--http-addr", "a:2", "--data-dir", "d", "--initial-cluster", "n1=a"},
		"lease > hb": {"--id", "n1", "--raft-addr", "a:1", "--http-addr", "a:2", "--data-dir", "d", "--initial-cluster", "n1=a:1",
			"--heartbeat-timeout", "100ms", "--leader-lease-timeout", "200ms"},
		"unknown flag": {"--bogus"},
	} {
		if _, err := parseFlags(args, io.Discard); !errors.Is(err, ErrBadFlag) {
			t.Errorf("%s: err = %v, want ErrBadFlag", name, err)
		}
	}
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// A one-node cluster elects itself, reports its status in Heartbeat's shape, applies entries,
// and keeps them across a restart on the same data dir.
func TestSingleNodeStatusApplyRestart(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ID, cfg.RaftAddr, cfg.DataDir = "n1", freeAddr(t), filepath.Join(t.TempDir(), "n1")
	cfg.InitialCluster = []Member{{"n1", cfg.RaftAddr}}
	cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 50*time.Millisecond, 50*time.Millisecond, 50*time.Millisecond
	logger := hclog.New(&hclog.LoggerOptions{Level: hclog.Error})

	type status struct {
		ID, State, LeaderID, LeaderAddress string
		Term, CommitIndex                  uint64
	}
	statusOf := func(n *node) status {
		rec := httptest.NewRecorder()
		n.handleStatus(rec, httptest.NewRequest(http.MethodGet, "/v1/status", nil))
		var st heartbeatpb.GetStatusResponse
		if err := protojson.Unmarshal(rec.Body.Bytes(), &st); err != nil {
			t.Fatal(err)
		}
		return status{ID: st.GetNodeId(), State: heartbeatpb.Short(st.GetState()), LeaderID: st.GetLeader().GetNodeId(),
			LeaderAddress: st.GetLeader().GetPeerAddress(), Term: st.GetTerm(), CommitIndex: st.GetCommitIndex()}
	}
	waitLeader := func(n *node) status {
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			if st := statusOf(n); st.State == "leader" {
				return st
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("no leader: %+v", statusOf(n))
		return status{}
	}

	n, err := openNode(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	st := waitLeader(n)
	if st.ID != "n1" || st.LeaderID != "n1" || st.LeaderAddress != cfg.RaftAddr || st.Term == 0 {
		t.Errorf("status %+v", st)
	}
	rec := httptest.NewRecorder()
	n.handleApply(rec, httptest.NewRequest(http.MethodPost, "/v1/apply?n=200", nil))
	var ap applyJSON
	if err := json.Unmarshal(rec.Body.Bytes(), &ap); err != nil || rec.Code != 200 || ap.Applied != 200 || ap.OpsPerSec <= 0 {
		t.Fatalf("apply: %d %s", rec.Code, rec.Body)
	}
	bad := httptest.NewRecorder()
	n.handleApply(bad, httptest.NewRequest(http.MethodPost, "/v1/apply?n=zero", nil))
	if bad.Code != http.StatusBadRequest {
		t.Errorf("apply n=zero: %d", bad.Code)
	}
	commit := statusOf(n).CommitIndex
	if err := n.close(); err != nil {
		t.Fatal(err)
	}

	n, err = openNode(cfg, logger) // restart: existing state, no bootstrap
	if err != nil {
		t.Fatal(err)
	}
	defer n.close()
	if st2 := waitLeader(n); st2.Term <= st.Term {
		t.Errorf("after restart term %d, before %d", st2.Term, st.Term)
	}
	deadline := time.Now().Add(20 * time.Second)
	// The new term's no-op commits after the old log, which the FSM replays.
	for statusOf(n).CommitIndex <= commit || n.fsm.count.Load() < 200 {
		if time.Now().After(deadline) {
			t.Fatalf("after restart commit index %d (want > %d), fsm count %d (want >= 200)",
				statusOf(n).CommitIndex, commit, n.fsm.count.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
