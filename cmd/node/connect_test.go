package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/heartbeat-sidecar/heartbeat/authz"
	"github.com/heartbeat-sidecar/heartbeat/pki"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// cliToken is the token the fake node's tokens file lists (role read).
const cliToken = "cli-s3cret"

// authNode is a Coordinator that answers GetStatus as node n1 of cluster
// c1 behind the authorizer, and records how each call authenticated.
type authNode struct {
	heartbeatpb.UnimplementedCoordinatorServer
	mu   sync.Mutex
	seen []string // "cert <identity>", "token <header>" or "none"
}

func (f *authNode) GetStatus(context.Context, *heartbeatpb.GetStatusRequest) (*heartbeatpb.GetStatusResponse, error) {
	return &heartbeatpb.GetStatusResponse{NodeId: "n1", ClusterId: "c1"}, nil
}

// last is how the last call authenticated.
func (f *authNode) last() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.seen) == 0 {
		return ""
	}
	return f.seen[len(f.seen)-1]
}

// serveAuthNode serves f on loopback with the authorizer of a node that
// lets in client certificates (when st is set: TLS with st's certificate)
// and cliToken.
func serveAuthNode(t *testing.T, f *authNode, st *pki.Store) string {
	t.Helper()
	a, err := authz.New(authz.Config{SelfID: "n1", TLS: st != nil, Tokens: []authz.Token{authz.NewToken("ci", pki.RoleRead, cliToken)}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts := []grpc.ServerOption{grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		who := "none"
		if id, ok := pki.IdentityFromContext(ctx); ok {
			who = "cert " + id.String()
		} else if md, _ := metadata.FromIncomingContext(ctx); len(md.Get("authorization")) > 0 {
			who = "token " + md.Get("authorization")[0]
		}
		f.mu.Lock()
		f.seen = append(f.seen, who)
		f.mu.Unlock()
		return h(ctx, req)
	}, a.UnaryInterceptor)}
	if st != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(st.ServerTLSConfig(false))))
	}
	s := grpc.NewServer(opts...)
	heartbeatpb.RegisterCoordinatorServer(s, f)
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ln) }()
	t.Cleanup(func() { s.Stop(); <-done })
	return ln.Addr().String()
}

// TestCLISecurity: the common flags --cacert, --cert, --key and --token
// (and their HEARTBEAT_* variables) against real gRPC servers with the
// sidecars' authorizer: TLS with a client certificate, TLS with a token
// (literal or @FILE), plaintext with a token on loopback; refusals by the
// server (exit 1) and mistakes refused before anything is sent (exit 2).
func TestCLISecurity(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	cliOK(t, "tls", "init", "--out", dir, "--cluster-id", "c1", "--nodes", "n1", "--clients", "client:admin")
	foreign := filepath.Join(t.TempDir(), "foreign")
	cliOK(t, "tls", "init", "--out", foreign, "--cluster-id", "c1", "--nodes", "n1")
	st, err := pki.NewStore(pki.StoreOptions{CertFile: filepath.Join(dir, "n1.pem"), KeyFile: filepath.Join(dir, "n1-key.pem"), CAFile: filepath.Join(dir, "ca.pem")})
	if err != nil {
		t.Fatal(err)
	}
	node := &authNode{}
	tlsAddr := serveAuthNode(t, node, st)
	plain := &authNode{}
	plainAddr := serveAuthNode(t, plain, nil)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(cliToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ca, cert, key := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")

	tests := []struct {
		name     string
		srv      *authNode // nil: nothing may reach a server
		args     []string
		env      map[string]string
		wantCode int
		wantErr  string // in stderr
		wantSeen string // how the call reached srv
	}{
		{name: "client certificate from the environment", srv: node, args: []string{"status"},
			env:      map[string]string{"HEARTBEAT_ADDR": tlsAddr, "HEARTBEAT_CACERT": ca, "HEARTBEAT_CERT": cert, "HEARTBEAT_KEY": key},
			wantSeen: "cert client client (admin) of cluster c1"},
		{name: "client certificate from flags", srv: node, args: []string{"status", "--addr", tlsAddr, "--cacert", ca, "--cert", cert, "--key", key},
			wantSeen: "cert client client (admin) of cluster c1"},
		{name: "CA and a token from a file", srv: node, args: []string{"status", "--addr", tlsAddr, "--cacert", ca, "--token", "@" + tokenFile},
			wantSeen: "token Bearer " + cliToken},
		{name: "CA and a token from the environment", srv: node, args: []string{"status", "--addr", tlsAddr},
			env:      map[string]string{"HEARTBEAT_CACERT": ca, "HEARTBEAT_TOKEN": cliToken},
			wantSeen: "token Bearer " + cliToken},
		{name: "plaintext token to loopback", srv: plain, args: []string{"status", "--addr", plainAddr, "--token", cliToken},
			wantSeen: "token Bearer " + cliToken},
		{name: "CA without credentials refused by the node", srv: node, args: []string{"status", "--addr", tlsAddr, "--cacert", ca},
			wantCode: exitFailure, wantErr: "Unauthenticated", wantSeen: "none"},
		{name: "read token may not write", srv: node, args: []string{"resources", "put", "r1", "--addr", tlsAddr, "--cacert", ca, "--token", cliToken},
			wantCode: exitFailure, wantErr: "PermissionDenied"},
		{name: "node of another CA refused by the client", args: []string{"status", "--addr", tlsAddr, "--cacert", filepath.Join(foreign, "ca.pem"), "--token", cliToken, "--timeout", "1s"},
			wantCode: exitFailure, wantErr: "certificate signed by unknown authority"},
		{name: "plaintext to a TLS port", args: []string{"status", "--addr", tlsAddr, "--timeout", "1s"},
			wantCode: exitFailure, wantErr: "Unavailable"},
		{name: "token in the clear to another host", args: []string{"status", "--addr", "10.0.0.1:7401", "--token", cliToken},
			wantCode: exitUsage, wantErr: "--token without --cacert: the token would travel in the clear to 10.0.0.1:7401"},
		{name: "token in the clear to a fallback", args: []string{"status", "--addr", "127.0.0.1:7401,node2:7401", "--token", "@" + tokenFile},
			wantCode: exitUsage, wantErr: "in the clear to node2:7401"},
		{name: "--cert without --key", args: []string{"status", "--addr", tlsAddr, "--cacert", ca, "--cert", cert},
			wantCode: exitUsage, wantErr: "--cert and --key go together"},
		{name: "--cert without --cacert", args: []string{"status", "--addr", tlsAddr, "--cert", cert, "--key", key},
			wantCode: exitUsage, wantErr: "--cert needs --cacert"},
		{name: "missing CA file", args: []string{"status", "--addr", tlsAddr, "--cacert", filepath.Join(dir, "nope.pem")},
			wantCode: exitUsage, wantErr: "no such file"},
		{name: "a node key as the client key", args: []string{"status", "--addr", tlsAddr, "--cacert", ca, "--cert", cert, "--key", filepath.Join(dir, "n1-key.pem")},
			wantCode: exitUsage, wantErr: "private key does not match"},
		{name: "missing token file", args: []string{"status", "--addr", tlsAddr, "--cacert", ca, "--token", "@" + filepath.Join(dir, "nope")},
			wantCode: exitUsage, wantErr: "--token: open"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			node.mu.Lock()
			node.seen = nil
			node.mu.Unlock()
			plain.mu.Lock()
			plain.seen = nil
			plain.mu.Unlock()
			var out, errOut bytes.Buffer
			code := runCLI(context.Background(), tc.env, &out, &errOut, tc.args...)
			if code != tc.wantCode || !strings.Contains(errOut.String(), tc.wantErr) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, errOut.String(), tc.wantCode, tc.wantErr)
			}
			if code == exitOK && !strings.Contains(out.String(), "n1") {
				t.Errorf("status output:\n%s", out.String())
			}
			if tc.wantSeen != "" && tc.srv.last() != tc.wantSeen {
				t.Errorf("the node saw %q, want %q", tc.srv.last(), tc.wantSeen)
			}
			if tc.srv == nil && (node.last() != "" || plain.last() != "") {
				t.Errorf("a node was called: %q %q", node.last(), plain.last())
			}
			if strings.Contains(errOut.String(), cliToken) {
				t.Errorf("stderr shows the token: %s", errOut.String())
			}
		})
	}
}
