package authz_test

import (
	"testing"

	"github.com/heartbeat-sidecar/heartbeat/authz"
	"github.com/heartbeat-sidecar/heartbeat/pki"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// TestSnapshotIsAdmin: a backup holds the whole state, so only an admin
// may take one (TestRoles then checks that read and write are refused).
func TestSnapshotIsAdmin(t *testing.T) {
	if got := authz.DefaultPolicy()[heartbeatpb.Coordinator_Snapshot_FullMethodName]; got != pki.RoleAdmin {
		t.Errorf("Snapshot needs role %q, want %q", got, pki.RoleAdmin)
	}
}
