package client

import (
	"fmt"
	"strings"
	"testing"

	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
)

// TestLargeListing: a listing larger than gRPC's default 4 MiB receive
// limit arrives: the client accepts what a node sends
// (heartbeatpb.MaxResponseBytes). Before, it failed with "received message
// larger than max".
func TestLargeListing(t *testing.T) {
	c := startCluster(t, 1)
	cl := newClient(t, c.Leader())
	ctx := testcluster.Context(t)
	const batches, perBatch = 4, 5000
	for b := range batches {
		specs := make([]ResourceSpec, perBatch)
		for i := range specs {
			num := fmt.Sprintf("-%d-%05d", b, i)
			specs[i] = ResourceSpec{ID: "r" + strings.Repeat("x", 250-len(num)) + num}
		}
		if _, err := cl.Register(ctx, specs...); err != nil {
			t.Fatalf("batch %d: %v", b, err)
		}
	}
	l, err := cl.Resources(ctx)
	if err != nil {
		t.Fatalf("listing %d resources of 250-byte ids: %v", batches*perBatch, err)
	}
	if len(l.Resources) != batches*perBatch {
		t.Fatalf("listing holds %d resources, want %d", len(l.Resources), batches*perBatch)
	}
}
