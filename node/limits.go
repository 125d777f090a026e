package node

import (
	"net/http"
	"time"
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
	// DefaultMaxWatches is Config.MaxWatches's default (see README
	// "Limits" for the measurement behind it).
	DefaultMaxWatches = 2048
	// DefaultMaxWatchesPerClient is Config.MaxWatchesPerClient's default.
	DefaultMaxWatchesPerClient = 256
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
