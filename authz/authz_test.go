package authz_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/authz"
	"github.com/heartbeat-sidecar/heartbeat/pki"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

const secretRead, secretWrite, secretAdmin = "read-secret-0123456789", "write-secret-0123456789", "admin-secret-0123456789"

// serve runs a real gRPC server on loopback with the interceptors of a and
// a Coordinator whose every method answers Unimplemented: a call that
// reaches it passed the policy.
func serve(t *testing.T, a *authz.Authorizer) *grpc.ClientConn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(grpc.ChainUnaryInterceptor(a.UnaryInterceptor), grpc.ChainStreamInterceptor(a.StreamInterceptor))
	heartbeatpb.RegisterCoordinatorServer(s, heartbeatpb.UnimplementedCoordinatorServer{})
	healthpb.RegisterHealthServer(s, health.NewServer())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ln) }()
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close(); s.Stop(); <-done })
	return cc
}

func newAuthz(t *testing.T, open bool, reg prometheus.Registerer) *authz.Authorizer {
	t.Helper()
	a, err := authz.New(authz.Config{
		SelfID: "n1",
		Open:   open,
		Tokens: []authz.Token{
			authz.NewToken("r", pki.RoleRead, secretRead),
			authz.NewToken("w", pki.RoleWrite, secretWrite),
			authz.NewToken("a", pki.RoleAdmin, secretAdmin),
		},
		Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// call invokes one Coordinator method with an empty request and returns
// the code: Unimplemented means the policy let it through.
func call(cc *grpc.ClientConn, method, auth string) codes.Code {
	ctx := context.Background()
	if auth != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", auth)
	}
	full := "/" + heartbeatpb.Coordinator_ServiceDesc.ServiceName + "/" + method
	for _, sd := range heartbeatpb.Coordinator_ServiceDesc.Streams {
		if sd.StreamName == method {
			s, err := cc.NewStream(ctx, &sd, full)
			if err != nil {
				return status.Code(err)
			}
			// A server that refuses the call may end the stream before the
			// message is sent: SendMsg then returns io.EOF, and the
			// refusal's status is what RecvMsg returns.
			if err := s.SendMsg(&heartbeatpb.GetStatusRequest{}); err != nil && !errors.Is(err, io.EOF) {
				return status.Code(err)
			}
			_ = s.CloseSend()
			return status.Code(s.RecvMsg(&heartbeatpb.GetStatusResponse{}))
		}
	}
	err := cc.Invoke(ctx, full, &heartbeatpb.GetStatusRequest{}, &heartbeatpb.GetStatusResponse{})
	return status.Code(err)
}

func methods() []string {
	var out []string
	for _, m := range heartbeatpb.Coordinator_ServiceDesc.Methods {
		out = append(out, m.MethodName)
	}
	for _, s := range heartbeatpb.Coordinator_ServiceDesc.Streams {
		out = append(out, s.StreamName)
	}
	return out
}

// TestPolicyCoversCoordinator: every Coordinator method has a role, so
// none falls to default deny by oversight (and a new RPC must be given one).
func TestPolicyCoversCoordinator(t *testing.T) {
	p := authz.DefaultPolicy()
	for _, m := range methods() {
		if _, ok := p["/"+heartbeatpb.Coordinator_ServiceDesc.ServiceName+"/"+m]; !ok {
			t.Errorf("Coordinator.%s has no role in authz.DefaultPolicy", m)
		}
	}
}

// TestRoles calls every Coordinator method with no credentials, a bad
// token, and each role's token, over real gRPC, and checks the answer
// against the policy: Unauthenticated, PermissionDenied, or through.
func TestRoles(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := newAuthz(t, false, reg)
	cc := serve(t, a)
	policy := authz.DefaultPolicy()
	callers := []struct {
		name, auth string
		role       pki.Role
	}{
		{"none", "", pki.Role("")},
		{"bad token", "Bearer not-a-known-token-at-all", pki.Role("")},
		{"not bearer", "Basic " + secretAdmin, pki.Role("")},
		{"read", "Bearer " + secretRead, pki.RoleRead},
		{"write", "Bearer " + secretWrite, pki.RoleWrite},
		{"admin", "bearer " + secretAdmin, pki.RoleAdmin},
	}
	for _, c := range callers {
		for _, m := range methods() {
			need := policy["/"+heartbeatpb.Coordinator_ServiceDesc.ServiceName+"/"+m]
			want := codes.Unimplemented
			switch {
			case c.role == "":
				want = codes.Unauthenticated
			case !c.role.Implies(need):
				want = codes.PermissionDenied
			}
			if got := call(cc, m, c.auth); got != want {
				t.Errorf("%s calling %s (needs %s): %v, want %v", c.name, m, need, got, want)
			}
		}
	}
	remove := "/" + heartbeatpb.Coordinator_ServiceDesc.ServiceName + "/Remove"
	// Remove is refused as denied to read and write, as unauthenticated to
	// the three without credentials.
	if got := testutil.ToFloat64(a.Refused().WithLabelValues("denied", remove)); got != 2 {
		t.Errorf("denied Remove counted %v times, want 2", got)
	}
	if got := testutil.ToFloat64(a.Refused().WithLabelValues("unauthenticated", remove)); got != 3 {
		t.Errorf("unauthenticated Remove counted %v times, want 3", got)
	}
	if n, err := testutil.GatherAndCount(reg, "heartbeat_auth_refused_total"); err != nil || n == 0 {
		t.Errorf("heartbeat_auth_refused_total not registered: %d, %v", n, err)
	}
	// Health is public: probes carry no credentials.
	if _, err := healthpb.NewHealthClient(cc).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("health check without credentials: %v", err)
	}
}

// TestOpen: an open node lets anonymous callers in as admins, and still
// refuses a wrong token (a presented credential is checked).
func TestOpen(t *testing.T) {
	cc := serve(t, newAuthz(t, true, nil))
	if got := call(cc, "Remove", ""); got != codes.Unimplemented {
		t.Errorf("open node, anonymous Remove: %v, want through", got)
	}
	if got := call(cc, "GetStatus", "Bearer wrong-token-wrong-token"); got != codes.Unauthenticated {
		t.Errorf("open node, wrong token: %v, want Unauthenticated", got)
	}
	if got := call(cc, "Remove", "Bearer "+secretRead); got != codes.PermissionDenied {
		t.Errorf("open node, read token calling Remove: %v, want PermissionDenied", got)
	}
}

// TestForwardedIdentityOnlyFromSelf: the gateway's forwarded identity is
// refused from a caller that is not the node itself (here: no certificate).
func TestForwardedIdentityOnlyFromSelf(t *testing.T) {
	cc := serve(t, newAuthz(t, true, nil))
	ctx := metadata.AppendToOutgoingContext(context.Background(), authz.MDForwardedIdentity, "client/eve/admin")
	err := cc.Invoke(ctx, "/heartbeat.v1.Coordinator/Remove", &heartbeatpb.RemoveRequest{}, &heartbeatpb.RemoveResponse{})
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("forged forwarded identity: %v, want Unauthenticated", err)
	}
}

// TestAuthorizeHTTP: the routes with no RPC follow the same rules.
func TestAuthorizeHTTP(t *testing.T) {
	a := newAuthz(t, false, nil)
	for _, tc := range []struct {
		action, auth string
		want         codes.Code
	}{
		{authz.HTTPMetrics, "", codes.Unauthenticated},
		{authz.HTTPMetrics, "Bearer " + secretRead, codes.OK},
		{authz.HTTPPprof, "Bearer " + secretWrite, codes.PermissionDenied},
		{authz.HTTPPprof, "Bearer " + secretAdmin, codes.OK},
		{authz.HTTPHealthz, "", codes.OK},
		{authz.HTTPOpenAPI, "", codes.OK},
		{"http:/not-in-policy", "Bearer " + secretAdmin, codes.PermissionDenied},
	} {
		r := httptest.NewRequest("GET", "/x", nil)
		if tc.auth != "" {
			r.Header.Set("Authorization", tc.auth)
		}
		if got := status.Code(a.AuthorizeHTTP(r, tc.action)); got != tc.want {
			t.Errorf("%s with %q: %v, want %v", tc.action, tc.auth, got, tc.want)
		}
	}
}

func TestParseTokens(t *testing.T) {
	for _, tc := range []struct {
		in, err string
		n       int
	}{
		{"# comment\n\nci write 0123456789abcdef\nops admin 0123456789abcdefg\n", "", 2},
		{"ci write short\n", "shorter", 0},
		{"ci root 0123456789abcdef\n", "unknown role", 0},
		{"ci write\n", "fields", 0},
	} {
		toks, err := authz.ParseTokens(strings.NewReader(tc.in))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || len(toks) != tc.n {
			t.Errorf("%q: %d tokens, %v; want %d", tc.in, len(toks), err, tc.n)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for name, cfg := range map[string]authz.Config{
		"no self":   {Open: true},
		"no way in": {SelfID: "n1"},
		"dup token": {SelfID: "n1", Tokens: []authz.Token{authz.NewToken("a", pki.RoleRead, "x"), authz.NewToken("b", pki.RoleAdmin, "x")}},
		"no role":   {SelfID: "n1", Tokens: []authz.Token{authz.NewToken("a", pki.Role(""), "x")}},
	} {
		if _, err := authz.New(cfg); !errors.Is(err, authz.ErrInvalidConfig) {
			t.Errorf("%s: %v, want ErrInvalidConfig", name, err)
		}
	}
}

// TestClientKey: the per-client key is the caller and its address; the
// gateway's forwarded address counts only on a call from the node itself
// (without TLS: over loopback), never from another host.
func TestClientKey(t *testing.T) {
	a := newAuthz(t, true, nil)
	in := func(ip string, md ...string) context.Context {
		ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs(md...))
		return peer.NewContext(ctx, &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP(ip), Port: 5000}})
	}
	for _, tc := range []struct {
		name string
		ctx  context.Context
		want string
	}{
		{"anonymous", in("10.0.0.7"), "anonymous@10.0.0.7"},
		{"token", in("10.0.0.7", "authorization", "Bearer "+secretWrite), "token/w@10.0.0.7"},
		{"gateway over loopback", in("127.0.0.1", authz.MDForwardedIdentity, authz.NoForwardedIdentity, authz.MDForwardedFor, "192.0.2.9"), "anonymous@192.0.2.9"},
		{"forged from another host", in("10.0.0.7", authz.MDForwardedFor, "192.0.2.9"), "anonymous@10.0.0.7"},
	} {
		if got := a.ClientKey(tc.ctx); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	r := httptest.NewRequest("GET", "/v1/watch/leader", nil)
	r.RemoteAddr = "192.0.2.9:4711"
	md, err := a.HTTPCredentials(r)
	if err != nil || strings.Join(md.Get(authz.MDForwardedFor), ",") != "192.0.2.9" {
		t.Errorf("HTTPCredentials forwards %v (%v), want the caller's address 192.0.2.9", md, err)
	}
}
