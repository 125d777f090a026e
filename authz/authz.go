package authz

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/pki"
)

// Sentinel errors; Authorize's errors are gRPC status errors that wrap
// nothing, so callers compare codes (codes.Unauthenticated,
// codes.PermissionDenied); these name the config mistakes.
var (
	// ErrInvalidConfig wraps every Config.Validate failure.
	ErrInvalidConfig = errors.New("authz: invalid config")
)

// Metadata keys the gateway uses to forward an HTTP caller's credentials.
const (
	// MDAuthorization carries "Bearer <token>" (gRPC's usual key).
	MDAuthorization = "authorization"
	// MDForwardedIdentity carries the identity of an HTTP caller whose client
	// certificate the node's own HTTPS server verified, as
	// "<kind>/<name>/<role>". It is believed only from the node itself.
	MDForwardedIdentity = "x-heartbeat-forwarded-identity"
	// NoForwardedIdentity is the MDForwardedIdentity value for an HTTP
	// caller that presented no certificate: its token (or nothing) decides.
	NoForwardedIdentity = "-"
	// MDForwardedFor carries the IP address of the HTTP caller the gateway
	// serves, for the per-client limits (ClientKey). It is believed only
	// from the node itself, like MDForwardedIdentity.
	MDForwardedFor = "x-heartbeat-forwarded-for"
)

// Config configures an Authorizer.
type Config struct {
	// SelfID is this node's id: a connection whose certificate names it is
	// the node's own gateway, whose forwarded identities are believed.
	SelfID string
	// Open, when true, lets every caller in as an admin: the node has
	// neither TLS nor tokens (loopback development, or --insecure). Tokens
	// and certificates are still honored when presented.
	Open bool
	// TLS says the ports verify client certificates against the cluster CA
	// (pki.Store's server configs): a presented certificate's identity is
	// believed. false: certificates are ignored.
	TLS bool
	// Tokens are the bearer tokens (ParseTokens reads a tokens file).
	Tokens []Token
	// Policy is the role each method needs (nil: DefaultPolicy()).
	Policy map[string]pki.Role
	// Public lists methods anyone may call (nil: DefaultPublic()).
	Public map[string]bool
	// Registerer, when set, gets heartbeat_auth_refused_total.
	Registerer prometheus.Registerer
	// Logger logs refusals, at most one line per LogEvery per reason.
	Logger hclog.Logger
	// LogEvery rate-limits refusal log lines (default 1s).
	LogEvery time.Duration
}

// Validate reports a config New cannot use.
func (c Config) Validate() error {
	if c.SelfID == "" {
		return fmt.Errorf("%w: SelfID is empty", ErrInvalidConfig)
	}
	if !c.Open && !c.TLS && len(c.Tokens) == 0 {
		return fmt.Errorf("%w: not open, yet no certificates and no tokens: nobody could call", ErrInvalidConfig)
	}
	seen := map[[32]byte]string{}
	for _, t := range c.Tokens {
		if !t.Role.Valid() {
			return fmt.Errorf("%w: token %q has no role", ErrInvalidConfig, t.Name)
		}
		if prev, dup := seen[t.hash]; dup {
			return fmt.Errorf("%w: tokens %q and %q are the same", ErrInvalidConfig, prev, t.Name)
		}
		seen[t.hash] = t.Name
	}
	return nil
}

// Caller is who made a call, as authentication found them.
type Caller struct {
	// Name is "<kind>/<name>": node/n1, client/admin, token/ci, anonymous.
	Name string
	// Role is what the caller may do ("" for nothing).
	Role pki.Role
	// Via is how the caller proved it: "cert", "token", "open", "forwarded".
	Via string
}

// Authorizer authenticates callers and applies the policy. Safe for
// concurrent use.
type Authorizer struct {
	cfg     Config
	refused *prometheus.CounterVec

	logMu   sync.Mutex
	lastLog map[string]time.Time
}

// New builds an Authorizer.
func New(cfg Config) (*Authorizer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Policy == nil {
		cfg.Policy = DefaultPolicy()
	}
	if cfg.Public == nil {
		cfg.Public = DefaultPublic()
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.LogEvery <= 0 {
		cfg.LogEvery = time.Second
	}
	a := &Authorizer{cfg: cfg, lastLog: map[string]time.Time{}}
	a.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "heartbeat_auth_refused_total",
		Help: "Calls refused by the client-port policy, by reason (unauthenticated, denied) and method (other: not in the policy).",
	}, []string{"reason", "method"})
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(a.refused); err != nil {
			return nil, fmt.Errorf("authz: metrics: %w", err)
		}
	}
	return a, nil
}

// Open reports whether the node lets anonymous callers in as admins.
func (a *Authorizer) Open() bool { return a.cfg.Open }

// Authorize authenticates the caller of a gRPC call and checks it may call
// method (a full method name, "/heartbeat.v1.Coordinator/GetStatus"). The
// error is a gRPC status: Unauthenticated or PermissionDenied.
func (a *Authorizer) Authorize(ctx context.Context, method string) (Caller, error) {
	if a.cfg.Public[method] {
		return Caller{Name: "anonymous", Via: "public"}, nil
	}
	c, err := a.authenticate(ctx)
	if err != nil {
		return c, a.refuse("unauthenticated", method, c, err)
	}
	return c, a.check(c, method)
}

// check applies the policy to an authenticated caller.
func (a *Authorizer) check(c Caller, method string) error {
	need, listed := a.cfg.Policy[method]
	if !listed {
		return a.refuse("denied", method, c, status.Errorf(codes.PermissionDenied, "%s is not permitted to anyone through this port", method))
	}
	if !c.Role.Implies(need) {
		return a.refuse("denied", method, c, status.Errorf(codes.PermissionDenied, "%s (role %s) may not call %s: it needs role %s", c.Name, c.Role, short(method), need))
	}
	return nil
}

// authenticate finds the caller of a gRPC call.
func (a *Authorizer) authenticate(ctx context.Context) (Caller, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	var cert *pki.Identity
	if p, ok := peer.FromContext(ctx); ok && a.cfg.TLS {
		// The server's pki config verified a presented chain against the
		// cluster CA in the handshake (crypto/tls leaves VerifiedChains
		// empty then).
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
			id, err := pki.PeerIdentity(ti.State)
			if err != nil {
				return Caller{Name: "anonymous"}, status.Errorf(codes.Unauthenticated, "client certificate: %v", err)
			}
			cert = &id
		}
	}
	// The node's own gateway forwards the identity of an HTTPS caller it
	// verified, or NoForwardedIdentity for a caller without a certificate;
	// believe it from no one else. The gateway's own certificate (the
	// node's) never stands for the caller.
	if fwd := md.Get(MDForwardedIdentity); len(fwd) > 0 {
		self := cert != nil && cert.Kind == pki.KindNode && cert.Name == a.cfg.SelfID
		switch {
		case fwd[0] == NoForwardedIdentity:
			// Claims nothing. From the gateway, its own certificate must
			// not count: the caller is judged by its token, or is nobody.
			if self {
				cert = nil
			}
		case !self:
			return Caller{Name: "anonymous"}, status.Error(codes.Unauthenticated, "a forwarded identity is accepted only from the node itself")
		default:
			return parseForwarded(fwd[0])
		}
	}
	if cert != nil {
		return certCaller(*cert), nil
	}
	if auth := md.Get(MDAuthorization); len(auth) > 0 {
		return a.tokenCaller(auth[0])
	}
	if a.cfg.Open {
		return Caller{Name: "anonymous", Role: pki.RoleAdmin, Via: "open"}, nil
	}
	return Caller{Name: "anonymous"}, status.Error(codes.Unauthenticated, "no credentials: present a client certificate or an authorization bearer token")
}

// certCaller is the caller a verified certificate names: a node is an
// admin, a client has its strongest role.
func certCaller(id pki.Identity) Caller {
	c := Caller{Name: string(id.Kind) + "/" + id.Name, Via: "cert"}
	if id.Kind == pki.KindNode {
		c.Role = pki.RoleAdmin
		return c
	}
	for _, r := range id.Roles {
		if r.Implies(c.Role) || !c.Role.Valid() {
			c.Role = r
		}
	}
	return c
}

// tokenCaller checks a bearer token.
func (a *Authorizer) tokenCaller(header string) (Caller, error) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "bearer") || strings.TrimSpace(tok) == "" {
		return Caller{Name: "anonymous"}, status.Error(codes.Unauthenticated, `authorization must be "Bearer <token>"`)
	}
	h := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	var found *Token
	for i := range a.cfg.Tokens {
		// Compare every token, in constant time each: the answer's timing
		// tells nothing about which one (or how much of one) matched.
		if subtle.ConstantTimeCompare(h[:], a.cfg.Tokens[i].hash[:]) == 1 {
			found = &a.cfg.Tokens[i]
		}
	}
	if found == nil {
		return Caller{Name: "anonymous"}, status.Error(codes.Unauthenticated, "unknown bearer token")
	}
	return Caller{Name: "token/" + found.Name, Role: found.Role, Via: "token"}, nil
}

// ForwardedIdentity is the metadata value the gateway sends for an HTTPS
// caller whose certificate it verified (see MDForwardedIdentity).
func ForwardedIdentity(id pki.Identity) string {
	c := certCaller(id)
	return c.Name + "/" + string(c.Role)
}

// parseForwarded reads a ForwardedIdentity value.
func parseForwarded(v string) (Caller, error) {
	i := strings.LastIndexByte(v, '/')
	if i <= 0 {
		return Caller{Name: "anonymous"}, status.Error(codes.Unauthenticated, "malformed forwarded identity")
	}
	role, err := pki.ParseRole(v[i+1:])
	if err != nil {
		return Caller{Name: "anonymous"}, status.Errorf(codes.Unauthenticated, "forwarded identity: %v", err)
	}
	return Caller{Name: v[:i], Role: role, Via: "forwarded"}, nil
}

// refuse counts and logs a refusal and returns err.
func (a *Authorizer) refuse(reason, method string, c Caller, err error) error {
	label := method
	if _, listed := a.cfg.Policy[method]; !listed {
		label = "other"
	}
	a.refused.WithLabelValues(reason, label).Inc()
	a.logMu.Lock()
	now := time.Now()
	quiet := now.Sub(a.lastLog[reason]) < a.cfg.LogEvery
	if !quiet {
		a.lastLog[reason] = now
	}
	a.logMu.Unlock()
	if !quiet {
		a.cfg.Logger.Warn("call refused", "reason", reason, "method", method, "caller", c.Name, "error", status.Convert(err).Message())
	}
	return err
}

// Refused is the counter of refusals (heartbeat_auth_refused_total).
func (a *Authorizer) Refused() *prometheus.CounterVec { return a.refused }

// UnaryInterceptor applies Authorize to every unary call.
func (a *Authorizer) UnaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if _, err := a.Authorize(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// StreamInterceptor applies Authorize to every streaming call.
func (a *Authorizer) StreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if _, err := a.Authorize(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return handler(srv, ss)
}

// HTTPCredentials returns the metadata the gateway forwards for an HTTP
// request: the identity of the client certificate the HTTPS server
// verified, or NoForwardedIdentity and the request's Authorization header.
// It is always set, so that the gateway's own connection (with the node's
// certificate) never passes for the caller. A certificate that names no
// identity is an error (401).
func (a *Authorizer) HTTPCredentials(r *http.Request) (metadata.MD, error) {
	md := metadata.MD{MDForwardedIdentity: []string{NoForwardedIdentity}}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		md.Set(MDForwardedFor, host)
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 && a.cfg.TLS {
		id, err := pki.PeerIdentity(*r.TLS)
		if err != nil {
			return nil, status.Errorf(codes.Unauthenticated, "client certificate: %v", err)
		}
		md.Set(MDForwardedIdentity, ForwardedIdentity(id))
		return md, nil
	}
	if h := r.Header.Get("Authorization"); h != "" {
		md.Set(MDAuthorization, h)
	}
	return md, nil
}

// AuthorizeHTTP checks an HTTP request to a route with no RPC (metrics,
// profiles) against the policy entry named action (HTTPMetrics,
// HTTPPprof): the same caller rules as a gRPC call.
func (a *Authorizer) AuthorizeHTTP(r *http.Request, action string) error {
	if a.cfg.Public[action] {
		return nil
	}
	md, err := a.HTTPCredentials(r)
	if err != nil {
		return a.refuse("unauthenticated", action, Caller{Name: "anonymous"}, err)
	}
	var c Caller
	switch {
	case md.Get(MDForwardedIdentity)[0] != NoForwardedIdentity:
		c, err = parseForwarded(md.Get(MDForwardedIdentity)[0])
	case len(md.Get(MDAuthorization)) > 0:
		c, err = a.tokenCaller(md.Get(MDAuthorization)[0])
	case a.cfg.Open:
		c = Caller{Name: "anonymous", Role: pki.RoleAdmin, Via: "open"}
	default:
		err = status.Error(codes.Unauthenticated, "no credentials: present a client certificate or an authorization bearer token")
		c = Caller{Name: "anonymous"}
	}
	if err != nil {
		return a.refuse("unauthenticated", action, c, err)
	}
	return a.check(c, action)
}

// short is a method's last element, for messages.
func short(method string) string {
	if i := strings.LastIndexByte(method, '/'); i >= 0 {
		return method[i+1:]
	}
	return method
}

// ClientKey names the client of a gRPC call for per-client limits (the
// client port's cap on open watches): "<caller>@<address>", the caller as
// authentication finds it (node/n1, client/app, token/ci, anonymous) and
// the IP address it calls from. For a call of the node's own gateway (its
// certificate with TLS, a loopback connection without) the address is the
// HTTP caller's (MDForwardedFor). Without TLS a local process could claim
// any address this way; the node-wide cap still holds for it.
func (a *Authorizer) ClientKey(ctx context.Context) string {
	c, err := a.authenticate(ctx)
	if err != nil {
		c = Caller{Name: "anonymous"}
	}
	addr := "unknown"
	p, ok := peer.FromContext(ctx)
	if ok && p.Addr != nil {
		addr = p.Addr.String()
		if host, _, err := net.SplitHostPort(addr); err == nil {
			addr = host
		}
	}
	md, _ := metadata.FromIncomingContext(ctx)
	if fwd := md.Get(MDForwardedFor); len(fwd) > 0 && a.fromSelf(p) {
		addr = fwd[0]
	}
	return c.Name + "@" + addr
}

// fromSelf reports whether a call comes from the node itself: with TLS, a
// connection with the node's own certificate; without, one over loopback.
func (a *Authorizer) fromSelf(p *peer.Peer) bool {
	if p == nil {
		return false
	}
	if a.cfg.TLS {
		ti, ok := p.AuthInfo.(credentials.TLSInfo)
		if !ok || len(ti.State.PeerCertificates) == 0 {
			return false
		}
		id, err := pki.PeerIdentity(ti.State)
		return err == nil && id.Kind == pki.KindNode && id.Name == a.cfg.SelfID
	}
	tcp, ok := p.Addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}
