package node_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/authz"
	"github.com/heartbeat-sidecar/heartbeat/gateway"
	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
	"github.com/heartbeat-sidecar/heartbeat/node"
	"github.com/heartbeat-sidecar/heartbeat/pki"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
	"github.com/heartbeat-sidecar/heartbeat/proto/raftpb"
	"github.com/heartbeat-sidecar/heartbeat/rpc/transport"
)

// tlsDirs makes the cluster's certificates (nodes n1..n3, clients admin,
// app (write), ro (read)) and an outsider's: another CA for the same
// cluster id, and another cluster.
func tlsDirs(t *testing.T) (good, otherCA, otherCluster string) {
	t.Helper()
	clients := []pki.ClientSpec{{Name: "admin", Roles: []pki.Role{pki.RoleAdmin}}, {Name: "app", Roles: []pki.Role{pki.RoleWrite}}, {Name: "ro", Roles: []pki.Role{pki.RoleRead}}}
	cid := node.DefaultConfig().ClusterID
	good, otherCA, otherCluster = t.TempDir(), t.TempDir(), t.TempDir()
	for dir, cluster := range map[string]string{good: cid, otherCA: cid, otherCluster: "other"} {
		if _, err := pki.Init(pki.InitOptions{Dir: dir, Cluster: cluster, Nodes: []string{"n1", "n2", "n3", "n4"}, Clients: clients}); err != nil {
			t.Fatal(err)
		}
	}
	return good, otherCA, otherCluster
}

func tlsFiles(dir, name string) (ca, cert, key string) {
	return filepath.Join(dir, pki.CAFile), filepath.Join(dir, pki.CertFile(name)), filepath.Join(dir, pki.KeyFile(name))
}

func tlsStore(t *testing.T, dir, name string) *pki.Store {
	t.Helper()
	ca, cert, key := tlsFiles(dir, name)
	st, err := pki.NewStore(pki.StoreOptions{CAFile: ca, CertFile: cert, KeyFile: key})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// dialAs dials addr with name's certificate from dir ("" : plaintext).
func dialAs(t *testing.T, dir, name, addr string) *grpc.ClientConn {
	t.Helper()
	creds := insecure.NewCredentials()
	if name != "" {
		creds = credentials.NewTLS(tlsStore(t, dir, name).ClientTLSConfig(nil))
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// httpsAs is an HTTPS client with name's certificate ("": none), trusting
// dir's CA.
func httpsAs(t *testing.T, dir, name string) *http.Client {
	t.Helper()
	st := tlsStore(t, dir, "ro")
	cfg := st.ClientTLSConfig(nil)
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tls.Certificate{}, nil }
	if name != "" {
		cfg = tlsStore(t, dir, name).ClientTLSConfig(nil)
	}
	tr := &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Timeout: 10 * time.Second, Transport: tr}
}

// startTLSCluster starts n1..n3 with mutual TLS and a tokens file.
func startTLSCluster(t *testing.T, dir string) *testcluster.Cluster {
	t.Helper()
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("ci-read read "+tokRead+"\nci-write write "+tokWrite+"\nci-admin admin "+tokAdmin+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return startCluster(t, 3, 0, testcluster.Options{Tweak: func(c *node.Config) {
		c.CAFile, c.CertFile, c.KeyFile = tlsFiles(dir, c.ID)
		c.TokensFile = tokens
	}})
}

const tokRead, tokWrite, tokAdmin = "read-token-0123456789", "write-token-0123456789", "admin-token-0123456789"

// TestTLSPeerPort: with mutual TLS, the peer port admits only nodes of the
// cluster, each under its own id. A caller without a certificate, with a
// client's certificate, with one of another CA or of another cluster
// fails the handshake, whatever it calls (AppendEntries, TimeoutNow,
// Removed, Join); node n2's certificate naming itself n3 (in metadata or
// in the raft header) is refused and counted. The cluster keeps its leader
// and term throughout, and replicates writes over TLS.
func TestTLSPeerPort(t *testing.T) {
	good, otherCA, otherCluster := tlsDirs(t)
	c := startTLSCluster(t, good)
	leader := c.Leader()
	f := c.Follower()
	r := f.Election().Raft()
	termBefore := r.CurrentTerm()
	cid := node.DefaultConfig().ClusterID

	attack := func(cc *grpc.ClientConn, id string) []error {
		ctx := metadata.AppendToOutgoingContext(ctxT(t), transport.MetadataCluster, cid, transport.MetadataNodeID, id)
		hdr := &raftpb.RPCHeader{ProtocolVersion: 3, Id: []byte(id), Addr: []byte(f.PeerAddr())}
		rt := raftpb.NewRaftTransportClient(cc)
		ad := raftpb.NewClusterAdminClient(cc)
		var errs []error
		_, err := rt.AppendEntries(ctx, &raftpb.AppendEntriesRequest{Header: hdr, Term: termBefore + 5, Leader: []byte(f.PeerAddr())})
		errs = append(errs, err)
		_, err = rt.TimeoutNow(ctx, &raftpb.TimeoutNowRequest{Header: hdr})
		errs = append(errs, err)
		_, err = ad.Removed(ctx, &raftpb.RemovedRequest{Id: f.ID(), LeaderId: leader.ID()})
		errs = append(errs, err)
		_, err = ad.Join(ctx, &raftpb.JoinRequest{Id: "evil", PeerAddress: "127.0.0.1:1", Voter: true, ClusterId: cid})
		errs = append(errs, err)
		return errs
	}
	for _, tc := range []struct{ name, dir, cert string }{
		{"no certificate", "", ""},
		{"a client's certificate", good, "admin"},
		{"another CA's node certificate", otherCA, "n3"},
		{"another cluster's node certificate", otherCluster, "n3"},
	} {
		var cc *grpc.ClientConn
		if tc.dir == "" {
			cc = dialAs(t, good, "", f.PeerAddr())
		} else {
			cc = dialAs(t, tc.dir, tc.cert, f.PeerAddr())
		}
		for i, err := range attack(cc, "n3") {
			if status.Code(err) != codes.Unavailable {
				t.Errorf("%s, call %d: %v, want Unavailable (refused at the handshake)", tc.name, i, err)
			}
		}
	}
	// A member's certificate, claiming another member's id.
	var others []string
	for _, id := range []string{"n1", "n2", "n3"} {
		if id != f.ID() {
			others = append(others, id)
		}
	}
	n2, claim := others[0], others[1]
	impostor := dialAs(t, good, n2, f.PeerAddr())
	for i, err := range attack(impostor, claim) {
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s's certificate claiming %s, call %d: %v, want PermissionDenied", n2, claim, i, err)
		}
	}
	// The header alone lying (metadata true): refused too.
	ctx := metadata.AppendToOutgoingContext(ctxT(t), transport.MetadataCluster, cid, transport.MetadataNodeID, n2)
	_, err := raftpb.NewRaftTransportClient(impostor).TimeoutNow(ctx, &raftpb.TimeoutNowRequest{Header: &raftpb.RPCHeader{ProtocolVersion: 3, Id: []byte(claim), Addr: []byte(f.PeerAddr())}})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("TimeoutNow with %s's certificate and header id %s: %v, want PermissionDenied", n2, claim, err)
	}
	// A member's certificate, truthful about itself, asking to add another
	// node: a node joins only as itself.
	ctx = metadata.AppendToOutgoingContext(ctxT(t), transport.MetadataCluster, cid, transport.MetadataNodeID, n2)
	_, err = raftpb.NewClusterAdminClient(impostor).Join(ctx, &raftpb.JoinRequest{Id: "evil", PeerAddress: "127.0.0.1:1", Voter: true, ClusterId: cid})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("Join of node evil with %s's certificate: %v, want PermissionDenied", n2, err)
	}
	if _, err := raftpb.NewClusterAdminClient(impostor).Join(ctx, &raftpb.JoinRequest{Id: n2, PeerAddress: c.Node(n2).PeerAddr(), Voter: true, ClusterId: cid}); err != nil {
		t.Errorf("Join of %s as itself (already a member: a no-op): %v", n2, err)
	}
	// The header's id true, its address another member's: refused.
	_, err = raftpb.NewRaftTransportClient(impostor).TimeoutNow(ctx, &raftpb.TimeoutNowRequest{Header: &raftpb.RPCHeader{ProtocolVersion: 3, Id: []byte(n2), Addr: []byte(c.Node(claim).PeerAddr())}})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("TimeoutNow from %s giving %s's address: %v, want PermissionDenied", n2, claim, err)
	}
	if got := r.CurrentTerm(); got != termBefore {
		t.Errorf("the follower's term moved from %d to %d", termBefore, got)
	}
	if c.Leader().ID() != leader.ID() {
		t.Errorf("leadership moved from %s to %s", leader.ID(), c.Leader().ID())
	}
	// Writes through a follower (forwarded over the peer port) and a
	// consistent read elsewhere (read index over the peer port), over TLS.
	admin := heartbeatpb.NewCoordinatorClient(dialAs(t, good, "admin", f.ClientAddr()))
	if _, err := admin.RegisterResources(ctxT(t), &heartbeatpb.RegisterResourcesRequest{Resources: []*heartbeatpb.ResourceSpec{{Id: "r1"}}}); err != nil {
		t.Fatalf("register through a follower: %v", err)
	}
	lst, err := heartbeatpb.NewCoordinatorClient(dialAs(t, good, "ro", leader.ClientAddr())).ListResources(ctxT(t), &heartbeatpb.ListResourcesRequest{})
	if err != nil || len(lst.GetResources()) != 1 {
		t.Fatalf("consistent read: %v, %v", lst, err)
	}
	// A new node joins over TLS, as itself.
	n4 := c.Join("n4", testcluster.FreeAddrs(t, 1)[0], false)
	testwait.Eventually(t, waitTimeout, "n4 in the raft configuration", func() (bool, string) {
		f := leader.Election().Raft().GetConfiguration()
		if f.Error() != nil {
			return false, f.Error().Error()
		}
		for _, s := range f.Configuration().Servers {
			if string(s.ID) == n4.ID() {
				return true, ""
			}
		}
		return false, fmt.Sprint(f.Configuration().Servers)
	})
}

// TestTLSRoles tries every HTTP route of the API (and so every Coordinator
// call it maps to) on a TLS node with no credentials, and with a read, a
// write and an admin identity, by client certificate and by token, and
// checks the answer against the role table (authz.DefaultPolicy):
// 401 without credentials, 403 below the role, neither at or above it.
func TestTLSRoles(t *testing.T) {
	good, _, _ := tlsDirs(t)
	c := startTLSCluster(t, good)
	n := c.Follower()
	base := "https://" + n.HTTPAddr()
	policy := authz.DefaultPolicy()
	type caller struct {
		name, cert, token string
		role              pki.Role
	}
	callers := []caller{
		{"nobody", "", "", ""},
		{"bad token", "", "not-a-token-at-all-000", ""},
		{"ro cert", "ro", "", pki.RoleRead},
		{"app cert", "app", "", pki.RoleWrite},
		{"read token", "", tokRead, pki.RoleRead},
		{"write token", "", tokWrite, pki.RoleWrite},
		{"admin cert", "admin", "", pki.RoleAdmin},
		{"admin token", "", tokAdmin, pki.RoleAdmin},
	}
	tried := 0
	for _, rt := range gateway.Routes() {
		need, listed := policy[rt.RPC], true
		switch {
		case rt.Handler == gateway.HandlerMetrics:
			need = policy[authz.HTTPMetrics]
		case rt.Handler != "" || rt.Pending != "":
			continue // health, readiness, the document: public
		case rt.RPC == "":
			listed = false
		}
		if !listed {
			continue
		}
		path := strings.NewReplacer("{node_id}", n.ID(), "{id...}", "r-none", "{ids...}", "r-none", "{id}", "r-none").Replace(rt.Pattern)
		for _, cl := range callers {
			// An admin may do what changes the cluster: not here (the node
			// would leave, or leadership move); the refusals are the point.
			if cl.role == pki.RoleAdmin && (strings.Contains(rt.RPC, "Leave") || strings.Contains(rt.RPC, "StepDown")) {
				continue
			}
			var body io.Reader
			if rt.Method != http.MethodGet {
				body = strings.NewReader("{}")
			}
			req, err := http.NewRequest(rt.Method, base+path, body)
			if err != nil {
				t.Fatal(err)
			}
			if cl.token != "" {
				req.Header.Set("Authorization", "Bearer "+cl.token)
			}
			ctx, cancel := context.WithTimeout(ctxT(t), 3*time.Second)
			resp, err := httpsAs(t, good, cl.cert).Do(req.WithContext(ctx))
			code := 0
			if err == nil {
				code = resp.StatusCode
				if rt.SSE == nil { // a watch let in streams on: its status is enough
					_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
				}
				resp.Body.Close()
			}
			cancel()
			if err != nil {
				t.Errorf("%s %s as %s: %v", rt.Method, path, cl.name, err)
				continue
			}
			tried++
			want := ""
			switch {
			case cl.role == "":
				want = "401"
			case !cl.role.Implies(need):
				want = "403"
			}
			got := fmt.Sprint(code)
			if want != "" && got != want || want == "" && (code == 401 || code == 403) {
				t.Errorf("%s %s as %s (needs %s): %d, want %s", rt.Method, path, cl.name, need, code, map[string]string{"": "neither 401 nor 403"}[want]+want)
			}
		}
	}
	if tried < 50 {
		t.Errorf("only %d calls tried", tried)
	}
	// The plaintext metrics listener is not configured here: /metrics on
	// the API port needs read.
}

// TestTLSConfigRefusals: a node refuses to start on a non-loopback address
// without TLS unless Insecure, and refuses a certificate that is not its
// own.
func TestTLSConfigRefusals(t *testing.T) {
	good, _, _ := tlsDirs(t)
	cfg := node.DefaultConfig()
	cfg.ID, cfg.DataDir = "n1", t.TempDir()
	cfg.PeerAddr, cfg.AdvertisePeerAddr = "0.0.0.0:7400", "10.0.0.1:7400"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "not a loopback address and TLS is off") {
		t.Errorf("wildcard bind without TLS: %v", err)
	}
	cfg.Insecure = true
	if err := cfg.Validate(); err != nil {
		t.Errorf("wildcard bind with Insecure: %v", err)
	}
	cfg.Insecure = false
	cfg.CAFile, cfg.CertFile, cfg.KeyFile = tlsFiles(good, "n1")
	if err := cfg.Validate(); err != nil {
		t.Errorf("wildcard bind with TLS: %v", err)
	}
	// n2's certificate for node n1: refused at start, naming both.
	c := testcluster.New(t, 1, testcluster.Options{})
	bad := c.Config("n1", testcluster.FreeAddrs(t, 1)[0])
	bad.CAFile, bad.CertFile, bad.KeyFile = tlsFiles(good, "n2")
	if _, err := node.New(bad); err == nil || !strings.Contains(err.Error(), "not of node n1") {
		t.Errorf("another node's certificate: %v", err)
	}
}

// peerSerial is the serial of the certificate the node at addr presents.
func peerSerial(t *testing.T, dir, addr string) string {
	t.Helper()
	cfg := tlsStore(t, dir, "admin").ClientTLSConfig(nil)
	conn, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return "dial: " + err.Error()
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// TestTLSRotation replaces a node's certificate and key files while the
// cluster takes writes: the node presents the new certificate on its next
// handshakes with no restart, and no election happens (the term stays).
func TestTLSRotation(t *testing.T) {
	good, _, _ := tlsDirs(t)
	c := startTLSCluster(t, good)
	leader := c.Leader()
	term := leader.Election().Raft().CurrentTerm()
	n := c.Follower()
	before := peerSerial(t, good, n.PeerAddr())

	// A new certificate for n from the same CA, made elsewhere.
	fresh := t.TempDir()
	for _, f := range []string{pki.CAFile, pki.CAKeyFile} {
		b, err := os.ReadFile(filepath.Join(good, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(fresh, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pki.Init(pki.InitOptions{Dir: fresh, Cluster: node.DefaultConfig().ClusterID, Nodes: []string{n.ID()}}); err != nil {
		t.Fatal(err)
	}

	// Load: writes through the node being rotated, all along.
	admin := heartbeatpb.NewCoordinatorClient(dialAs(t, good, "admin", n.ClientAddr()))
	stop := make(chan struct{})
	done := make(chan int)
	var acked atomic.Int64
	go func() {
		i := 0
		for {
			select {
			case <-stop:
				done <- i
				return
			default:
			}
			if _, err := admin.RegisterResources(ctxT(t), &heartbeatpb.RegisterResourcesRequest{Resources: []*heartbeatpb.ResourceSpec{{Id: fmt.Sprintf("rot-%d", i)}}}); err == nil {
				i++
				acked.Add(1)
			}
		}
	}()
	// Replace key and certificate, each by an atomic rename.
	for _, f := range []string{pki.KeyFile(n.ID()), pki.CertFile(n.ID())} {
		b, err := os.ReadFile(filepath.Join(fresh, f))
		if err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(good, f+".new")
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(good, f)); err != nil {
			t.Fatal(err)
		}
	}
	var after string
	testwait.Eventually(t, waitTimeout, "the node presents a new certificate", func() (bool, string) {
		after = peerSerial(t, good, n.PeerAddr())
		return after != before && !strings.HasPrefix(after, "dial"), "serial " + after
	})
	// Keep the load on for 20 more writes over the new certificate.
	from := acked.Load()
	testwait.Eventually(t, waitTimeout, "20 writes after the rotation", func() (bool, string) {
		n := acked.Load()
		return n >= from+20, fmt.Sprintf("%d writes since", n-from)
	})
	close(stop)
	writes := <-done
	if after == before || strings.HasPrefix(after, "dial") {
		t.Fatalf("the node still presents serial %s (now %s) after the files changed", before, after)
	}
	if writes == 0 {
		t.Error("no write succeeded during the rotation")
	}
	if got := c.Leader().Election().Raft().CurrentTerm(); got != term || c.Leader().ID() != leader.ID() {
		t.Errorf("an election happened during the rotation: term %d -> %d, leader %s -> %s", term, got, leader.ID(), c.Leader().ID())
	}
	t.Logf("rotated %s's certificate (serial %s -> %s) under %d writes, term %d unchanged", n.ID(), before, after, writes, term)
}

// TestTLSMetricsListener: --metrics-addr serves /healthz, /readyz and
// /metrics in plaintext without credentials, and nothing of the API; on
// the HTTPS port /metrics needs role read.
func TestTLSMetricsListener(t *testing.T) {
	good, _, _ := tlsDirs(t)
	maddr := testcluster.FreeAddrs(t, 1)[0]
	c := startCluster(t, 1, 0, testcluster.Options{Tweak: func(cfg *node.Config) {
		cfg.CAFile, cfg.CertFile, cfg.KeyFile = tlsFiles(good, cfg.ID)
		cfg.MetricsAddr = maddr
	}})
	n := c.Leader()
	for path, want := range map[string]int{"/metrics": 200, "/healthz": 200, "/readyz": 200, "/v1/status": 404} {
		if code, body := httpDo(t, http.MethodGet, "http://"+maddr+path); code != want {
			t.Errorf("plaintext %s: %d %.100s, want %d", path, code, body, want)
		}
	}
	for name, want := range map[string]int{"": 401, "ro": 200} {
		resp, err := httpsAs(t, good, name).Get("https://" + n.HTTPAddr() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("HTTPS /metrics as %q: %d, want %d", name, resp.StatusCode, want)
		}
	}
}
