package client

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/heartbeat-sidecar/heartbeat/internal/retry"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// Client talks to Heartbeat sidecars over their Coordinator gRPC service. It
// is safe for concurrent use. Build it with New; Close it to end every watch
// and connection.
type Client struct {
	cfg  Config
	dial []grpc.DialOption

	root     context.Context // ends on Close: every call and watch derives from it
	rootStop context.CancelFunc

	mu          sync.Mutex
	closed      bool
	wg          sync.WaitGroup              // watch goroutines
	conns       map[string]*grpc.ClientConn // by address; nil once closed
	writeTarget string                      // where the last write succeeded
	localID     string                      // id of the node at Endpoints[0], once learned
	clientAddrs map[string]string           // node id and peer address -> client address
}

// New validates cfg and returns a client. It dials nothing yet: connections
// open on first use (and reopen by themselves after a failure).
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	cfg.Endpoints = append([]string(nil), cfg.Endpoints...)
	creds := insecure.NewCredentials()
	if cfg.TLS != nil {
		creds = credentials.NewTLS(cfg.TLS) // a clone: later changes to cfg.TLS are not seen
	}
	dial := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		// A node answers up to heartbeatpb.MaxResponseBytes (a listing of
		// every resource can pass gRPC's default 4 MiB by far).
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(heartbeatpb.MaxResponseBytes)),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  cfg.RetryBackoff.Min,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   cfg.RetryBackoff.Max,
			},
			MinConnectTimeout: cfg.DialTimeout,
		}),
	}
	dial = append(dial, cfg.DialOptions...)
	c := &Client{
		cfg:         cfg,
		dial:        dial,
		conns:       make(map[string]*grpc.ClientConn),
		writeTarget: cfg.Endpoints[0],
		clientAddrs: make(map[string]string),
	}
	c.root, c.rootStop = context.WithCancel(context.Background())
	return c, nil
}

// Close ends every watch (their channels close; Close waits for their
// goroutines), cancels the context of a running RunWhileLeader fn (that call
// then returns ErrClosed once fn has returned), fails calls in flight, and
// closes the connections. Calls after Close fail with ErrClosed. Safe to
// call more than once.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.rootStop()
	c.wg.Wait()
	c.mu.Lock()
	conns := c.conns
	c.conns = nil
	c.mu.Unlock()
	var errs []error
	for addr, cc := range conns {
		if err := cc.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close connection to %s: %w", addr, err))
		}
	}
	return errors.Join(errs...)
}

// Endpoints returns the configured endpoints; the first is the local sidecar.
func (c *Client) Endpoints() []string { return append([]string(nil), c.cfg.Endpoints...) }

// local is the local sidecar's address.
func (c *Client) local() string { return c.cfg.Endpoints[0] }

// spawn runs f in a goroutine that Close waits for; false (f not run) once
// the client is closed.
func (c *Client) spawn(f func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		f()
	}()
	return true
}

// scope derives a context that ends with ctx or with Close. The caller must
// call the returned cancel function.
func (c *Client) scope(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(c.root, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}

// isClosed reports whether Close has been called.
func (c *Client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// conn returns the connection to addr, creating it on first use.
func (c *Client) conn(addr string) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conns == nil || c.closed {
		return nil, ErrClosed
	}
	if cc, ok := c.conns[addr]; ok {
		return cc, nil
	}
	opts := c.dial
	if c.cfg.Token != "" {
		// Per connection: whether the token may go in the clear depends
		// on the address.
		opts = append(opts[:len(opts):len(opts)], grpc.WithPerRPCCredentials(newTokenCreds(c.cfg.Token, addr)))
	}
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("client: connection to %s: %w", addr, err)
	}
	c.conns[addr] = cc
	return cc, nil
}

// stub returns the Coordinator client of addr.
func (c *Client) stub(addr string) (heartbeatpb.CoordinatorClient, *grpc.ClientConn, error) {
	cc, err := c.conn(addr)
	if err != nil {
		return nil, nil, err
	}
	return heartbeatpb.NewCoordinatorClient(cc), cc, nil
}

// nextEndpoint returns the configured endpoint after addr (wrapping around);
// the first endpoint when addr is not one of them (a learned leader address).
func (c *Client) nextEndpoint(addr string) string {
	eps := c.cfg.Endpoints
	for i, e := range eps {
		if e == addr {
			return eps[(i+1)%len(eps)]
		}
	}
	return eps[0]
}

// learn records the client address of a node (by id and by peer address),
// so that a "not the leader" answer naming either can be followed.
func (c *Client) learn(id, peerAddr, clientAddr string) {
	if clientAddr == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if id != "" {
		c.clientAddrs["id:"+id] = clientAddr
	}
	if peerAddr != "" {
		c.clientAddrs["peer:"+peerAddr] = clientAddr
	}
}

// known returns a learned client address by node id, else by peer address.
func (c *Client) known(id, peerAddr string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if a := c.clientAddrs["id:"+id]; id != "" && a != "" {
		return a
	}
	if peerAddr != "" {
		return c.clientAddrs["peer:"+peerAddr]
	}
	return ""
}

// backoffTimer paces retries: Min, doubling up to Max, jittered (the
// project's one backoff, internal/retry).
type backoffTimer struct{ b *retry.Backoff }

func newBackoff(b Backoff) *backoffTimer { return &backoffTimer{b: retry.NewBackoff(b.Min, b.Max)} }

// reset starts over at Min (after a success).
func (t *backoffTimer) reset() { t.b.Reset() }

// wait sleeps for the next pause; false when ctx ended first.
func (t *backoffTimer) wait(ctx context.Context) bool { return retry.Sleep(ctx, t.b.Next()) }
