package election

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// validConfig is a config that passes Validate.
func validConfig() Config {
	cfg := DefaultConfig()
	cfg.ID, cfg.ClusterID, cfg.DataDir = "n1", "c1", "/tmp/x"
	cfg.Acks = func() map[raft.ServerAddress]Ack { return nil }
	cfg.ErrPeerClosed, cfg.ErrGoodbye = errors.New("closed"), errors.New("bye")
	cfg.Bootstrap = []Peer{{ID: "n1", Address: "a:1", Voter: true}, {ID: "n2", Address: "a:2", Voter: true}}
	return cfg
}

func TestValidate(t *testing.T) {
	if err := validConfig().Validate(); err != nil {
		t.Fatalf("valid config rejected: %v", err)
	}
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string // substring of the error
	}{
		{"empty ID", func(c *Config) { c.ID = "" }, "ID is empty"},
		{"empty cluster", func(c *Config) { c.ClusterID = "" }, "ClusterID"},
		{"empty data dir", func(c *Config) { c.DataDir = "" }, "DataDir"},
		{"no acks", func(c *Config) { c.Acks = nil }, "Acks"},
		{"fast failover without hold errors", func(c *Config) { c.ErrGoodbye = nil }, "ErrGoodbye"},
		{"lease longer than heartbeat timeout", func(c *Config) { c.LeaseDuration = c.HeartbeatTimeout + time.Millisecond }, "LeaseDuration"},
		{"zero lease", func(c *Config) { c.LeaseDuration = 0 }, "LeaseDuration"},
		{"drift not below lease", func(c *Config) { c.LeaseDriftMargin = c.LeaseDuration }, "LeaseDriftMargin"},
		{"negative drift", func(c *Config) { c.LeaseDriftMargin = -time.Millisecond }, "LeaseDriftMargin"},
		{"negative rank step", func(c *Config) { c.FailoverRankStep = -time.Millisecond }, "FailoverRankStep"},
		{"zero redial timeout", func(c *Config) { c.RedialTimeout = 0 }, "RedialTimeout"},
		{"zero confirm timeout", func(c *Config) { c.ConfirmTimeout = 0 }, "ConfirmTimeout"},
		{"no snapshots retained", func(c *Config) { c.SnapshotRetain = 0 }, "SnapshotRetain"},
		{"election below heartbeat (raft)", func(c *Config) { c.ElectionTimeout = c.HeartbeatTimeout / 2 }, "ElectionTimeout"},
		{"raft lease above heartbeat (raft)", func(c *Config) {
			c.LeaderLeaseTimeout = c.HeartbeatTimeout + time.Millisecond
		}, "LeaderLeaseTimeout"},
		{"heartbeat too low (raft)", func(c *Config) {
			c.HeartbeatTimeout, c.LeaseDuration, c.LeaseDriftMargin, c.LeaderLeaseTimeout = time.Millisecond, time.Millisecond, 0, time.Millisecond
		}, "HeartbeatTimeout"},
		{"commit timeout too low (raft)", func(c *Config) { c.CommitTimeout = 0 }, "CommitTimeout"},
		{"bootstrap duplicate id", func(c *Config) { c.Bootstrap[1].ID = "n1" }, "duplicate ID"},
		{"bootstrap duplicate address", func(c *Config) { c.Bootstrap[1].Address = "a:1" }, "duplicate Address"},
		{"bootstrap empty address", func(c *Config) { c.Bootstrap[0].Address = "" }, "empty Address"},
		{"bootstrap empty id", func(c *Config) { c.Bootstrap[0].ID = "" }, "empty ID"},
		{"bootstrap without voters", func(c *Config) { c.Bootstrap[0].Voter, c.Bootstrap[1].Voter = false, false }, "no voter"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := validConfig()
			cfg.Bootstrap = append([]Peer(nil), cfg.Bootstrap...)
			tc.mutate(&cfg)
			err := cfg.Validate()
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Validate = %v, want ErrInvalidConfig", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %q, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestValidateFastFailoverOff(t *testing.T) {
	cfg := validConfig()
	cfg.FastFailover = false
	cfg.ErrPeerClosed, cfg.ErrGoodbye, cfg.RedialTimeout = nil, nil, 0
	if err := cfg.Validate(); err != nil {
		t.Fatalf("hold settings are only needed with FastFailover: %v", err)
	}
}

func TestDefaultsHoldLeaseRule(t *testing.T) {
	d := DefaultConfig()
	if d.LeaseDuration > d.HeartbeatTimeout || d.LeaderLeaseTimeout > d.HeartbeatTimeout || d.ElectionTimeout < d.HeartbeatTimeout {
		t.Fatalf("defaults break the timing rules: %+v", d)
	}
	rc := validConfig().raftConfig()
	if rc.PreVoteDisabled {
		t.Fatal("pre-vote disabled in the raft config")
	}
}

func TestNotLeaderError(t *testing.T) {
	var err error = &NotLeaderError{LeaderID: "n2", LeaderAddr: "h:2"}
	if !errors.Is(err, ErrNotLeader) {
		t.Fatal("NotLeaderError is not ErrNotLeader")
	}
	if !strings.Contains(err.Error(), "n2") || !strings.Contains(err.Error(), "h:2") {
		t.Fatalf("message %q does not name the leader", err)
	}
	if errors.Is(err, ErrNoLeader) {
		t.Fatal("NotLeaderError naming a leader matches ErrNoLeader")
	}
	var none error = &NotLeaderError{}
	if !errors.Is(none, ErrNotLeader) || !errors.Is(none, ErrNoLeader) {
		t.Fatal("NotLeaderError without a leader should match ErrNotLeader and ErrNoLeader")
	}
}
