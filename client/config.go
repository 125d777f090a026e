package client

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
)

// Sentinel errors; errors from this package wrap them with %w. Errors that
// come from a server keep their gRPC status instead (status.Code works).
var (
	// ErrInvalidConfig wraps every Config.Validate failure; the message names
	// the field.
	ErrInvalidConfig = errors.New("client: invalid config")
	// ErrClosed is returned by calls made after (or cut short by) Close.
	ErrClosed = errors.New("client: closed")
)

// Backoff bounds the pause between two attempts of a call or two
// reconnections of a watch: it starts at Min, doubles up to Max, and each
// pause is jittered by up to a fifth (so that many clients do not retry in
// step).
type Backoff struct {
	// Min is the first pause. Default 50ms.
	Min time.Duration
	// Max caps the pause. Default 1s: a leader change takes about a second at
	// the sidecar's default timings, and a client should notice the new leader
	// soon after it exists.
	Max time.Duration
}

// Config configures a Client. Start from DefaultConfig and set Endpoints.
type Config struct {
	// Endpoints are client (gRPC) addresses of sidecars, host:port.
	// Endpoints[0] is the LOCAL sidecar: the node the application runs
	// beside. Calls about "this node" (Status, IsLeader, AppHeartbeat, Leave,
	// RunWhileLeader) go to it alone; reads and watches start there and move
	// on to the others when it is unreachable; writes start where the last
	// write succeeded and follow the leader. Required, no duplicates.
	Endpoints []string
	// TLS, when set, is the TLS configuration of every connection (to the
	// endpoints and to the leader addresses the client learns); nil:
	// plaintext. TLSConfigFromFiles makes one from the files of
	// `heartbeat tls init`: the cluster CA, and the client's certificate
	// and key or none (with Token).
	TLS *tls.Config
	// Token, when set, is sent as "authorization: Bearer <token>" with
	// every call and stream, for sidecars that let callers in by token
	// (their --tokens-file). Without TLS it would travel in the clear, so
	// it is allowed only to loopback addresses (localhost, 127.0.0.0/8,
	// ::1): Validate refuses other endpoints, and a call to a learned
	// non-loopback address over plaintext fails with Unauthenticated
	// rather than send it. Printable ASCII without spaces.
	Token string
	// DialOptions are passed to grpc.NewClient for every endpoint (and for
	// leader addresses the client learns). They come after the client's own
	// transport credentials (TLS or plaintext) and connect parameters, so
	// they can override them.
	DialOptions []grpc.DialOption
	// DialTimeout bounds one connection attempt to an endpoint (gRPC's
	// MinConnectTimeout), and the wait for a connection before a call that
	// must not be repeated (StepDown). Default 2s.
	DialTimeout time.Duration
	// CallTimeout bounds one attempt of a unary call (the call as a whole is
	// bounded by its context only: it retries until that ends). A slow
	// attempt is abandoned and retried elsewhere, so keep it well above the
	// time a write takes to commit (a forwarded write waits up to a few
	// seconds while a leader is elected). Default 5s. Leave is not bounded by
	// it (a drain takes a while).
	CallTimeout time.Duration
	// RetryBackoff paces the attempts of a call and the reconnections of a
	// watch. Defaults: see Backoff.
	RetryBackoff Backoff
	// KeepAliveInterval is how often RunWhileLeader and RunWhileOwner ask the
	// local sidecar for their leases (the KeepAlive stream). Each answer
	// renews the lease on this process's own monotonic clock from the moment
	// the request was SENT, for the time the sidecar said was left; work is
	// cancelled when that runs out without a renewal. Keep it well below the
	// sidecar's leases (200 ms for leadership, 250 ms for ownership, by
	// default) so that nothing stops in a healthy cluster: a renewal reaches
	// the client at most this long after the sidecar got it. Default 25ms.
	KeepAliveInterval time.Duration
	// LeaseMargin is taken off every lease the client computes, for the
	// difference in clock rates and the time fn takes to notice its context
	// is cancelled. Default 20ms.
	LeaseMargin time.Duration
	// UnsafeNoLeaseTimer disables the client's lease timer: work is then
	// cancelled only when the sidecar says so or the stream breaks, so a
	// paused or cut-off sidecar lets it run past its lease. It exists only
	// for tests that must show a checker catching the overlap that follows;
	// never set it in an application.
	UnsafeNoLeaseTimer bool
	// Logger receives reconnections and retries at debug level and lost
	// leadership at info. nil: discarded.
	Logger hclog.Logger
}

// DefaultConfig returns the defaults: plaintext without a token, DialTimeout 2s, CallTimeout
// 5s, backoff 50ms..1s, keep-alive every 25ms with a 20ms lease margin, no
// logger. Endpoints must be set.
func DefaultConfig() Config {
	return Config{
		DialTimeout:       2 * time.Second,
		CallTimeout:       5 * time.Second,
		RetryBackoff:      Backoff{Min: 50 * time.Millisecond, Max: time.Second},
		KeepAliveInterval: 25 * time.Millisecond,
		LeaseMargin:       20 * time.Millisecond,
	}
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
}

// Validate checks the config: at least one endpoint, each host:port with a
// host and a port and none twice, no negative duration, backoff Min <= Max,
// a Token that can go in a header and, without TLS, only loopback endpoints
// with a Token. Zero durations are allowed: New replaces them with the
// defaults.
func (c Config) Validate() error {
	if len(c.Endpoints) == 0 {
		return invalid("Endpoints is empty: give at least the local sidecar's client address")
	}
	seen := map[string]bool{}
	for i, e := range c.Endpoints {
		host, port, err := net.SplitHostPort(e)
		switch {
		case err != nil:
			return invalid("Endpoints[%d] %q: %v", i, e, err)
		case host == "" || port == "" || port == "0":
			return invalid("Endpoints[%d] %q: want host:port with a host and a non-zero port", i, e)
		case seen[e]:
			return invalid("Endpoints[%d] %q is listed twice", i, e)
		}
		seen[e] = true
	}
	if c.Token != "" {
		if err := checkToken(c.Token); err != nil {
			return invalid("Token: %v", err)
		}
		if c.TLS == nil {
			for i, e := range c.Endpoints {
				if !isLoopback(e) {
					return invalid("Token without TLS: Endpoints[%d] %q is not a loopback address, and the token would travel to it in the clear; set TLS (TLSConfigFromFiles with the cluster's CA)", i, e)
				}
			}
		}
	}
	switch {
	case c.DialTimeout < 0 || c.CallTimeout < 0:
		return invalid("DialTimeout and CallTimeout may not be negative")
	case c.KeepAliveInterval < 0 || c.LeaseMargin < 0:
		return invalid("KeepAliveInterval and LeaseMargin may not be negative")
	case c.RetryBackoff.Min < 0 || c.RetryBackoff.Max < 0:
		return invalid("RetryBackoff may not be negative")
	case c.RetryBackoff.Max > 0 && c.RetryBackoff.Min > c.RetryBackoff.Max:
		return invalid("RetryBackoff.Min %v is above Max %v", c.RetryBackoff.Min, c.RetryBackoff.Max)
	}
	return nil
}

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.DialTimeout == 0 {
		c.DialTimeout = d.DialTimeout
	}
	if c.CallTimeout == 0 {
		c.CallTimeout = d.CallTimeout
	}
	if c.RetryBackoff.Min == 0 {
		c.RetryBackoff.Min = min(d.RetryBackoff.Min, max(c.RetryBackoff.Max, time.Millisecond))
	}
	if c.RetryBackoff.Max == 0 {
		c.RetryBackoff.Max = max(d.RetryBackoff.Max, c.RetryBackoff.Min)
	}
	if c.KeepAliveInterval == 0 {
		c.KeepAliveInterval = d.KeepAliveInterval
	}
	if c.LeaseMargin == 0 {
		c.LeaseMargin = d.LeaseMargin
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	return c
}
