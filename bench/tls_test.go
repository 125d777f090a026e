package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/pki"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

func TestNodeArgsTLS(t *testing.T) {
	specs := Specs(3, 27400, "/w")
	sys := System{Kind: KindHeartbeat, TLS: true, TLSDir: "/w/tls"}
	args := NodeArgs(sys, specs[1], InitialCluster(specs))
	line := strings.Join(args, " ")
	for _, want := range []string{"--cacert /w/tls/ca.pem", "--cert /w/tls/n2.pem", "--key /w/tls/n2-key.pem", "--cluster-id " + ClusterID} {
		if !strings.Contains(line, want) {
			t.Errorf("%q lacks %q", line, want)
		}
	}
	if plain := strings.Join(NodeArgs(System{Kind: KindHeartbeat}, specs[1], ""), " "); strings.Contains(plain, "--cacert") {
		t.Errorf("plaintext system has TLS flags: %q", plain)
	}
	if specs[1].HTTPBase() != "http://127.0.0.1:27422" {
		t.Errorf("plain base %q", specs[1].HTTPBase())
	}
	specs[1].HTTPS = true
	if specs[1].HTTPBase() != "https://127.0.0.1:27422" {
		t.Errorf("TLS base %q", specs[1].HTTPBase())
	}
}

func TestStartClusterTLSNeedsCertificates(t *testing.T) {
	for _, sys := range []System{
		{Name: "x", Kind: KindHeartbeat, Binary: "/bin/false", TLS: true},                      // no TLSDir
		{Name: "x", Kind: KindRaftTCP, Binary: "/bin/false", TLS: true, TLSDir: t.TempDir()},   // not heartbeat
		{Name: "x", Kind: KindHeartbeat, Binary: "/bin/false", TLS: true, TLSDir: t.TempDir()}, // no files
	} {
		if c, err := StartCluster(sys, 3, 29000, t.TempDir()); err == nil {
			_ = c.Close()
			t.Errorf("%+v: started", sys)
		}
	}
}

// tlsNode starts a fake node serving /v1/status over HTTPS with node n1's certificate from dir,
// client certificates required (as a node's HTTP port needs one or a token); it counts the
// connections it accepted. It returns the node's base URL.
func tlsNode(t *testing.T, dir string, conns *atomic.Int32) string {
	st, err := pki.NewStore(pki.StoreOptions{CAFile: filepath.Join(dir, "ca.pem"),
		CertFile: filepath.Join(dir, "n1.pem"), KeyFile: filepath.Join(dir, "n1-key.pem")})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			http.Error(w, "no client certificate", http.StatusUnauthorized)
			return
		}
		writeProto(w, &heartbeatpb.GetStatusResponse{NodeId: "n1", State: heartbeatpb.RaftStateOf("leader"), Term: 2,
			Leader: &heartbeatpb.NodeRef{NodeId: "n1"}})
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are the test's point
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	// Not StartTLS: it would present its own localhost certificate instead of the node's
	// (GetCertificate).
	srv.Listener = tls.NewListener(srv.Listener, st.ServerTLSConfig(true))
	srv.Start()
	t.Cleanup(srv.Close)
	return "https://" + srv.Listener.Addr().String()
}

// TestPollerOverTLS: with MakeTLS's certificates the poller reaches an HTTPS node with the
// admin client certificate, verifying the node by the cluster CA (the URL's 127.0.0.1 is not
// what is checked), on one kept-alive connection: one handshake for many polls.
func TestPollerOverTLS(t *testing.T) {
	dir := t.TempDir()
	if err := MakeTLS(dir, 3); err != nil {
		t.Fatal(err)
	}
	id, err := pki.IdentityOf(mustLeaf(t, filepath.Join(dir, pki.CertFile(ClientName))))
	if err != nil || id.Cluster != ClusterID || !id.Has(pki.RoleAdmin) {
		t.Fatalf("client identity %v, %v: want an admin of cluster %s", id, err, ClusterID)
	}
	cfg, err := ClientTLS(dir)
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int32
	url := tlsNode(t, dir, &conns)
	p := NewPoller([]Target{{ID: "n1", HTTPAddr: url, TLS: cfg}}, 2*time.Millisecond, time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err = p.WaitFor(ctx, func(map[string]Sample) bool {
		ok := 0
		for _, s := range p.Samples() {
			if s.OK {
				ok++
			}
		}
		return ok >= 20
	})
	p.Close()
	if err != nil {
		t.Fatalf("%v; samples %+v", err, p.Latest())
	}
	if got := p.Latest()["n1"].Status; got.State != "leader" || got.Leader.ID != "n1" {
		t.Errorf("status over TLS %+v", got)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for the polls, want 1 (keep-alive: one TLS handshake)", n)
	}

	// Without the client certificate the node refuses; with another cluster's CA the
	// benchmark refuses the node.
	plainTLS := NewHTTPClient(time.Second, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // the test's point: no client certificate
	defer plainTLS.CloseIdleConnections()
	if _, err := FetchStatus(ctx, plainTLS, url); err == nil {
		t.Error("a client without a certificate was served")
	}
	other := t.TempDir()
	if _, err := pki.Init(pki.InitOptions{Dir: other, Cluster: "other", Clients: []pki.ClientSpec{{Name: ClientName, Roles: []pki.Role{pki.RoleAdmin}}}}); err != nil {
		t.Fatal(err)
	}
	otherCfg, err := ClientTLS(other)
	if err != nil {
		t.Fatal(err)
	}
	oc := NewHTTPClient(time.Second, otherCfg)
	defer oc.CloseIdleConnections()
	if _, err := FetchStatus(ctx, oc, url); err == nil {
		t.Error("a node of another CA was believed")
	}
}

func TestNodeURL(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:1":         "http://127.0.0.1:1/v1/status",
		"https://127.0.0.1:1": "https://127.0.0.1:1/v1/status",
		"http://h:2":          "http://h:2/v1/status",
	} {
		if got := nodeURL(in, "/v1/status"); got != want {
			t.Errorf("nodeURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestClientTLSMissingFiles(t *testing.T) {
	if _, err := ClientTLS(t.TempDir()); err == nil {
		t.Error("no files: no error")
	}
}

func TestTLSSection(t *testing.T) {
	off := goodHB()
	on := goodHB()
	on.Name = TLSSystem
	on.Crash.Summary.P50Ms, on.Crash.Summary.P99Ms = 44, 99
	on.Idle = &IdleResult{LeaderCPU: 1.65, FollowerCPUMean: 0.55, FollowerCPUMax: 0.9, MaxRSSMB: 33}
	r := &Results{Systems: []SystemResult{*off, *on}, Throughput: &ThroughputResult{Ratio: 1, TLSRatio: 0.85}}
	md := r.Markdown()
	for _, want := range []string{"## mTLS on ÷ off (heartbeat-tls ÷ heartbeat", "| 1.10x | 1.10x | 1.00x | 1.00x | 1.10x | 1.10x | 1.10x | 0.85x |",
		"within 1.2x of plaintext: yes", "Heartbeat with mTLS ÷ without: 0.85x"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	bad := *off
	bad.Errors = []string{"idle: leader changed during the idle phase (n1 -> n2)"}
	md = (&Results{Systems: []SystemResult{bad, *on}}).tlsSection()
	if !strings.Contains(md, "| — | — | — |") || !strings.Contains(md, "not measured (an idle phase failed") {
		t.Errorf("failed idle phase still compared:\n%s", md)
	}
	on.Idle.LeaderCPU = 2
	if v := tlsIdleVerdict(on.Idle, off.Idle); !strings.HasPrefix(v, "no (leader 1.33x") {
		t.Errorf("verdict %q", v)
	}
	if s := (&Results{Systems: []SystemResult{*off}}).tlsSection(); s != "" {
		t.Errorf("one system: %q", s)
	}
	if v := tlsIdleVerdict(on.Idle, &IdleResult{}); !strings.Contains(v, "not measured") {
		t.Errorf("zero plaintext CPU: %q", v)
	}
}

func mustLeaf(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
