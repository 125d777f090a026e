package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain removes the binary built for the end-to-end tests, then checks
// for leaked goroutines as goleak.VerifyTestMain does.
func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

func mapEnv(m map[string]string) env {
	return func(k string) string { return m[k] }
}

const cluster3 = "n1=127.0.0.1:7410,n2=127.0.0.1:7420,n3=127.0.0.1:7430"

func TestParseRunConfig(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string // substring of the usage error; "" = ok
		check   func(t *testing.T, c configView)
	}{
		{name: "defaults", args: []string{"--node-id", "n1"}, check: func(t *testing.T, c configView) {
			c.want(t, "DataDir", c.DataDir, "data/n1")
			c.want(t, "PeerAddr", c.PeerAddr, "127.0.0.1:7400")
			c.want(t, "ClientAddr", c.ClientAddr, "127.0.0.1:7401")
			c.want(t, "HTTPAddr", c.HTTPAddr, "127.0.0.1:7402")
			c.want(t, "ClusterID", c.ClusterID, "heartbeat")
			if !c.Voter || !c.FastFailover || len(c.InitialCluster) != 0 {
				t.Errorf("defaults: %+v", c.Config)
			}
		}},
		{name: "flags", args: []string{"--node-id=n2", "--initial-cluster", cluster3, "--data-dir", "/d", "--peer-addr", "127.0.0.1:7420",
			"--heartbeat-timeout", "300ms", "--lease-duration", "250ms", "--fast-failover=false", "--log-format", "json", "--log-level", "debug"},
			check: func(t *testing.T, c configView) {
				c.want(t, "ID", c.ID, "n2")
				c.want(t, "DataDir", c.DataDir, "/d")
				c.want(t, "LogFormat", c.LogFormat, "json")
				if len(c.InitialCluster) != 3 || c.HeartbeatTimeout != 300*time.Millisecond || c.LeaseDuration != 250*time.Millisecond || c.FastFailover {
					t.Errorf("flags: %+v", c.Config)
				}
			}},
		{name: "env", args: nil, env: map[string]string{"HEARTBEAT_NODE_ID": "n3", "HEARTBEAT_INITIAL_CLUSTER": cluster3,
			"HEARTBEAT_NONVOTER": "true", "HEARTBEAT_ELECTION_TIMEOUT": "2s", "HEARTBEAT_CLIENT_ADDR": "0.0.0.0:9", "HEARTBEAT_INSECURE": "true"},
			check: func(t *testing.T, c configView) {
				c.want(t, "ID", c.ID, "n3")
				c.want(t, "ClientAddr", c.ClientAddr, "0.0.0.0:9")
				if c.Voter || c.ElectionTimeout != 2*time.Second || len(c.InitialCluster) != 3 {
					t.Errorf("env: %+v", c.Config)
				}
			}},
		{name: "flag wins over env", args: []string{"--node-id", "n1", "--cluster-id", "flag"}, env: map[string]string{"HEARTBEAT_NODE_ID": "n9", "HEARTBEAT_CLUSTER_ID": "env"},
			check: func(t *testing.T, c configView) {
				c.want(t, "ID", c.ID, "n1")
				c.want(t, "ClusterID", c.ClusterID, "flag")
			}},
		{name: "join", args: []string{"--node-id", "n4", "--initial-cluster", cluster3, "--join", "127.0.0.1:7410, 127.0.0.1:7420"},
			check: func(t *testing.T, c configView) {
				if len(c.Join) != 2 || c.Join[1] != "127.0.0.1:7420" {
					t.Errorf("join: %v", c.Join)
				}
			}},
		{name: "app health", args: []string{"--node-id", "n1", "--app-health-url", "http://127.0.0.1:8080/health", "--app-health-interval", "250ms",
			"--drain-timeout", "3s"}, check: func(t *testing.T, c configView) {
			c.want(t, "AppHealthURL", c.AppHealthURL, "http://127.0.0.1:8080/health")
			if c.AppHealthInterval != 250*time.Millisecond || c.DrainTimeout != 3*time.Second {
				t.Errorf("app health: %+v", c.Config)
			}
		}},
		{name: "limits", args: []string{"--node-id", "n1", "--max-request-bytes", "2097152", "--quota-bytes", "0"},
			env: map[string]string{"HEARTBEAT_MAX_RESOURCES": "5000"}, check: func(t *testing.T, c configView) {
				if c.MaxRequestBytes != 2<<20 || c.QuotaBytes != 0 || c.MaxResources != 5000 {
					t.Errorf("limits: %d %d %d", c.MaxRequestBytes, c.QuotaBytes, c.MaxResources)
				}
			}},
		{name: "leader priority", args: []string{"--node-id", "n1", "--leader-priority", "70", "--priority-holdoff", "2s"},
			check: func(t *testing.T, c configView) {
				if c.LeaderPriority == nil || *c.LeaderPriority != 70 || c.PriorityHoldoff != 2*time.Second {
					t.Errorf("leader priority: %v %v", c.LeaderPriority, c.PriorityHoldoff)
				}
			}},
		{name: "leader priority unset", args: []string{"--node-id", "n1"},
			check: func(t *testing.T, c configView) {
				if c.LeaderPriority != nil {
					t.Errorf("leader priority set without the flag: %v", *c.LeaderPriority)
				}
			}},
		{name: "leader priority env", env: map[string]string{"HEARTBEAT_NODE_ID": "n1", "HEARTBEAT_LEADER_PRIORITY": "5"},
			check: func(t *testing.T, c configView) {
				if c.LeaderPriority == nil || *c.LeaderPriority != 5 {
					t.Errorf("leader priority from the environment: %v", c.LeaderPriority)
				}
			}},
		{name: "leader priority too high", args: []string{"--node-id", "n1", "--leader-priority", "101"}, wantErr: "--leader-priority 101"},
		{name: "priority holdoff too short", args: []string{"--node-id", "n1", "--priority-holdoff", "10ms"}, wantErr: "--priority-holdoff"},
		{name: "remote app health url", args: []string{"--node-id", "n1", "--app-health-url", "http://example.com/health"}, wantErr: "--app-health-url"},
		{name: "drain above shutdown", args: []string{"--node-id", "n1", "--drain-timeout", "20s"}, wantErr: "--drain-timeout"},
		{name: "request limit too small", args: []string{"--node-id", "n1", "--max-request-bytes", "1000"}, wantErr: "--max-request-bytes 1000 outside"},
		{name: "negative quota", env: map[string]string{"HEARTBEAT_NODE_ID": "n1", "HEARTBEAT_QUOTA_BYTES": "-1"}, wantErr: "--quota-bytes and --max-resources"},
		{name: "connection limits", args: []string{"--node-id", "n1", "--http-read-timeout", "7s", "--http-idle-timeout", "9s", "--max-watches", "50", "--max-watches-per-client", "5"},
			check: func(t *testing.T, c configView) {
				if c.HTTPReadTimeout != 7*time.Second || c.HTTPIdleTimeout != 9*time.Second || c.MaxWatches != 50 || c.MaxWatchesPerClient != 5 {
					t.Errorf("connection limits: %v %v %d %d", c.HTTPReadTimeout, c.HTTPIdleTimeout, c.MaxWatches, c.MaxWatchesPerClient)
				}
			}},
		{name: "per-client watches above the node's", args: []string{"--node-id", "n1", "--max-watches", "10", "--max-watches-per-client", "20"}, wantErr: "--max-watches-per-client 20 is above --max-watches 10"},
		{name: "negative watches", args: []string{"--node-id", "n1", "--max-watches", "-1"}, wantErr: "--max-watches"},
		{name: "missing id", args: nil, wantErr: "missing --node-id (or HEARTBEAT_NODE_ID)"},
		{name: "unknown flag", args: []string{"--node-id", "n1", "--bogus"}, wantErr: "unknown flag -bogus"},
		{name: "bad duration flag", args: []string{"--node-id", "n1", "--heartbeat-timeout", "fast"}, wantErr: "heartbeat-timeout"},
		{name: "bad duration env", env: map[string]string{"HEARTBEAT_NODE_ID": "n1", "HEARTBEAT_LEASE_DURATION": "soon"}, wantErr: "HEARTBEAT_LEASE_DURATION"},
		{name: "bad bool env", env: map[string]string{"HEARTBEAT_NODE_ID": "n1", "HEARTBEAT_NONVOTER": "maybe"}, wantErr: "HEARTBEAT_NONVOTER"},
		{name: "nonvoter", args: []string{"--node-id", "n4", "--join", "127.0.0.1:7410", "--nonvoter"},
			check: func(t *testing.T, c configView) {
				if c.Voter {
					t.Errorf("--nonvoter: Voter %v", c.Voter)
				}
			}},
		// The spellings of earlier versions are refused, naming what replaced them.
		{name: "old --id", args: []string{"--id", "n1"}, wantErr: "unknown flag -id (replaced by --node-id"},
		{name: "old --voter", args: []string{"--node-id", "n1", "--voter=false"}, wantErr: "unknown flag -voter (replaced by --nonvoter"},
		{name: "old HEARTBEAT_ID", env: map[string]string{"HEARTBEAT_ID": "n1"}, wantErr: "HEARTBEAT_ID is no longer read: use HEARTBEAT_NODE_ID"},
		{name: "old HEARTBEAT_VOTER", args: []string{"--node-id", "n1"}, env: map[string]string{"HEARTBEAT_VOTER": "false"}, wantErr: "HEARTBEAT_VOTER is no longer read"},
		{name: "not in cluster", args: []string{"--node-id", "n9", "--initial-cluster", cluster3}, wantErr: `--node-id "n9" is not in --initial-cluster`},
		{name: "duplicate ids", args: []string{"--node-id", "n1", "--initial-cluster", "n1=127.0.0.1:1,n1=127.0.0.1:2"}, wantErr: "duplicate id"},
		{name: "bad member", args: []string{"--node-id", "n1", "--initial-cluster", "n1"}, wantErr: "want id=host:port"},
		{name: "bad address", args: []string{"--node-id", "n1", "--peer-addr", "nowhere"}, wantErr: `--peer-addr: bad address "nowhere"`},
		{name: "bad join address", args: []string{"--node-id", "n1", "--join", "0.0.0.0:7400"}, wantErr: "wildcard"},
		{name: "bad log format", args: []string{"--node-id", "n1", "--log-format", "xml"}, wantErr: "--log-format"},
		{name: "bad log level", args: []string{"--node-id", "n1", "--log-level", "loud"}, wantErr: "--log-level"},
		{name: "lease above heartbeat", args: []string{"--node-id", "n1", "--heartbeat-timeout", "100ms", "--lease-duration", "200ms"},
			wantErr: "--lease-duration (200ms) must be <= --heartbeat-timeout (100ms)"},
		{name: "lowered heartbeat derives the rest", args: []string{"--node-id", "n1", "--heartbeat-timeout", "100ms"},
			check: func(t *testing.T, c configView) {
				if c.HeartbeatTimeout != 100*time.Millisecond || c.LeaseDuration != 0 || c.ElectionTimeout != 0 {
					t.Errorf("timings: %+v", c.Config)
				}
			}},
		{name: "stray argument", args: []string{"--node-id", "n1", "extra"}, wantErr: `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseRunConfig(tt.args, mapEnv(tt.env), &bytes.Buffer{})
			if tt.wantErr != "" {
				var uerr *usageError
				if !errors.As(err, &uerr) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want a usage error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			tt.check(t, configView{cfg})
		})
	}
}

func TestRunDispatch(t *testing.T) {
	tests := []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"help"}, exitOK, "Commands:", ""},
		{[]string{"--help"}, exitOK, "Commands:", ""},
		{nil, exitOK, "Commands:", ""},
		{[]string{"run", "--help"}, exitOK, "HEARTBEAT_INITIAL_CLUSTER", ""},
		{[]string{"help", "run"}, exitOK, "HEARTBEAT_NODE_ID", ""},
		{[]string{"status", "--help"}, exitOK, "HEARTBEAT_ADDR", ""},
		{[]string{"frobnicate"}, exitUsage, "", `unknown command "frobnicate"`},
		{[]string{"--node-id"}, exitUsage, "", "flag needs an argument"},
		{[]string{"status", "--addr", "127.0.0.1:0"}, exitUsage, "", "--addr"},
		{[]string{"status", "--addr", ""}, exitUsage, "", "--addr is empty"},
		{[]string{"leader", "--watch=maybe"}, exitUsage, "", "watch"},
		{[]string{"version"}, exitOK, "heartbeat ", ""},
		{[]string{"remove"}, exitUsage, "", "missing --node-id"},
		// Nothing listens on port 1: a runtime failure, not a usage error.
		{[]string{"status", "--addr", "127.0.0.1:1", "--timeout", "2s"}, exitFailure, "", "status from 127.0.0.1:1"},
		{[]string{"health", "--addr", "127.0.0.1:1", "--timeout", "2s"}, exitFailure, "", "health of 127.0.0.1:1"},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		code := run(context.Background(), tt.args, &out, &errOut, mapEnv(nil))
		if code != tt.code || !strings.Contains(out.String(), tt.stdout) || !strings.Contains(errOut.String(), tt.stderr) {
			t.Errorf("run %q: exit %d, stdout %q, stderr %q; want exit %d, stdout ~%q, stderr ~%q",
				tt.args, code, out.String(), errOut.String(), tt.code, tt.stdout, tt.stderr)
		}
	}
}

func TestEnvName(t *testing.T) {
	if got := envName("advertise-peer-addr"); got != "HEARTBEAT_ADVERTISE_PEER_ADDR" {
		t.Errorf("envName = %q", got)
	}
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	addr := fs.String("addr", "def", "")
	if err := parseFlags(fs, nil, mapEnv(map[string]string{"HEARTBEAT_ADDR": "from-env"}), &bytes.Buffer{}, ""); err != nil || *addr != "from-env" {
		t.Errorf("env not applied: %q %v", *addr, err)
	}
}
