package client

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/authz"
	"github.com/heartbeat-sidecar/heartbeat/pki"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// testToken is the token of the fake nodes' tokens file: client "ci",
// role write.
const testToken = "s3cret-token"

// fakeNode is a Coordinator that answers GetStatus with its id, streams
// one leadership naming itself, and answers RegisterResources with
// NOT_LEADER naming redirect (when set). It records how every call that
// reached it authenticated.
type fakeNode struct {
	heartbeatpb.UnimplementedCoordinatorServer
	id       string
	redirect string

	mu   sync.Mutex
	seen []string // per call: "cert <identity>", "token <header>" or "none"
}

func (f *fakeNode) GetStatus(context.Context, *heartbeatpb.GetStatusRequest) (*heartbeatpb.GetStatusResponse, error) {
	return &heartbeatpb.GetStatusResponse{NodeId: f.id, ClusterId: "c1"}, nil
}

func (f *fakeNode) WatchLeader(_ *heartbeatpb.WatchLeaderRequest, s grpc.ServerStreamingServer[heartbeatpb.WatchLeaderResponse]) error {
	if err := s.Send(&heartbeatpb.WatchLeaderResponse{Leadership: &heartbeatpb.Leadership{Leader: &heartbeatpb.NodeRef{NodeId: f.id}}}); err != nil {
		return err
	}
	<-s.Context().Done()
	return nil
}

func (f *fakeNode) RegisterResources(context.Context, *heartbeatpb.RegisterResourcesRequest) (*heartbeatpb.RegisterResourcesResponse, error) {
	if f.redirect == "" {
		return &heartbeatpb.RegisterResourcesResponse{Revision: 7}, nil
	}
	st, err := status.New(codes.FailedPrecondition, "not the leader").WithDetails(&errdetails.ErrorInfo{
		Domain: ErrorDomain, Reason: ReasonNotLeader,
		Metadata: map[string]string{mdLeaderID: "leader", mdLeaderClient: f.redirect},
	})
	if err != nil {
		return nil, err
	}
	return nil, st.Err()
}

// record notes how a call authenticated (before the authorizer decides).
func (f *fakeNode) record(ctx context.Context) {
	who := "none"
	if id, ok := pki.IdentityFromContext(ctx); ok {
		who = "cert " + id.String()
	} else if md, _ := metadata.FromIncomingContext(ctx); len(md.Get("authorization")) > 0 {
		who = "token " + md.Get("authorization")[0]
	}
	f.mu.Lock()
	f.seen = append(f.seen, who)
	f.mu.Unlock()
}

// calls returns what record noted.
func (f *fakeNode) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.seen...)
}

// serveSecured serves f on a new listener on host (port 0), with TLS from
// store when it is set (client certificates verified when presented), and
// the authorizer of a node with certificates (when TLS) and testToken.
func serveSecured(t *testing.T, f *fakeNode, host string, store *pki.Store) string {
	t.Helper()
	a, err := authz.New(authz.Config{SelfID: f.id, TLS: store != nil, Tokens: []authz.Token{authz.NewToken("ci", pki.RoleWrite, testToken)}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			f.record(ctx)
			return h(ctx, req)
		}, a.UnaryInterceptor),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			f.record(ss.Context())
			return h(srv, ss)
		}, a.StreamInterceptor),
	}
	if store != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(store.ServerTLSConfig(false))))
	}
	s := grpc.NewServer(opts...)
	heartbeatpb.RegisterCoordinatorServer(s, f)
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ln) }()
	t.Cleanup(func() { s.Stop(); <-done })
	return ln.Addr().String()
}

// tlsInit makes cluster c1's files (nodes n1, n2; client ops with role
// admin) in a new directory.
func tlsInit(t *testing.T, cluster string) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := pki.Init(pki.InitOptions{Dir: dir, Cluster: cluster, Nodes: []string{"n1", "n2"},
		Clients: []pki.ClientSpec{{Name: "ops", Roles: []pki.Role{pki.RoleAdmin}}}}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// nodeStore is the store of node name's files in dir.
func nodeStore(t *testing.T, dir, name string) *pki.Store {
	t.Helper()
	st, err := pki.NewStore(pki.StoreOptions{
		CertFile: filepath.Join(dir, pki.CertFile(name)), KeyFile: filepath.Join(dir, pki.KeyFile(name)), CAFile: filepath.Join(dir, pki.CAFile),
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// tlsFiles is TLSConfigFromFiles of dir's CA and client name's files ("":
// CA only).
func tlsFiles(t *testing.T, dir, name string) *tls.Config {
	t.Helper()
	var cert, key string
	if name != "" {
		cert, key = filepath.Join(dir, pki.CertFile(name)), filepath.Join(dir, pki.KeyFile(name))
	}
	cfg, err := TLSConfigFromFiles(filepath.Join(dir, pki.CAFile), cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// securedClient is a client of endpoints with tlsCfg and token.
func securedClient(t *testing.T, tlsCfg *tls.Config, token string, endpoints ...string) *Client {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Endpoints = endpoints
	cfg.TLS = tlsCfg
	cfg.Token = token
	cfg.RetryBackoff = Backoff{Min: 20 * time.Millisecond, Max: 100 * time.Millisecond}
	cl, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// TestTLSAndToken: real gRPC over loopback against TLS servers with the
// sidecars' authorizer: what each way of configuring Config.TLS and
// Config.Token sends, and what is refused.
func TestTLSAndToken(t *testing.T) {
	dir := tlsInit(t, "c1")
	foreign := tlsInit(t, "c1") // same cluster id, another CA
	n1 := &fakeNode{id: "n1"}
	addr := serveSecured(t, n1, "127.0.0.1", nodeStore(t, dir, "n1"))
	impostor := &fakeNode{id: "n1"}
	impostorAddr := serveSecured(t, impostor, "127.0.0.1", nodeStore(t, foreign, "n1"))
	plain := &fakeNode{id: "p"}
	plainAddr := serveSecured(t, plain, "127.0.0.1", nil)

	tests := []struct {
		name     string
		srv      *fakeNode
		addr     string
		tls      *tls.Config
		token    string
		wantCode codes.Code
		wantSeen string // what the server saw, "": nothing reached it
	}{
		{name: "client certificate", srv: n1, addr: addr, tls: tlsFiles(t, dir, "ops"),
			wantSeen: "cert client ops (admin) of cluster c1"},
		{name: "CA only and a token", srv: n1, addr: addr, tls: tlsFiles(t, dir, ""), token: testToken,
			wantSeen: "token Bearer " + testToken},
		{name: "CA only, no token", srv: n1, addr: addr, tls: tlsFiles(t, dir, ""),
			wantCode: codes.Unauthenticated, wantSeen: "none"},
		{name: "a wrong token", srv: n1, addr: addr, tls: tlsFiles(t, dir, ""), token: "nope",
			wantCode: codes.Unauthenticated, wantSeen: "token Bearer nope"},
		{name: "server certificate of another CA refused", srv: impostor, addr: impostorAddr, tls: tlsFiles(t, dir, ""), token: testToken,
			wantCode: codes.Unavailable},
		{name: "plaintext token to 127.0.0.1", srv: plain, addr: plainAddr, token: testToken,
			wantSeen: "token Bearer " + testToken},
		{name: "plaintext to a TLS port", srv: n1, addr: addr, token: testToken,
			wantCode: codes.Unavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(tc.srv.calls())
			cl := securedClient(t, tc.tls, tc.token, tc.addr)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			st, err := cl.Status(ctx)
			if got := status.Code(err); got != tc.wantCode {
				t.Fatalf("Status: %v (code %v), want %v", err, got, tc.wantCode)
			}
			if err == nil && st.ID != tc.srv.id {
				t.Errorf("Status from %q, want %q", st.ID, tc.srv.id)
			}
			seen := tc.srv.calls()[before:]
			switch {
			case tc.wantSeen == "" && len(seen) > 0:
				t.Errorf("the server saw %q, want nothing", seen)
			case tc.wantSeen != "" && (len(seen) == 0 || seen[0] != tc.wantSeen):
				t.Errorf("the server saw %q, want %q", seen, tc.wantSeen)
			}
			if tc.wantCode != codes.OK {
				return
			}
			// Streams carry the same credentials.
			ev, ok := <-cl.WatchLeader(ctx)
			if !ok || ev.Err != nil || ev.ID != tc.srv.id {
				t.Errorf("WatchLeader: %+v (open %v)", ev, ok)
			}
			if got := tc.srv.calls(); got[len(got)-1] != tc.wantSeen {
				t.Errorf("the watch came as %q, want %q", got[len(got)-1], tc.wantSeen)
			}
		})
	}
}

// TestLearnedAddressCredentials: the leader address a NOT_LEADER answer
// names is dialed with the same TLS and token; over plaintext the token is
// not sent to a learned address that is not loopback.
func TestLearnedAddressCredentials(t *testing.T) {
	dir := tlsInit(t, "c1")
	t.Run("TLS", func(t *testing.T) {
		leader := &fakeNode{id: "n2"}
		leaderAddr := serveSecured(t, leader, "127.0.0.1", nodeStore(t, dir, "n2"))
		follower := &fakeNode{id: "n1", redirect: leaderAddr}
		cl := securedClient(t, tlsFiles(t, dir, ""), testToken, serveSecured(t, follower, "127.0.0.1", nodeStore(t, dir, "n1")))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		res, err := cl.Register(ctx, ResourceSpec{ID: "r1", Weight: 1})
		if err != nil || res.Revision != 7 {
			t.Fatalf("Register: %+v, %v; want the leader's revision 7", res, err)
		}
		if got := leader.calls(); len(got) != 1 || got[0] != "token Bearer "+testToken {
			t.Errorf("the leader saw %q", got)
		}
	})
	t.Run("plaintext to a non-loopback address", func(t *testing.T) {
		ip := nonLoopbackIP(t)
		leader := &fakeNode{id: "n2"}
		leaderAddr := serveSecured(t, leader, ip, nil)
		follower := &fakeNode{id: "n1", redirect: leaderAddr}
		cl := securedClient(t, nil, testToken, serveSecured(t, follower, "127.0.0.1", nil))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := cl.Register(ctx, ResourceSpec{ID: "r1", Weight: 1})
		if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "in the clear") {
			t.Fatalf("Register: %v, want Unauthenticated: not sent in the clear", err)
		}
		if got := leader.calls(); len(got) != 0 {
			t.Errorf("the leader at %s saw %q, want nothing", leaderAddr, got)
		}
	})
}

// nonLoopbackIP is an IPv4 address of this machine that is not loopback
// (the test is skipped without one).
func nonLoopbackIP(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Skipf("no interface addresses: %v", err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP.String()
		}
	}
	t.Skip("no non-loopback IPv4 address on this machine")
	return ""
}

// TestValidateToken: Config.Validate on tokens and plaintext.
func TestValidateToken(t *testing.T) {
	dir := tlsInit(t, "c1")
	tests := []struct {
		name      string
		endpoints []string
		tls       *tls.Config
		token     string
		want      string // "": valid
	}{
		{"token over plaintext to 127.0.0.1", []string{"127.0.0.1:7401"}, nil, "t", ""},
		{"token over plaintext to localhost and ::1", []string{"localhost:7401", "[::1]:7401", "127.0.0.2:7401"}, nil, "t", ""},
		{"token over plaintext to another host", []string{"127.0.0.1:7401", "10.0.0.2:7401"}, nil, "t", `Endpoints[1] "10.0.0.2:7401" is not a loopback address`},
		{"token over plaintext to a name", []string{"node1:7401"}, nil, "t", "in the clear"},
		{"token over TLS to another host", []string{"10.0.0.2:7401"}, tlsFiles(t, dir, ""), "t", ""},
		{"plaintext without a token to another host", []string{"10.0.0.2:7401"}, nil, "", ""},
		{"a token with a newline", []string{"127.0.0.1:7401"}, nil, "t\n", "a line break"},
		{"a token with a space", []string{"127.0.0.1:7401"}, nil, "a b", "a space"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Endpoints, cfg.TLS, cfg.Token = tc.endpoints, tc.tls, tc.token
			err := cfg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate: %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrInvalidConfig)):
				t.Errorf("Validate: %v, want ErrInvalidConfig with %q", err, tc.want)
			case err != nil && tc.token != "" && strings.Contains(err.Error(), tc.token+"\n"):
				t.Errorf("Validate shows the token: %v", err)
			}
		})
	}
}

// TestTLSConfigFromFiles: the files are checked up front.
func TestTLSConfigFromFiles(t *testing.T) {
	dir := tlsInit(t, "c1")
	ca, cert, key := filepath.Join(dir, pki.CAFile), filepath.Join(dir, "ops.pem"), filepath.Join(dir, "ops-key.pem")
	tests := []struct {
		name          string
		ca, cert, key string
		want          string
	}{
		{"certificate and key", ca, cert, key, ""},
		{"CA only", ca, "", "", ""},
		{"no CA", "", cert, key, "needs a CA file"},
		{"a certificate without its key", ca, cert, "", "or neither"},
		{"missing CA file", filepath.Join(dir, "nope.pem"), "", "", "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := TLSConfigFromFiles(tc.ca, tc.cert, tc.key)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("TLSConfigFromFiles: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("TLSConfigFromFiles: %v, want an error with %q", err, tc.want)
			}
		})
	}
}
