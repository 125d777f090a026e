package main

import (
	"testing"

	"github.com/heartbeat-sidecar/heartbeat/node"
)

// configView adds a comparison helper to a node.Config.
type configView struct{ node.Config }

func (configView) want(t *testing.T, field, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %q, want %q", field, got, want)
	}
}
