package gateway_test

import (
	"context"
	"io"
	"net/http"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// BenchmarkStatus: what the HTTP face costs over the gRPC call it makes.
// One node; GET /v1/status?stale over HTTP/1.1 keep-alive against
// Coordinator.GetStatus (stale) over gRPC, in one run, so that the two can
// be compared as a ratio:
//
//	go test -run XXX -bench Status -benchtime 3000x ./gateway/
func BenchmarkStatus(b *testing.B) {
	c := testcluster.Start(b, 1, testcluster.Options{})
	n := c.Leader()
	b.Run("grpc", func(b *testing.B) {
		cc, err := grpc.NewClient(n.ClientAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		defer cc.Close()
		co := heartbeatpb.NewCoordinatorClient(cc)
		req := &heartbeatpb.GetStatusRequest{Consistency: heartbeatpb.Consistency_CONSISTENCY_STALE}
		if _, err := co.GetStatus(context.Background(), req); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := co.GetStatus(context.Background(), req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("http", func(b *testing.B) {
		tr := &http.Transport{MaxIdleConnsPerHost: 1}
		defer tr.CloseIdleConnections()
		hc := &http.Client{Transport: tr}
		url := "http://" + n.HTTPAddr() + "/v1/status?stale"
		get := func() {
			resp, err := hc.Get(url)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
		get()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			get()
		}
	})
}
