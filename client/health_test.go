package client

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// serveHealth serves only gRPC's standard health service, at st, on a
// loopback port, until the test ends; it returns the address.
func serveHealth(t *testing.T, st healthpb.HealthCheckResponse_ServingStatus) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("", st)
	healthpb.RegisterHealthServer(srv, hs)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return lis.Addr().String()
}

// TestHealth: Health reports the local endpoint's serving status (NOT_SERVING
// is an answer, not an error), and fails with Unavailable, once its context
// ends, when nothing listens there.
func TestHealth(t *testing.T) {
	for _, tc := range []struct {
		name    string
		addr    string
		want    Health
		wantErr codes.Code
	}{
		{name: "serving", addr: serveHealth(t, healthpb.HealthCheckResponse_SERVING), want: Health{Status: "SERVING", Serving: true}},
		{name: "not serving", addr: serveHealth(t, healthpb.HealthCheckResponse_NOT_SERVING), want: Health{Status: "NOT_SERVING"}},
		{name: "unreachable", addr: deadAddr(t), wantErr: codes.Unavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The local endpoint is the only one asked: a live second
			// endpoint must not answer for a dead first one.
			other := serveHealth(t, healthpb.HealthCheckResponse_SERVING)
			cl := newClientAt(t, tc.addr, other)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			h, err := cl.Health(ctx)
			if tc.wantErr != codes.OK {
				if err == nil || status.Code(err) != tc.wantErr {
					t.Fatalf("Health of %s = %+v, %v; want code %v", tc.addr, h, err, tc.wantErr)
				}
				return
			}
			tc.want.Endpoint = tc.addr
			if err != nil || h != tc.want {
				t.Fatalf("Health = %+v, %v; want %+v", h, err, tc.want)
			}
		})
	}
}
