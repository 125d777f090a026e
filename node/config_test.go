package node

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/election"
)

func TestConfigValidate(t *testing.T) {
	peers := []election.Peer{{ID: "n1", Address: "127.0.0.1:7410", Voter: true}, {ID: "n2", Address: "127.0.0.1:7420", Voter: true}}
	ok := DefaultConfig()
	ok.ID, ok.DataDir, ok.InitialCluster = "n1", "/tmp/x", peers
	tests := []struct {
		name string
		edit func(*Config)
		want string // "" = valid
	}{
		{"valid", func(*Config) {}, ""},
		{"single node", func(c *Config) { c.InitialCluster = nil }, ""},
		{"missing id", func(c *Config) { c.ID = "" }, "ID is empty"},
		{"id with comma", func(c *Config) { c.ID = "a,b" }, "may not contain"},
		{"id climbs out of data/", func(c *Config) { c.ID, c.InitialCluster = "../x", nil }, "not a safe file name"},
		{"id is a path", func(c *Config) { c.ID, c.InitialCluster = "a/b", nil }, "not a safe file name"},
		{"id is root", func(c *Config) { c.ID, c.InitialCluster = "/", nil }, "not a safe file name"},
		{"id is dot", func(c *Config) { c.ID, c.InitialCluster = ".", nil }, "not a safe file name"},
		{"id is dot dot", func(c *Config) { c.ID, c.InitialCluster = "..", nil }, "not a safe file name"},
		{"id with backslash", func(c *Config) { c.ID, c.InitialCluster = `..\x`, nil }, "not a safe file name"},
		{"id with NUL", func(c *Config) { c.ID, c.InitialCluster = "n\x001", nil }, "not a safe file name"},
		{"id with control character", func(c *Config) { c.ID, c.InitialCluster = "n\x1b1", nil }, "not a safe file name"},
		{"id with invalid UTF-8", func(c *Config) { c.ID, c.InitialCluster = "n\xff", nil }, "not a safe file name"},
		{"id with dots inside", func(c *Config) { c.ID, c.InitialCluster = "n1..a.b", nil }, ""},
		{"missing data dir", func(c *Config) { c.DataDir = "" }, "DataDir"},
		{"missing cluster", func(c *Config) { c.ClusterID = "" }, "ClusterID"},
		{"bad peer addr", func(c *Config) { c.PeerAddr = "localhost" }, "PeerAddr"},
		{"bad port", func(c *Config) { c.HTTPAddr = "127.0.0.1:http-ish" }, "HTTPAddr"},
		{"wildcard advertise", func(c *Config) { c.AdvertisePeerAddr = "0.0.0.0:7400" }, "wildcard"},
		{"wildcard bind without advertise", func(c *Config) { c.PeerAddr = "0.0.0.0:7400" }, "set AdvertisePeerAddr"},
		{"empty host bind without advertise", func(c *Config) { c.PeerAddr = ":7400" }, "set AdvertisePeerAddr"},
		{"wildcard bind with advertise", func(c *Config) {
			c.PeerAddr, c.AdvertisePeerAddr, c.Insecure = "0.0.0.0:7400", "10.0.0.1:7400", true
		}, ""},
		{"wildcard bind without TLS", func(c *Config) { c.PeerAddr, c.AdvertisePeerAddr = "0.0.0.0:7400", "10.0.0.1:7400" }, "TLS is off"},
		{"client port without TLS", func(c *Config) { c.ClientAddr = "10.0.0.1:7401" }, "ClientAddr 10.0.0.1:7401 is not a loopback address"},
		{"half TLS", func(c *Config) { c.CAFile, c.CertFile = "ca.pem", "n1.pem" }, "go together"},
		{"bad join", func(c *Config) { c.Join = []string{"nohost"} }, "Join[0]"},
		{"not in cluster", func(c *Config) { c.ID = "n9" }, "not in InitialCluster"},
		{"not in cluster but join", func(c *Config) { c.ID = "n9"; c.Join = []string{"127.0.0.1:7410"} }, ""},
		{"duplicate id", func(c *Config) {
			c.InitialCluster = append(c.InitialCluster, election.Peer{ID: "n1", Address: "127.0.0.1:7430"})
		}, "duplicate id"},
		{"duplicate address", func(c *Config) {
			c.InitialCluster = append(c.InitialCluster, election.Peer{ID: "n3", Address: "127.0.0.1:7410"})
		}, "duplicate address"},
		{"log format", func(c *Config) { c.LogFormat = "xml" }, "LogFormat"},
		{"log level", func(c *Config) { c.LogLevel = "loud" }, "LogLevel"},
		{"negative timing", func(c *Config) { c.HeartbeatTimeout = -1 }, "negative"},
		{"lease above heartbeat", func(c *Config) { c.HeartbeatTimeout, c.LeaseDuration = 100*time.Millisecond, 200*time.Millisecond }, "LeaseDuration"},
		{"lowered heartbeat alone", func(c *Config) { c.HeartbeatTimeout = 100 * time.Millisecond }, ""},
		{"drain above shutdown", func(c *Config) { c.DrainTimeout, c.ShutdownTimeout = 10*time.Second, 5*time.Second }, "DrainTimeout"},
		{"negative drain", func(c *Config) { c.DrainTimeout = -1 }, "negative"},
		{"request limit too small", func(c *Config) { c.MaxRequestBytes = MinRequestBytes - 1 }, "MaxRequestBytes"},
		{"request limit over the peer message limit", func(c *Config) { c.MaxRequestBytes = MaxMaxRequestBytes + 1 }, "MaxRequestBytes"},
		{"negative quota", func(c *Config) { c.QuotaBytes = -1 }, "QuotaBytes"},
		{"negative resource quota", func(c *Config) { c.MaxResources = -1 }, "MaxResources"},
		{"bad reconciler tick", func(c *Config) { c.Reconciler.Tick = 0 }, "Reconciler"},
		{"bad detector", func(c *Config) { c.Reconciler.Detector.DeadPhi = 1 }, "Reconciler"},
		{"id too long for membership", func(c *Config) { c.ID = strings.Repeat("n", 200); c.InitialCluster = nil }, "Reconciler"},
		{"remote health URL", func(c *Config) { c.AppHealthURL = "http://10.1.2.3/health" }, "AppHealthURL"},
		{"own-host health URL", func(c *Config) {
			c.PeerAddr, c.AdvertisePeerAddr, c.AppHealthURL = "0.0.0.0:7400", "10.1.2.3:7400", "http://10.1.2.3:8080/health"
			c.Insecure = true
		}, ""},
		{"small feed", func(c *Config) { c.Membership.FeedCapacity = 10 }, "Membership"},
		{"leader priority", func(c *Config) { p := uint32(100); c.LeaderPriority = &p }, ""},
		{"leader priority too high", func(c *Config) { p := uint32(101); c.LeaderPriority = &p }, "LeaderPriority"},
		{"short priority holdoff", func(c *Config) { c.PriorityHoldoff = time.Millisecond }, "PriorityHoldoff"},
		{"negative priority holdoff", func(c *Config) { c.PriorityHoldoff = -time.Second }, "PriorityHoldoff"},
		{"default priority holdoff", func(c *Config) { c.PriorityHoldoff = 0 }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			c.InitialCluster = append([]election.Peer(nil), ok.InitialCluster...)
			tt.edit(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want ErrInvalidConfig containing %q", err, tt.want)
			}
		})
	}
}

func TestParsePeers(t *testing.T) {
	tests := []struct {
		in      string
		want    int
		wantErr string
	}{
		{"", 0, ""},
		{"n1=127.0.0.1:7410", 1, ""},
		{" n1=127.0.0.1:7410 , n2=127.0.0.1:7420,", 2, ""},
		{"n1", 0, "want id=host:port"},
		{"=127.0.0.1:1", 0, "want id=host:port"},
		{"n1=127.0.0.1:7410,n1=127.0.0.1:7420", 0, "duplicate id"},
		{"n1=127.0.0.1", 0, "bad address"},
		{"n1=0.0.0.0:7410", 0, "wildcard"},
	}
	for _, tt := range tests {
		peers, err := ParsePeers(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParsePeers(%q) error %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || len(peers) != tt.want {
			t.Errorf("ParsePeers(%q) = %v, %v; want %d peers", tt.in, peers, err, tt.want)
		}
		for _, p := range peers {
			if !p.Voter || p.ID == "" || strings.Contains(p.Address, " ") {
				t.Errorf("ParsePeers(%q): bad peer %+v", tt.in, p)
			}
		}
	}
}

func TestElectionTimings(t *testing.T) {
	c := DefaultConfig()
	c.HeartbeatTimeout = 100 * time.Millisecond
	ec := c.electionTimings(election.DefaultConfig())
	if ec.ElectionTimeout != scale(100*time.Millisecond, election.DefaultElectionTimeout, election.DefaultHeartbeatTimeout) ||
		ec.LeaseDuration >= ec.HeartbeatTimeout || ec.LeaderLeaseTimeout > ec.HeartbeatTimeout {
		t.Errorf("derived timings: heartbeat %v election %v lease %v leader lease %v",
			ec.HeartbeatTimeout, ec.ElectionTimeout, ec.LeaseDuration, ec.LeaderLeaseTimeout)
	}
	c.ElectionTimeout, c.LeaseDuration = time.Second, 50*time.Millisecond
	ec = c.electionTimings(election.DefaultConfig())
	if ec.ElectionTimeout != time.Second || ec.LeaseDuration != 50*time.Millisecond {
		t.Errorf("explicit timings not kept: %v %v", ec.ElectionTimeout, ec.LeaseDuration)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	if _, err := New(Config{}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("New(Config{}) = %v, want ErrInvalidConfig", err)
	}
}
