package node_test

import (
	"sort"
	"testing"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
)

// TestStockGRPCTools does what grpcurl (`list`) and grpc-health-probe do
// against a node's client port: list the services by server reflection,
// and ask the standard health service, by Check and by Watch, which turns
// NOT_SERVING when the node loses its quorum.
func TestStockGRPCTools(t *testing.T) {
	c := testcluster.Start(t, 2, testcluster.Options{Wait: waitTimeout, Tweak: defaultDetector})
	n1 := c.Node("n1")
	conn := dialClient(t, n1.ClientAddr())

	// grpcurl -plaintext ADDR list
	rs, err := reflectpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Send(&reflectpb.ServerReflectionRequest{MessageRequest: &reflectpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := rs.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	sort.Strings(names)
	for _, want := range []string{"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "heartbeat.v1.Coordinator"} {
		if i := sort.SearchStrings(names, want); i == len(names) || names[i] != want {
			t.Errorf("reflection lists %v, missing %s", names, want)
		}
	}
	_ = rs.CloseSend()

	// grpc-health-probe -addr ADDR (Check of the server's overall status)
	// and a Watch, which a load balancer uses.
	health := healthpb.NewHealthClient(conn)
	checkHealth(t, n1, healthpb.HealthCheckResponse_SERVING)
	watch, err := health.Watch(ctxT(t), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := watch.Recv(); err != nil || ev.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first health watch event: %v %v", ev, err)
	}
	if _, err := health.Check(ctxT(t), &healthpb.HealthCheckRequest{Service: "no.such.Service"}); err == nil {
		t.Errorf("health check of an unknown service: no error")
	}

	// n2 goes away: n1 alone has no quorum and must stop saying SERVING.
	c.Kill("n2")
	for {
		ev, err := watch.Recv()
		if err != nil {
			t.Fatalf("health watch after losing the quorum: %v", err)
		}
		if ev.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING {
			break
		}
	}
	checkHealth(t, n1, healthpb.HealthCheckResponse_NOT_SERVING)
}
