package api

import (
	"context"
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// StreamLimitConfig configures a StreamLimiter.
type StreamLimitConfig struct {
	// Max is the number of streams open at once on the server (every
	// streaming RPC: watches, keep-alives, health watches); one more is
	// refused with ResourceExhausted. Required (> 0).
	Max int
	// PerClient is the number of streams one client (ClientKey) may have
	// open at once; at most Max. Required (> 0).
	PerClient int
	// ClientKey names the client of a call (its authenticated identity and
	// address). Required.
	ClientKey func(ctx context.Context) string
	// Registerer receives heartbeat_watches_open and
	// heartbeat_watches_refused_total; nil: not registered.
	Registerer prometheus.Registerer
}

// StreamLimiter caps the streams open at once on a gRPC server, in all and
// per client (StreamInterceptor). A stream costs a handful of goroutines and
// some memory for as long as it stays open, while opening one costs the
// client nearly nothing: without a cap, a client could open them until the
// node runs out of memory. Safe for concurrent use.
type StreamLimiter struct {
	cfg     StreamLimitConfig
	open    prometheus.Gauge
	refused *prometheus.CounterVec

	mu        sync.Mutex
	total     int
	perClient map[string]int
}

// NewStreamLimiter validates cfg and returns a limiter.
func NewStreamLimiter(cfg StreamLimitConfig) (*StreamLimiter, error) {
	switch {
	case cfg.Max <= 0 || cfg.PerClient <= 0:
		return nil, fmt.Errorf("%w: stream limits: Max %d and PerClient %d must be positive", ErrInvalidConfig, cfg.Max, cfg.PerClient)
	case cfg.PerClient > cfg.Max:
		return nil, fmt.Errorf("%w: stream limits: PerClient %d is above Max %d", ErrInvalidConfig, cfg.PerClient, cfg.Max)
	case cfg.ClientKey == nil:
		return nil, fmt.Errorf("%w: stream limits: ClientKey is required", ErrInvalidConfig)
	}
	l := &StreamLimiter{cfg: cfg, perClient: map[string]int{}}
	l.open = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "heartbeat_watches_open",
		Help: "Streams (watches, keep-alives; SSE watches of the HTTP port included) open now on the client port.",
	})
	l.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "heartbeat_watches_refused_total",
		Help: "Streams refused on the client port for a limit: node (MaxWatches) or client (MaxWatchesPerClient).",
	}, []string{"limit"})
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{l.open, l.refused} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("api: stream limit metrics: %w", err)
			}
		}
	}
	return l, nil
}

// Open is the number of streams open now.
func (l *StreamLimiter) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// acquire takes a place for a stream of client, or answers
// ResourceExhausted naming the limit reached.
func (l *StreamLimiter) acquire(client string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.total >= l.cfg.Max:
		l.refused.WithLabelValues("node").Inc()
		return status.Errorf(codes.ResourceExhausted,
			"too many watches (streams) open on this node (%d, the most allowed; MaxWatches, --max-watches): close some or try another node", l.total)
	case l.perClient[client] >= l.cfg.PerClient:
		l.refused.WithLabelValues("client").Inc()
		return status.Errorf(codes.ResourceExhausted,
			"too many watches (streams) open on this node for client %s (%d, the most allowed per client; MaxWatchesPerClient, --max-watches-per-client): close some", client, l.perClient[client])
	}
	l.total++
	l.perClient[client]++
	l.open.Set(float64(l.total))
	return nil
}

// release gives back a place taken by acquire.
func (l *StreamLimiter) release(client string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.perClient[client]--; l.perClient[client] <= 0 {
		delete(l.perClient, client)
	}
	l.open.Set(float64(l.total))
}

// StreamInterceptor holds a place for every stream while its handler runs;
// a stream over a limit is refused before its handler starts. Chain it
// after the authorizer, so that refused callers take no place.
func (l *StreamLimiter) StreamInterceptor(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	client := l.cfg.ClientKey(ss.Context())
	if err := l.acquire(client); err != nil {
		return err
	}
	defer l.release(client)
	return handler(srv, ss)
}
