package client

import (
	"context"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// Health is the answer of a sidecar's gRPC health service (grpc.health.v1).
type Health struct {
	// Status is the service's serving status as gRPC names it: SERVING,
	// NOT_SERVING, UNKNOWN or SERVICE_UNKNOWN.
	Status string
	// Serving: Status is SERVING, which a sidecar says once it is ready (it
	// knows a leader and its membership record is committed).
	Serving bool
	// Endpoint is the address of the node that answered: the local sidecar.
	Endpoint string
}

// Health asks the LOCAL sidecar's gRPC health service (the server's overall
// status, service ""). An answer of NOT_SERVING is an answer, not an error:
// check Health.Serving. Like every call it is retried while the sidecar is
// unreachable, until ctx ends: give ctx a short deadline for a probe.
func (c *Client) Health(ctx context.Context) (Health, error) {
	var out Health
	err := c.invoke(ctx, callSpec{name: "health", route: routeLocal}, func(ctx context.Context, _ heartbeatpb.CoordinatorClient, addr string) error {
		cc, err := c.conn(addr)
		if err != nil {
			return err
		}
		resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			return err
		}
		out = Health{
			Status:   resp.GetStatus().String(),
			Serving:  resp.GetStatus() == healthpb.HealthCheckResponse_SERVING,
			Endpoint: addr,
		}
		return nil
	})
	return out, err
}
