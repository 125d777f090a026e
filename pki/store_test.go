package pki

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
)

// waitFor bounds the polls of these tests (shared machine, -race).
const waitFor = 10 * time.Second

// initDir runs Init for cluster into a new directory and returns it.
func initDir(t *testing.T, cluster string, nodes []string, clients ...ClientSpec) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tls")
	if _, err := Init(InitOptions{Dir: dir, Cluster: cluster, Nodes: nodes, Clients: clients}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// newStore opens the store of name's files in dir with caFile (default
// dir/ca.pem) and a short CheckInterval.
func newStore(t *testing.T, dir, name, caFile string) *Store {
	t.Helper()
	if caFile == "" {
		caFile = filepath.Join(dir, CAFile)
	}
	s, err := NewStore(StoreOptions{
		CertFile:      filepath.Join(dir, CertFile(name)),
		KeyFile:       filepath.Join(dir, KeyFile(name)),
		CAFile:        caFile,
		CheckInterval: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// bundle writes the concatenation of files into a new file and returns its
// path: a CA bundle trusting several CAs.
func bundle(t *testing.T, files ...string) string {
	t.Helper()
	var b bytes.Buffer
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(data)
	}
	path := filepath.Join(t.TempDir(), "bundle.pem")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// result is one side of a TLS connection after the handshake.
type result struct {
	state tls.ConnectionState
	err   error
}

// handshake makes one TLS connection over loopback between a server with
// srvCfg and a client with cliCfg and returns what each side saw. The
// client reads one byte the server writes after its handshake, so that a
// client certificate the server refuses (which TLS 1.3 reports after the
// client's handshake is done) is an error on both sides.
func handshake(t *testing.T, srvCfg, cliCfg *tls.Config) (srv, cli result) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	deadline := time.Now().Add(waitFor)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		conn, err := ln.Accept()
		if err != nil {
			srv.err = err
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(deadline)
		tc := tls.Server(conn, srvCfg)
		srv.err = tc.Handshake()
		srv.state = tc.ConnectionState()
		if srv.err == nil {
			_, srv.err = tc.Write([]byte{'k'})
		}
	}()
	defer wg.Wait()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		cli.err = err
		return srv, cli
	}
	defer conn.Close()
	_ = conn.SetDeadline(deadline)
	tc := tls.Client(conn, cliCfg)
	cli.err = tc.Handshake()
	cli.state = tc.ConnectionState()
	if cli.err == nil {
		_, cli.err = tc.Read(make([]byte, 1))
	}
	return srv, cli
}

// serial is the serial of the certificate a connection's peer presented.
func serial(r result) *big.Int {
	if len(r.state.PeerCertificates) == 0 {
		return nil
	}
	return r.state.PeerCertificates[0].SerialNumber
}

// issueWith signs a certificate for id with the extended key usages given
// (whatever its kind) with the CA in dir, and writes its files there.
func issueWith(t *testing.T, dir string, id Identity, usages ...x509.ExtKeyUsage) {
	t.Helper()
	ca, err := loadCA(filepath.Join(dir, CAFile), filepath.Join(dir, CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		ExtKeyUsage:  usages,
		URIs:         []*url.URL{id.URI()},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	if err := writePair(dir, CertFile(id.Name), KeyFile(id.Name), der, key, &InitResult{}); err != nil {
		t.Fatal(err)
	}
}

// rawClient presents s's certificate and verifies nothing: a peer whose
// own checks do not get in the way of the other side's.
func rawClient(s *Store) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, Certificates: []tls.Certificate{*s.Certificate()}}
}

// rawServer presents s's certificate, asks for a client's and verifies
// nothing.
func rawServer(s *Store) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS13, ClientAuth: tls.RequireAnyClientCert, Certificates: []tls.Certificate{*s.Certificate()}}
}

// TestHandshakes: real TLS handshakes over loopback between the configs of
// Stores, each case naming which side must refuse and why.
func TestHandshakes(t *testing.T) {
	home := initDir(t, "c1", []string{"n1", "n2"}, ClientSpec{"app", []Role{RoleWrite}})
	foreign := initDir(t, "c1", []string{"n1", "x"})                                // same cluster id, another CA
	other := initDir(t, "c2", []string{"n2"}, ClientSpec{"app", []Role{RoleAdmin}}) // another cluster
	homeCA, foreignCA, otherCA := filepath.Join(home, CAFile), filepath.Join(foreign, CAFile), filepath.Join(other, CAFile)
	// trustAll trusts the three CAs, so that the checks after the chain
	// (cluster, kind, expect) are what refuses.
	trustAll := bundle(t, homeCA, foreignCA, otherCA)

	n1 := newStore(t, home, "n1", "")
	n2 := newStore(t, home, "n2", "")
	app := newStore(t, home, "app", "")
	n1TrustAll := newStore(t, home, "n1", trustAll)
	foreignX := newStore(t, foreign, "x", trustAll)
	otherN2 := newStore(t, other, "n2", trustAll)
	otherApp := newStore(t, other, "app", trustAll)
	noCert := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}
	// A client identity that the CA (wrongly) let serve: only the kind
	// check of ClientTLSConfig stands in its way.
	issueWith(t, home, Identity{Cluster: "c1", Kind: KindClient, Name: "rogue"}, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
	rogue := newStore(t, home, "rogue", "")

	tests := []struct {
		name         string
		srv, cli     *tls.Config
		srvErr       string // "" : the server accepts
		cliErr       string // "" : the client accepts
		wantIdentity string // the client's identity as the server reads it
	}{
		{name: "node to node", srv: n1.ServerTLSConfig(true), cli: n2.ClientTLSConfig(ExpectNode("n1")),
			wantIdentity: "node n2 of cluster c1"},
		{name: "client with roles", srv: n1.ServerTLSConfig(true), cli: app.ClientTLSConfig(nil),
			wantIdentity: "client app (write) of cluster c1"},
		{name: "client of another CA refused by the server", srv: n1.ServerTLSConfig(true), cli: foreignX.ClientTLSConfig(nil),
			srvErr: "certificate signed by unknown authority", cliErr: "bad certificate"},
		{name: "client of another cluster refused by the server", srv: n1TrustAll.ServerTLSConfig(true), cli: rawClient(otherApp),
			srvErr: "want cluster c1", cliErr: "bad certificate"},
		{name: "no client certificate refused when required", srv: n1.ServerTLSConfig(true), cli: noCert,
			srvErr: "client didn't provide a certificate", cliErr: "certificate required"},
		{name: "no client certificate let in when not required", srv: n1.ServerTLSConfig(false), cli: noCert},
		{name: "server expects a node", srv: n1.ServerTLSConfigExpect(true, ExpectKind(KindNode)), cli: app.ClientTLSConfig(nil),
			srvErr: "want a node", cliErr: "bad certificate"},
		{name: "server of another CA refused by the client", srv: foreignX.ServerTLSConfig(true), cli: n1.ClientTLSConfig(nil),
			srvErr: "bad certificate", cliErr: "certificate signed by unknown authority"},
		{name: "server of another cluster refused by the client", srv: rawServer(otherN2), cli: n1TrustAll.ClientTLSConfig(nil),
			srvErr: "bad certificate", cliErr: "want cluster c1"},
		{name: "client certificate as a server refused (no server auth)", srv: app.ServerTLSConfig(true), cli: n1.ClientTLSConfig(nil),
			srvErr: "bad certificate", cliErr: "incompatible key usage"},
		{name: "a client identity as a server refused", srv: rogue.ServerTLSConfig(true), cli: n1.ClientTLSConfig(nil),
			srvErr: "bad certificate", cliErr: "not a node"},
		{name: "not the node expected", srv: n2.ServerTLSConfig(true), cli: n1.ClientTLSConfig(ExpectNode("n3")),
			srvErr: "bad certificate", cliErr: "want node n3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, cli := handshake(t, tc.srv, tc.cli)
			for _, side := range []struct {
				name string
				err  error
				want string
			}{{"server", srv.err, tc.srvErr}, {"client", cli.err, tc.cliErr}} {
				switch {
				case side.want == "" && side.err != nil:
					t.Errorf("%s: %v, want success", side.name, side.err)
				case side.want != "" && (side.err == nil || !strings.Contains(side.err.Error(), side.want)):
					t.Errorf("%s: %v, want an error with %q", side.name, side.err, side.want)
				}
			}
			if tc.srvErr != "" {
				return
			}
			id, err := PeerIdentity(srv.state)
			switch {
			case tc.wantIdentity == "" && !errors.Is(err, ErrNoIdentity):
				t.Errorf("server reads identity %v, %v; want ErrNoIdentity", id, err)
			case tc.wantIdentity != "" && (err != nil || id.String() != tc.wantIdentity):
				t.Errorf("server reads identity %v, %v; want %s", id, err, tc.wantIdentity)
			}
			if srvID, err := PeerIdentity(cli.state); err != nil || srvID.Kind != KindNode {
				t.Errorf("client reads server identity %v, %v", srvID, err)
			}
		})
	}
}

// TestRotation: the files of a node replaced under a running Store are used
// by the next handshake, without a new Store; bad replacements are refused
// and the previous certificate stays in use.
func TestRotation(t *testing.T) {
	dir := initDir(t, "c1", []string{"n1", "n2"})
	nextCert, nextKey := reissue(t, dir, "n1")
	var mu sync.Mutex
	var reloads []error
	srvStore, err := NewStore(StoreOptions{
		CertFile: filepath.Join(dir, "n1.pem"), KeyFile: filepath.Join(dir, "n1-key.pem"), CAFile: filepath.Join(dir, CAFile),
		CheckInterval: time.Millisecond,
		OnReload: func(err error) {
			mu.Lock()
			reloads = append(reloads, err)
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	srvCfg := srvStore.ServerTLSConfig(true)
	cliCfg := newStore(t, dir, "n2", "").ClientTLSConfig(ExpectNode("n1"))
	presented := func() *big.Int {
		t.Helper()
		srv, cli := handshake(t, srvCfg, cliCfg)
		if srv.err != nil || cli.err != nil {
			t.Fatalf("handshake: server %v, client %v", srv.err, cli.err)
		}
		return serial(cli)
	}
	first := presented()
	if first.Cmp(srvStore.Certificate().Leaf.SerialNumber) != 0 {
		t.Fatalf("presented serial %v, store holds %v", first, srvStore.Certificate().Leaf.SerialNumber)
	}

	// A replacement that is not a certificate, then one of another node,
	// then one whose key does not match: each refused, the first
	// certificate still presented, the error reported.
	good, _ := os.ReadFile(filepath.Join(dir, "n1.pem"))
	n2Cert, _ := os.ReadFile(filepath.Join(dir, "n2.pem"))
	n2Key, _ := os.ReadFile(filepath.Join(dir, "n2-key.pem"))
	goodKey, _ := os.ReadFile(filepath.Join(dir, "n1-key.pem"))
	for _, bad := range []struct {
		name      string
		cert, key []byte
		want      string
	}{
		{"corrupt certificate", []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"), goodKey, "n1.pem"},
		{"another node's certificate", n2Cert, n2Key, "is the certificate of node n2"},
		{"key of another certificate", good, n2Key, "private key does not match"},
	} {
		writeOver(t, filepath.Join(dir, "n1-key.pem"), bad.key)
		writeOver(t, filepath.Join(dir, "n1.pem"), bad.cert)
		testwait.Eventually(t, waitFor, bad.name+" refused", func() (bool, string) {
			if got := presented(); got.Cmp(first) != 0 {
				t.Fatalf("%s: server presents serial %v, want the first %v", bad.name, got, first)
			}
			err := srvStore.LastError()
			return err != nil && strings.Contains(err.Error(), bad.want), "LastError: " + errString(err)
		})
	}
	mu.Lock()
	if len(reloads) == 0 || reloads[len(reloads)-1] == nil {
		t.Errorf("OnReload calls %v, want the last one an error", reloads)
	}
	mu.Unlock()

	// The new certificate, written in place over the old one (key first):
	// the next handshakes present it.
	writeOver(t, filepath.Join(dir, "n1-key.pem"), nextKey)
	writeOver(t, filepath.Join(dir, "n1.pem"), nextCert)
	testwait.Eventually(t, waitFor, "the new certificate presented", func() (bool, string) {
		got := presented()
		return got.Cmp(first) != 0, "serial " + got.String()
	})
	if err := srvStore.LastError(); err != nil {
		t.Errorf("LastError after a good reload: %v", err)
	}
	mu.Lock()
	if reloads[len(reloads)-1] != nil {
		t.Errorf("last OnReload: %v, want nil", reloads[len(reloads)-1])
	}
	mu.Unlock()
}

// TestRotationSameStamp: a replacement written in place with the size and
// modification time of the file it replaces (as a coarse file system clock
// can leave it) is still seen: recently modified files are compared by
// content.
func TestRotationSameStamp(t *testing.T) {
	dir := initDir(t, "c1", []string{"n1", "n2"})
	nextCert, nextKey := reissue(t, dir, "n1")
	// Every version padded to one size (PEM allows text after the block).
	pad := func(b []byte) []byte { return append(b, bytes.Repeat([]byte("\n"), 4096-len(b))...) }
	certPath, keyPath := filepath.Join(dir, "n1.pem"), filepath.Join(dir, "n1-key.pem")
	writeOver(t, certPath, pad(readFile(t, certPath)))
	writeOver(t, keyPath, pad(readFile(t, keyPath)))
	srv := newStore(t, dir, "n1", "")
	first := srv.Certificate().Leaf.SerialNumber
	stamps := map[string]time.Time{}
	for _, p := range []string{certPath, keyPath} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		stamps[p] = fi.ModTime()
	}
	writeOver(t, keyPath, pad(nextKey))
	writeOver(t, certPath, pad(nextCert))
	for p, mtime := range stamps {
		if err := os.Chtimes(p, time.Time{}, mtime); err != nil {
			t.Fatal(err)
		}
	}
	cli := newStore(t, dir, "n2", "").ClientTLSConfig(nil)
	testwait.Eventually(t, waitFor, "the new certificate presented", func() (bool, string) {
		s, c := handshake(t, srv.ServerTLSConfig(true), cli)
		if s.err != nil || c.err != nil {
			return false, "handshake: " + errString(s.err) + ", " + errString(c.err)
		}
		return serial(c).Cmp(first) != 0, "still serial " + first.String()
	})
}

// reissue issues name a new certificate with the CA of dir, elsewhere, and
// returns its certificate and key PEM.
func reissue(t *testing.T, dir, name string) (cert, key []byte) {
	t.Helper()
	next := filepath.Join(t.TempDir(), "next")
	if err := os.MkdirAll(next, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{CAFile, CAKeyFile} {
		copyFile(t, filepath.Join(dir, f), filepath.Join(next, f))
	}
	id, err := IdentityOf(readCert(t, filepath.Join(dir, CertFile(name))))
	if err != nil {
		t.Fatal(err)
	}
	opts := InitOptions{Dir: next, Cluster: id.Cluster}
	if id.Kind == KindNode {
		opts.Nodes = []string{name}
	} else {
		opts.Clients = []ClientSpec{{name, id.Roles}}
	}
	if _, err := Init(opts); err != nil {
		t.Fatal(err)
	}
	return readFile(t, filepath.Join(next, CertFile(name))), readFile(t, filepath.Join(next, KeyFile(name)))
}

// TestRotateCA: client certificates are verified against the CA bundle of
// the moment: a bundle replaced to trust a second CA lets in its clients
// from the next handshake on.
func TestRotateCA(t *testing.T) {
	dir := initDir(t, "c1", []string{"n1"})
	newCA := initDir(t, "c1", []string{"n2"})
	srv := newStore(t, dir, "n1", "")
	cli := newStore(t, newCA, "n2", bundle(t, filepath.Join(newCA, CAFile), filepath.Join(dir, CAFile)))
	if s, _ := handshake(t, srv.ServerTLSConfig(true), cli.ClientTLSConfig(nil)); s.err == nil {
		t.Fatal("a client of the new CA is let in before the server trusts it")
	}
	writeOver(t, filepath.Join(dir, CAFile), readFile(t, bundle(t, filepath.Join(dir, CAFile), filepath.Join(newCA, CAFile))))
	testwait.Eventually(t, waitFor, "the client of the new CA let in", func() (bool, string) {
		s, c := handshake(t, srv.ServerTLSConfig(true), cli.ClientTLSConfig(nil))
		return s.err == nil && c.err == nil, "server: " + errString(s.err)
	})
}

// TestNewStore: NewStore refuses files that do not make a usable identity.
func TestNewStore(t *testing.T) {
	dir := initDir(t, "c1", []string{"n1"})
	foreign := initDir(t, "c1", []string{"n1"})
	caPEM := filepath.Join(dir, CAFile)
	tests := []struct {
		name          string
		cert, key, ca string
		want          string
	}{
		{"no files named", "", "", "", "needs a CA file"},
		{"a certificate without its key", filepath.Join(dir, "n1.pem"), "", caPEM, "or neither"},
		{"a key without its certificate", "", filepath.Join(dir, "n1-key.pem"), caPEM, "or neither"},
		{"CA only: CAs of two clusters", "", "", bundle(t, caPEM, filepath.Join(initDir(t, "c2", []string{"n1"}), CAFile)), "clusters c1 and c2"},
		{"CA only: a CA naming no cluster", "", "", plainCA(t), "no CA names its cluster"},
		{"CA only: a leaf as the CA", "", "", filepath.Join(dir, "n1.pem"), "is not a CA certificate"},
		{"CA only: missing CA file", "", "", filepath.Join(dir, "nope.pem"), "no such file"},
		{"missing certificate", filepath.Join(dir, "nope.pem"), filepath.Join(dir, "n1-key.pem"), caPEM, "no such file"},
		{"certificate of another CA", filepath.Join(foreign, "n1.pem"), filepath.Join(foreign, "n1-key.pem"), caPEM, "not valid under"},
		{"the CA as a leaf", caPEM, filepath.Join(dir, CAKeyFile), caPEM, "is a CA certificate"},
		{"a leaf as the CA", filepath.Join(dir, "n1.pem"), filepath.Join(dir, "n1-key.pem"), filepath.Join(dir, "n1.pem"), "is not a CA certificate"},
		{"key of another certificate", filepath.Join(dir, "n1.pem"), filepath.Join(foreign, "n1-key.pem"), caPEM, "private key does not match"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewStore(StoreOptions{CertFile: tc.cert, KeyFile: tc.key, CAFile: tc.ca})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewStore: %v; want an error with %q", err, tc.want)
			}
		})
	}
	s := newStore(t, dir, "n1", "")
	if id := s.Identity(); id.String() != "node n1 of cluster c1" {
		t.Errorf("Identity: %v", id)
	}
}

// plainCA writes a self-signed CA certificate with no heartbeat:// URI (a
// CA of another origin) and returns its path.
func plainCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "plain-ca.pem")
	writeOver(t, path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	return path
}

// caOnlyStore opens a store of the CA bundle caFile alone.
func caOnlyStore(t *testing.T, caFile string) *Store {
	t.Helper()
	s, err := NewStore(StoreOptions{CAFile: caFile, CheckInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestCAOnly: real handshakes with a store of the CA bundle alone (a
// client that authenticates with a token): it verifies the server as a
// full store does and presents no certificate; it cannot serve.
func TestCAOnly(t *testing.T) {
	home := initDir(t, "c1", []string{"n1", "n2"})
	foreign := initDir(t, "c1", []string{"x"}) // same cluster id, another CA
	homeCA := filepath.Join(home, CAFile)
	n1 := newStore(t, home, "n1", "")
	x := newStore(t, foreign, "x", "")
	caOnly := caOnlyStore(t, homeCA)
	// A CA-only store with a CA of another origin beside the cluster's:
	// the cluster's CA names the cluster.
	mixed := caOnlyStore(t, bundle(t, plainCA(t), homeCA))
	if caOnly.HasCertificate() || caOnly.Certificate() != nil || !n1.HasCertificate() {
		t.Errorf("HasCertificate: CA-only %v (certificate %v), n1 %v", caOnly.HasCertificate(), caOnly.Certificate(), n1.HasCertificate())
	}
	if id := caOnly.Identity(); id.Cluster != "c1" || id.Kind != "" || id.Name != "" {
		t.Errorf("CA-only Identity: %+v, want the cluster c1 alone", id)
	}
	tests := []struct {
		name     string
		srv, cli *tls.Config
		srvErr   string
		cliErr   string
	}{
		{name: "verifies the server, presents nothing", srv: n1.ServerTLSConfig(false), cli: caOnly.ClientTLSConfig(nil)},
		{name: "the expected node", srv: n1.ServerTLSConfig(false), cli: caOnly.ClientTLSConfig(ExpectNode("n1"))},
		{name: "a bundle with a CA that names no cluster", srv: n1.ServerTLSConfig(false), cli: mixed.ClientTLSConfig(nil)},
		{name: "not the node expected", srv: n1.ServerTLSConfig(false), cli: caOnly.ClientTLSConfig(ExpectNode("n2")),
			srvErr: "bad certificate", cliErr: "want node n2"},
		{name: "server of another CA refused", srv: x.ServerTLSConfig(false), cli: caOnly.ClientTLSConfig(nil),
			srvErr: "bad certificate", cliErr: "certificate signed by unknown authority"},
		{name: "server requiring a client certificate refuses", srv: n1.ServerTLSConfig(true), cli: caOnly.ClientTLSConfig(nil),
			srvErr: "client didn't provide a certificate", cliErr: "certificate required"},
		{name: "a CA-only store cannot serve", srv: caOnly.ServerTLSConfig(false), cli: n1.ClientTLSConfig(nil),
			srvErr: ErrNoCertificate.Error(), cliErr: "internal error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, cli := handshake(t, tc.srv, tc.cli)
			for _, side := range []struct {
				name string
				err  error
				want string
			}{{"server", srv.err, tc.srvErr}, {"client", cli.err, tc.cliErr}} {
				switch {
				case side.want == "" && side.err != nil:
					t.Errorf("%s: %v, want success", side.name, side.err)
				case side.want != "" && (side.err == nil || !strings.Contains(side.err.Error(), side.want)):
					t.Errorf("%s: %v, want an error with %q", side.name, side.err, side.want)
				}
			}
			if tc.srvErr != "" {
				return
			}
			if id, err := PeerIdentity(srv.state); !errors.Is(err, ErrNoIdentity) {
				t.Errorf("server reads a client identity %v, %v; want none", id, err)
			}
			if id, err := PeerIdentity(cli.state); err != nil || id.String() != "node n1 of cluster c1" {
				t.Errorf("client reads server identity %v, %v", id, err)
			}
		})
	}
}

// TestCAOnlyRotation: a CA-only store reloads its bundle: a bundle that
// adds a second CA lets its servers in from the next handshake on; a
// bundle of another cluster is refused and the previous one stays in use.
func TestCAOnlyRotation(t *testing.T) {
	dir := initDir(t, "c1", []string{"n1"})
	newCA := initDir(t, "c1", []string{"n2"})
	other := initDir(t, "c2", []string{"n1"})
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	copyFile(t, filepath.Join(dir, CAFile), caFile)
	cli := caOnlyStore(t, caFile)
	n1, n2 := newStore(t, dir, "n1", ""), newStore(t, newCA, "n2", "")
	if _, c := handshake(t, n2.ServerTLSConfig(false), cli.ClientTLSConfig(nil)); c.err == nil {
		t.Fatal("a server of the new CA is accepted before the bundle trusts it")
	}
	writeOver(t, caFile, readFile(t, bundle(t, filepath.Join(dir, CAFile), filepath.Join(newCA, CAFile))))
	testwait.Eventually(t, waitFor, "the server of the new CA accepted", func() (bool, string) {
		_, c := handshake(t, n2.ServerTLSConfig(false), cli.ClientTLSConfig(nil))
		return c.err == nil, "client: " + errString(c.err)
	})
	writeOver(t, caFile, readFile(t, filepath.Join(other, CAFile)))
	testwait.Eventually(t, waitFor, "the other cluster's CA refused", func() (bool, string) {
		// A handshake makes the store look at its files; the previous
		// bundle still verifies n1.
		if _, c := handshake(t, n1.ServerTLSConfig(false), cli.ClientTLSConfig(nil)); c.err != nil {
			t.Fatalf("while the other cluster's CA is refused, n1 is no longer accepted: %v", c.err)
		}
		err := cli.LastError()
		return err != nil && strings.Contains(err.Error(), "this store verifies cluster c1"), "LastError: " + errString(err)
	})
}

// TestIdentityFromContext: a gRPC server with a Store's config (through
// credentials.NewTLS, which adds ALPN h2) reads the caller's identity in
// its methods.
func TestIdentityFromContext(t *testing.T) {
	if _, ok := IdentityFromContext(context.Background()); ok {
		t.Error("an identity in a context without a peer")
	}
	dir := initDir(t, "c1", []string{"n1"}, ClientSpec{"ops", []Role{RoleAdmin}})
	srvStore, cliStore := newStore(t, dir, "n1", ""), newStore(t, dir, "ops", "")
	var mu sync.Mutex
	var seen []Identity
	srv := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(srvStore.ServerTLSConfig(true))),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if id, ok := IdentityFromContext(ctx); ok {
				mu.Lock()
				seen = append(seen, id)
				mu.Unlock()
			}
			return h(ctx, req)
		}))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	defer func() {
		srv.Stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(cliStore.ClientTLSConfig(ExpectNode("n1")))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 || seen[0].Kind != KindClient || seen[0].Name != "ops" || !seen[0].Has(RoleWrite) {
		t.Errorf("identities seen by the server: %v", seen)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	writeOver(t, to, readFile(t, from))
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// writeOver rewrites a file in place (not by rename: the harder case for
// noticing a change).
func writeOver(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func errString(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}
