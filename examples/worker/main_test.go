package main

import (
	"errors"
	"io"
	"slices"
	"testing"
	"time"
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
