package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// What the servers put in a google.rpc.ErrorInfo detail of a status error
// (they are defined by rpc/api/errors.go; a client does not import the
// server, so they are repeated here).
const (
	// ErrorDomain is the ErrorInfo domain of Heartbeat's servers.
	ErrorDomain = "heartbeat"
	// ReasonNotLeader marks a FailedPrecondition from a node that will not
	// serve or forward a leader-only call; its metadata names the leader
	// (leader_id, leader_address: the peer address). The client follows it.
	ReasonNotLeader = "NOT_LEADER"
	// ReasonNoLeader marks an Unavailable while no leader is known; nothing
	// was done, so the client retries it.
	ReasonNoLeader = "NO_LEADER"
	// ReasonWrongCluster marks a FailedPrecondition from a node of another
	// cluster.
	ReasonWrongCluster = "WRONG_CLUSTER"
)

// Metadata keys of a ReasonNotLeader ErrorInfo.
const (
	mdLeaderID     = "leader_id"
	mdLeaderPeer   = "leader_address"
	mdLeaderClient = "leader_client_address" // used when a server sends it
)

// ReasonOf returns the ErrorInfo reason (domain ErrorDomain) of a status
// error from a Heartbeat server, or "" when it has none.
func ReasonOf(err error) string {
	if info := errorInfo(err); info != nil {
		return info.GetReason()
	}
	return ""
}

func errorInfo(err error) *errdetails.ErrorInfo {
	s, ok := status.FromError(err)
	if !ok {
		return nil
	}
	for _, d := range s.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == ErrorDomain {
			return info
		}
	}
	return nil
}

// route says which nodes may serve a call.
type route int

const (
	// routeLocal: the local sidecar (Endpoints[0]) only; a call about "this
	// node". Retried there.
	routeLocal route = iota
	// routeRead: any node, the local one first; on failure the next endpoint.
	routeRead
	// routeWrite: any node (followers forward to the leader), starting where
	// the last write succeeded; "not the leader" is followed to the leader.
	routeWrite
)

// callSpec describes one unary call for invoke.
type callSpec struct {
	name  string
	route route
	// once: the call is not idempotent. It is retried only where the server
	// certainly did nothing: the endpoint could not be connected to before
	// the request was sent, or the server refused with NOT_LEADER / NO_LEADER.
	once bool
	// noTimeout: the attempt is bounded by the caller's context only.
	noTimeout bool
	// minTimeout raises the attempt's bound above CallTimeout for calls the
	// server may take long to answer.
	minTimeout time.Duration
}

// leadershipCallTimeout bounds an attempt of StepDown and TransferLeadership
// at least: the server answers once the new leader is known, and waits up to
// 10s for that.
const leadershipCallTimeout = 15 * time.Second

// callFunc makes one attempt of a call on the node at addr.
type callFunc func(ctx context.Context, stub heartbeatpb.CoordinatorClient, addr string) error

// unreachableError: no connection to the endpoint could be had, so nothing
// was sent. It reads as codes.Unavailable.
type unreachableError struct {
	addr string
	err  error
}

func (e *unreachableError) Error() string {
	return fmt.Sprintf("endpoint %s unreachable: %v", e.addr, e.err)
}

func (e *unreachableError) Unwrap() error { return e.err }

// GRPCStatus makes status.Code report Unavailable.
func (e *unreachableError) GRPCStatus() *status.Status {
	return status.New(codes.Unavailable, e.Error())
}

// invoke runs f against one node after another until it succeeds, fails
// for good, or ctx (or Close) ends. Each attempt is bounded by CallTimeout
// unless spec.noTimeout. Errors from the server are returned as they came
// (their status intact); when ctx ends during retries the error wraps both
// ctx.Err() and the last server error (status.Code gives the latter's code).
func (c *Client) invoke(ctx context.Context, spec callSpec, f callFunc) error {
	ctx, cancel := c.scope(ctx)
	defer cancel()
	addr := c.startAddr(spec.route)
	bo := newBackoff(c.cfg.RetryBackoff)
	tried := map[string]bool{}
	var lastErr error
	for {
		err := c.attempt(ctx, spec, addr, f)
		if err == nil {
			if spec.route == routeWrite {
				c.setWriteTarget(addr)
			}
			return nil
		}
		if ctx.Err() != nil {
			return c.giveUp(ctx, spec, lastErr, err)
		}
		next, ok := c.retryTo(ctx, spec, addr, err)
		if !ok {
			return err
		}
		lastErr = err
		c.cfg.Logger.Debug("retrying call", "call", spec.name, "endpoint", addr, "next", next, "error", err)
		tried[addr] = true
		if tried[next] {
			// Every candidate of this round failed: pause before the next.
			clear(tried)
			if !bo.wait(ctx) {
				return c.giveUp(ctx, spec, lastErr, err)
			}
		}
		addr = next
	}
}

// attempt makes one call of f on addr.
func (c *Client) attempt(ctx context.Context, spec callSpec, addr string, f callFunc) error {
	stub, cc, err := c.stub(addr)
	if err != nil {
		if errors.Is(err, ErrClosed) {
			return err
		}
		return &unreachableError{addr: addr, err: err}
	}
	if spec.once {
		if err := c.awaitReady(ctx, cc, addr); err != nil {
			return err
		}
	}
	if !spec.noTimeout {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, max(c.cfg.CallTimeout, spec.minTimeout))
		defer cancel()
	}
	return f(ctx, stub, addr)
}

// awaitReady waits (up to DialTimeout) until cc is connected; an
// unreachableError when it is not.
func (c *Client) awaitReady(ctx context.Context, cc *grpc.ClientConn, addr string) error {
	dctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	cc.Connect()
	for {
		s := cc.GetState()
		switch s {
		case connectivity.Ready:
			return nil
		case connectivity.TransientFailure, connectivity.Shutdown:
			return &unreachableError{addr: addr, err: fmt.Errorf("connection state %s", s)}
		}
		if !cc.WaitForStateChange(dctx, s) {
			return &unreachableError{addr: addr, err: fmt.Errorf("not connected within %v: %w", c.cfg.DialTimeout, dctx.Err())}
		}
	}
}

// retryTo decides whether a failed attempt on addr is tried again and where.
func (c *Client) retryTo(ctx context.Context, spec callSpec, addr string, err error) (string, bool) {
	if errors.Is(err, ErrClosed) {
		return "", false
	}
	var ue *unreachableError
	unreachable := errors.As(err, &ue)
	code, reason := status.Code(err), ReasonOf(err)
	switch {
	case code == codes.FailedPrecondition && reason == ReasonNotLeader:
		if spec.route == routeLocal {
			return "", false
		}
		if a := c.leaderAddr(ctx, addr, err); a != "" && a != addr {
			return a, true
		}
		return c.nextEndpoint(addr), true
	case unreachable, code == codes.Unavailable && reason == ReasonNoLeader:
	case spec.once:
		return "", false
	case code == codes.Unavailable:
	case code == codes.DeadlineExceeded && ctx.Err() == nil: // the attempt's own CallTimeout
	default:
		return "", false
	}
	if spec.route == routeLocal {
		return addr, true
	}
	return c.nextEndpoint(addr), true
}

// leaderAddr returns the client address of the leader a NOT_LEADER answer
// names: from the answer itself when the server sent it, else from what the
// client learned, else from the member list of the node that answered.
func (c *Client) leaderAddr(ctx context.Context, answered string, err error) string {
	info := errorInfo(err)
	if info == nil {
		return ""
	}
	md := info.GetMetadata()
	if a := md[mdLeaderClient]; a != "" {
		return a
	}
	id, peer := md[mdLeaderID], md[mdLeaderPeer]
	if a := c.known(id, peer); a != "" {
		return a
	}
	c.refreshAddrs(ctx, answered)
	return c.known(id, peer)
}

// refreshAddrs learns the members' client addresses from the node at addr
// (one attempt, best effort).
func (c *Client) refreshAddrs(ctx context.Context, addr string) {
	stub, _, err := c.stub(addr)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	resp, err := stub.ListMembers(ctx, &heartbeatpb.ListMembersRequest{})
	if err != nil {
		return
	}
	for _, m := range resp.GetMembers() {
		c.learn(m.GetNodeId(), m.GetPeerAddress(), m.GetClientAddress())
	}
}

// giveUp builds the error of a call whose context ended while it retried.
func (c *Client) giveUp(ctx context.Context, spec callSpec, lastErr, err error) error {
	if c.isClosed() {
		return fmt.Errorf("client: %s: %w", spec.name, ErrClosed)
	}
	final := err
	if code := status.Code(err); lastErr != nil && (code == codes.Canceled || code == codes.DeadlineExceeded || errors.Is(err, ctx.Err())) {
		final = lastErr
	}
	if _, ok := status.FromError(final); !ok {
		final = status.FromContextError(ctx.Err()).Err()
	}
	return fmt.Errorf("client: %s: gave up when the context ended (%w): %w", spec.name, ctx.Err(), final)
}

func (c *Client) startAddr(r route) string {
	if r == routeWrite {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.writeTarget
	}
	return c.local()
}

func (c *Client) setWriteTarget(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writeTarget = addr
}
