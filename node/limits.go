package node

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/heartbeat-sidecar/heartbeat/rpc/api"
)

// Connection and stream limits of the node's ports (issue 13; README
// "Limits"). The peer port's are the transport's (transport.Config).
const (
	// DefaultHTTPReadHeaderTimeout is Config.HTTPReadHeaderTimeout's default.
	DefaultHTTPReadHeaderTimeout = 5 * time.Second
	// DefaultHTTPReadTimeout is Config.HTTPReadTimeout's default: a request
	// body within the gateway's size limit arrives in far less, even over a
	// slow link; a client that trickles it (slowloris) is cut.
	DefaultHTTPReadTimeout = 30 * time.Second
	// DefaultHTTPIdleTimeout is Config.HTTPIdleTimeout's default: below the
	// 90s after which Go's own HTTP clients drop an idle connection, so
	// the server closes first and the client sees it before reuse.
	DefaultHTTPIdleTimeout = 60 * time.Second
	// DefaultHTTPMaxHeaderBytes is Config.HTTPMaxHeaderBytes's default: a
	// request's headers (a bearer token, a Last-Event-ID) fit many times.
	DefaultHTTPMaxHeaderBytes = 64 << 10
	// DefaultMaxWatches is Config.MaxWatches's default. Measured
	// (TestWatchCost, HEARTBEAT_WATCH_COST_N=1000): an SSE watch costs the
	// node 5-6 goroutines and 9-100 KiB of heap and stacks, a gRPC watch
	// 1-2 goroutines; a leader watch also sends a renewal every 50ms while
	// the node leads (1000 of them starved a loaded 2-core machine). 1024
	// SSE watches: about 6,000 goroutines and at most ~100 MB.
	DefaultMaxWatches = 1024
	// DefaultMaxWatchesPerClient is Config.MaxWatchesPerClient's default.
	DefaultMaxWatchesPerClient = 256

	// clientStreamHeadroom is how many streams one client-port connection
	// may carry beyond MaxWatches (its MaxConcurrentStreams): the gateway's
	// one connection carries every SSE watch and every HTTP call, and a
	// call beyond the connection's limit waits for a free stream.
	clientStreamHeadroom = 1024
	// ClientKeepaliveMinTime is the shortest interval between a client's
	// keepalive pings the client port accepts (gRPC's
	// keepalive.EnforcementPolicy; pings with no stream open are allowed):
	// a client pinging more often is sent GOAWAY "too_many_pings". etcd's
	// default. The node's own clients send no keepalive pings.
	ClientKeepaliveMinTime = 5 * time.Second
	// clientMaxConnectionIdle closes a client-port connection that has had
	// no call for this long (a client reconnects on its next call).
	clientMaxConnectionIdle = 5 * time.Minute
	// clientPingIdle and clientPingTimeout: the client port pings a
	// connection idle this long and closes it when the ping is not answered
	// in time (a vanished client's watches end).
	clientPingIdle    = 30 * time.Second
	clientPingTimeout = 10 * time.Second
)

// validateLimits checks the connection and stream limits (zero: default).
func (c Config) validateLimits() error {
	switch {
	case c.HTTPReadHeaderTimeout < 0 || c.HTTPReadTimeout < 0 || c.HTTPIdleTimeout < 0:
		return invalid("HTTPReadHeaderTimeout, HTTPReadTimeout and HTTPIdleTimeout may not be negative (0: the default)")
	case c.HTTPMaxHeaderBytes < 0:
		return invalid("HTTPMaxHeaderBytes %d may not be negative (0: the default)", c.HTTPMaxHeaderBytes)
	case c.MaxWatches < 0 || c.MaxWatchesPerClient < 0:
		return invalid("MaxWatches and MaxWatchesPerClient may not be negative (0: the default)")
	case c.MaxWatches > 0 && c.MaxWatchesPerClient > c.MaxWatches:
		return invalid("MaxWatchesPerClient %d is above MaxWatches %d", c.MaxWatchesPerClient, c.MaxWatches)
	}
	return nil
}

// orDefault returns v, or def when v is zero.
func orDefault[T int | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// newHTTPServer is an HTTP server of the node (the HTTP port, the metrics
// port) serving h within the configured limits. No WriteTimeout: it would
// end every SSE watch; a stalled reader of a stream is cut by the gateway's
// per-write bound (gateway.Config.SSEWriteTimeout).
func (n *Node) newHTTPServer(h http.Handler) *http.Server {
	c := n.cfg
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: orDefault(c.HTTPReadHeaderTimeout, DefaultHTTPReadHeaderTimeout),
		// The whole request, headers and body. Once the body has been read
		// the server lifts the deadline (net/http's background read), so a
		// stream (an SSE watch, a long response) is not bounded by it.
		ReadTimeout:    orDefault(c.HTTPReadTimeout, DefaultHTTPReadTimeout),
		IdleTimeout:    orDefault(c.HTTPIdleTimeout, DefaultHTTPIdleTimeout),
		MaxHeaderBytes: orDefault(c.HTTPMaxHeaderBytes, DefaultHTTPMaxHeaderBytes),
	}
}

// setupLimits builds the client port's cap on open streams; it needs the
// authorizer (setupSecurity), which names the client of a call.
func (n *Node) setupLimits() error {
	l, err := api.NewStreamLimiter(api.StreamLimitConfig{
		Max:        orDefault(n.cfg.MaxWatches, DefaultMaxWatches),
		PerClient:  orDefault(n.cfg.MaxWatchesPerClient, DefaultMaxWatchesPerClient),
		ClientKey:  func(ctx context.Context) string { return n.authz.ClientKey(ctx) },
		Registerer: n.registry,
	})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	n.watches = l
	return nil
}

// clientLimitOptions are the client port's connection limits: streams per
// connection, keepalive enforcement and idle connections.
func (n *Node) clientLimitOptions() []grpc.ServerOption {
	streams := min(orDefault(n.cfg.MaxWatches, DefaultMaxWatches)+clientStreamHeadroom, math.MaxUint32)
	return []grpc.ServerOption{
		grpc.MaxConcurrentStreams(uint32(streams)), //nolint:gosec // bounded just above
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: ClientKeepaliveMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle: clientMaxConnectionIdle,
			Time:              clientPingIdle,
			Timeout:           clientPingTimeout,
		}),
	}
}
