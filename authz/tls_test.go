package authz_test

import (
	"context"
	"net"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/authz"
	"github.com/heartbeat-sidecar/heartbeat/pki"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// tlsServer serves an Unimplemented Coordinator behind a's interceptors on
// a TLS listener with node n1's certificate (client certificates optional,
// verified when presented).
func tlsServer(t *testing.T, dir string, a *authz.Authorizer) string {
	t.Helper()
	st := store(t, dir, "n1")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(st.ServerTLSConfig(false))),
		grpc.ChainUnaryInterceptor(a.UnaryInterceptor), grpc.ChainStreamInterceptor(a.StreamInterceptor))
	heartbeatpb.RegisterCoordinatorServer(s, heartbeatpb.UnimplementedCoordinatorServer{})
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ln) }()
	t.Cleanup(func() { s.Stop(); <-done })
	return ln.Addr().String()
}

func store(t *testing.T, dir, name string) *pki.Store {
	t.Helper()
	st, err := pki.NewStore(pki.StoreOptions{
		CertFile: filepath.Join(dir, pki.CertFile(name)),
		KeyFile:  filepath.Join(dir, pki.KeyFile(name)),
		CAFile:   filepath.Join(dir, pki.CAFile),
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func dialAs(t *testing.T, dir, addr, name string) *grpc.ClientConn {
	t.Helper()
	var creds credentials.TransportCredentials
	if name == "" {
		// TLS without a client certificate: the CA's pool verifies the
		// server, nothing is presented.
		st := store(t, dir, "ro")
		cfg := st.ClientTLSConfig(nil)
		cfg.GetClientCertificate = nil
		creds = credentials.NewTLS(cfg)
	} else {
		creds = credentials.NewTLS(store(t, dir, name).ClientTLSConfig(nil))
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// TestCertificates: over real mutual TLS, a client certificate's roles
// decide; a node certificate is an admin; a forwarded identity is believed
// from the node itself (n1) and from no other node (n2).
func TestCertificates(t *testing.T) {
	dir := t.TempDir()
	if _, err := pki.Init(pki.InitOptions{Dir: dir, Cluster: "c1", Nodes: []string{"n1", "n2"},
		Clients: []pki.ClientSpec{{Name: "ro", Roles: []pki.Role{pki.RoleRead}}, {Name: "app", Roles: []pki.Role{pki.RoleWrite}}}}); err != nil {
		t.Fatal(err)
	}
	a, err := authz.New(authz.Config{SelfID: "n1", TLS: true, Tokens: []authz.Token{authz.NewToken("r", pki.RoleRead, secretRead)}})
	if err != nil {
		t.Fatal(err)
	}
	addr := tlsServer(t, dir, a)
	for _, tc := range []struct {
		as, method, fwd string
		want            codes.Code
		token           string
	}{
		{"ro", "GetStatus", "", codes.Unimplemented, ""},
		{"ro", "RegisterResources", "", codes.PermissionDenied, ""},
		{"app", "RegisterResources", "", codes.Unimplemented, ""},
		{"app", "Remove", "", codes.PermissionDenied, ""},
		{"n2", "Remove", "", codes.Unimplemented, ""},
		{"", "GetStatus", "", codes.Unauthenticated, ""},
		{"n1", "Remove", "client/ro/read", codes.PermissionDenied, ""},
		{"n1", "GetStatus", "client/ro/read", codes.Unimplemented, ""},
		{"n2", "GetStatus", "client/ro/read", codes.Unauthenticated, ""},
		{"app", "Remove", "client/eve/admin", codes.Unauthenticated, ""},
		// The gateway's connection carries the node's own certificate: an
		// HTTP caller without one is not the node.
		{"n1", "GetStatus", authz.NoForwardedIdentity, codes.Unauthenticated, ""},
		{"n1", "GetStatus", authz.NoForwardedIdentity, codes.Unimplemented, secretRead},
		{"n1", "Remove", authz.NoForwardedIdentity, codes.PermissionDenied, secretRead},
		{"", "GetStatus", "", codes.Unimplemented, secretRead},
	} {
		cc := dialAs(t, dir, addr, tc.as)
		ctx := context.Background()
		if tc.fwd != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, authz.MDForwardedIdentity, tc.fwd)
		}
		if tc.token != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, authz.MDAuthorization, "Bearer "+tc.token)
		}
		err := cc.Invoke(ctx, "/heartbeat.v1.Coordinator/"+tc.method, &heartbeatpb.GetStatusRequest{}, &heartbeatpb.GetStatusResponse{})
		if got := status.Code(err); got != tc.want {
			t.Errorf("%q calling %s (forwarded %q): %v, want %v", tc.as, tc.method, tc.fwd, err, tc.want)
		}
	}
	// Plaintext to a TLS port does not even reach the policy.
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if err := cc.Invoke(context.Background(), "/heartbeat.v1.Coordinator/GetStatus", &heartbeatpb.GetStatusRequest{}, &heartbeatpb.GetStatusResponse{}); status.Code(err) != codes.Unavailable {
		t.Errorf("plaintext call to a TLS port: %v, want Unavailable", err)
	}
}
