package main

import (
	"errors"
	"io"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/pki"
)

func TestParseFlags(t *testing.T) {
	cfg, err := parseFlags([]string{"--sidecar", "127.0.0.1:7411", "--peers", "127.0.0.1:7421, 127.0.0.1:7431",
		"--ledger", "/tmp/x", "--shard-ledgers", "/tmp/s", "--ttl", "6s", "--work-interval", "1s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"127.0.0.1:7411", "127.0.0.1:7421", "127.0.0.1:7431"}; !slices.Equal(cfg.Endpoints, want) {
		t.Errorf("Endpoints = %v; want %v (local sidecar first)", cfg.Endpoints, want)
	}
	if cfg.LedgerPath != "/tmp/x" || cfg.ShardLedgers != "/tmp/s" || cfg.TTL != 6*time.Second || cfg.WorkInterval != time.Second || cfg.LeaderInterval != time.Second {
		t.Errorf("cfg = %+v", cfg)
	}

	for _, args := range [][]string{
		{"--ttl", "10ms"},
		{"--log-level", "loud"},
		{"--ledger", ""},
		{"extra"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) accepted a bad command line", args)
		}
	}
	if _, err := parseFlags([]string{"--ttl", "10ms"}, io.Discard); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("bad ttl: %v; want ErrInvalidConfig", err)
	}
}

func TestParseFlagsTLS(t *testing.T) {
	for _, v := range []string{"HEARTBEAT_CACERT", "HEARTBEAT_CERT", "HEARTBEAT_KEY"} {
		t.Setenv(v, "")
	}
	dir := t.TempDir()
	if _, err := pki.Init(pki.InitOptions{Dir: dir, Cluster: "c1", Nodes: []string{"n1"},
		Clients: []pki.ClientSpec{{Name: "worker", Roles: []pki.Role{pki.RoleWrite}}}}); err != nil {
		t.Fatal(err)
	}
	ca, cert, key := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "worker.pem"), filepath.Join(dir, "worker-key.pem")

	cfg, err := parseFlags([]string{"--cacert", ca, "--cert", cert, "--key", key}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TLS == nil || cfg.TLS.GetClientCertificate == nil {
		t.Fatalf("TLS = %+v; want a client config with the worker's certificate", cfg.TLS)
	}
	if cfg, err := parseFlags(nil, io.Discard); err != nil || cfg.TLS != nil {
		t.Errorf("no TLS flags: TLS = %v, err %v; want plaintext", cfg.TLS, err)
	}

	// The environment stands for the flags (docker-compose.worker.yml).
	t.Setenv("HEARTBEAT_CACERT", ca)
	t.Setenv("HEARTBEAT_CERT", cert)
	t.Setenv("HEARTBEAT_KEY", key)
	if cfg, err := parseFlags(nil, io.Discard); err != nil || cfg.TLS == nil {
		t.Errorf("TLS from the environment: TLS = %v, err %v", cfg.TLS, err)
	}

	for _, args := range [][]string{
		{"--cert", "", "--key", ""},                      // --cacert alone
		{"--cacert", ca, "--cert", cert, "--key", ca},    // not a key
		{"--cacert", cert, "--cert", cert, "--key", key}, // not the CA
		{"--cacert", ca, "--cert", cert, "--key", "/nonexistent"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) accepted bad TLS flags", args)
		}
	}
}
