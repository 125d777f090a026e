package pki

import (
	"bytes"
	"crypto/x509"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// readCert reads the one certificate of a file made by Init.
func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	certs, err := readCerts(path)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}

// TestInit: the files Init writes, their modes, and what each certificate
// says and is valid for.
func TestInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	clients, err := ParseClients("admin,app:write,client:admin")
	if err != nil {
		t.Fatal(err)
	}
	res, err := Init(InitOptions{Dir: dir, Cluster: "prod", Nodes: []string{"n1", "n2"}, Clients: clients,
		Hosts: []string{"db.example.com", "10.0.0.5"}, LeafValidity: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	wantFiles := []string{"admin-key.pem", "admin.pem", "app-key.pem", "app.pem", "ca-key.pem", "ca.pem",
		"client-key.pem", "client.pem", "n1-key.pem", "n1.pem", "n2-key.pem", "n2.pem"}
	written := slices.Sorted(slices.Values(res.Written))
	if !slices.Equal(written, wantFiles) || res.CAReused || len(res.Kept) != 0 {
		t.Errorf("Init result %+v, want written %v", res, wantFiles)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, wantFiles) {
		t.Errorf("directory holds %v, want %v (no temporary files)", names, wantFiles)
	}
	// Literal modes: the test is the specification, not the constants.
	checkMode(t, dir, 0o700|fs.ModeDir)
	for _, f := range wantFiles {
		want := fs.FileMode(0o644)
		if strings.HasSuffix(f, "-key.pem") {
			want = 0o600
		}
		checkMode(t, filepath.Join(dir, f), want)
	}

	ca := readCert(t, filepath.Join(dir, CAFile))
	if cluster, err := ClusterOfCA(ca); err != nil || cluster != "prod" || !ca.IsCA || ca.MaxPathLen != 0 || !ca.MaxPathLenZero {
		t.Errorf("CA: cluster %q %v, IsCA %v, MaxPathLen %d", cluster, err, ca.IsCA, ca.MaxPathLen)
	}
	if life := ca.NotAfter.Sub(ca.NotBefore); life < DefaultCAValidity {
		t.Errorf("CA valid for %v, want %v", life, DefaultCAValidity)
	}
	if _, err := IdentityOf(ca); !errors.Is(err, ErrNoIdentity) {
		t.Errorf("IdentityOf(CA): %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	for _, tc := range []struct {
		name   string
		want   string
		usages []x509.ExtKeyUsage // each must verify
		not    []x509.ExtKeyUsage // each must not
	}{
		{"n1", "node n1 of cluster prod", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, nil},
		{"n2", "node n2 of cluster prod", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, nil},
		{"admin", "client admin (admin) of cluster prod", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
		{"app", "client app (write) of cluster prod", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
		{"client", "client client (admin) of cluster prod", []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
	} {
		c := readCert(t, filepath.Join(dir, CertFile(tc.name)))
		id, err := IdentityOf(c)
		if err != nil || id.String() != tc.want {
			t.Errorf("%s: identity %v %v, want %s", tc.name, id, err, tc.want)
		}
		for _, u := range tc.usages {
			if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
				t.Errorf("%s: does not verify for usage %v: %v", tc.name, u, err)
			}
		}
		for _, u := range tc.not {
			if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{u}}); err == nil {
				t.Errorf("%s: verifies for usage %v", tc.name, u)
			}
		}
		if life := c.NotAfter.Sub(c.NotBefore); life != 48*time.Hour+backdate {
			t.Errorf("%s: valid for %v, want 48h (and %v back)", tc.name, life, backdate)
		}
		if _, err := NewStore(StoreOptions{CertFile: filepath.Join(dir, CertFile(tc.name)), KeyFile: filepath.Join(dir, KeyFile(tc.name)),
			CAFile: filepath.Join(dir, CAFile)}); err != nil {
			t.Errorf("%s: not a usable pair: %v", tc.name, err)
		}
	}
	n1 := readCert(t, filepath.Join(dir, "n1.pem"))
	if want := []string{"n1", "localhost", "db.example.com"}; !slices.Equal(n1.DNSNames, want) {
		t.Errorf("n1 DNS names %v, want %v", n1.DNSNames, want)
	}
	var ips []string
	for _, ip := range n1.IPAddresses {
		ips = append(ips, ip.String())
	}
	if want := []string{"127.0.0.1", "::1", "10.0.0.5"}; !slices.Equal(ips, want) {
		t.Errorf("n1 IP addresses %v, want %v", ips, want)
	}
	if err := n1.VerifyHostname("10.0.0.5"); err != nil {
		t.Error(err)
	}
}

func checkMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != want {
		t.Errorf("%s: mode %v, want %v", path, fi.Mode(), want)
	}
}

// TestInitAgain: a second Init signs with the CA already there and keeps the
// certificates already issued; another cluster's CA is refused; Force makes
// a new CA and reissues.
func TestInitAgain(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	if _, err := Init(InitOptions{Dir: dir, Cluster: "prod", Nodes: []string{"n1"}}); err != nil {
		t.Fatal(err)
	}
	caBefore, n1Before := readFile(t, filepath.Join(dir, CAFile)), readFile(t, filepath.Join(dir, "n1.pem"))

	res, err := Init(InitOptions{Dir: dir, Cluster: "prod", Nodes: []string{"n1", "n2"}, Clients: []ClientSpec{{"client", []Role{RoleAdmin}}}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.CAReused || !slices.Equal(res.Kept, []string{"n1.pem", "n1-key.pem"}) ||
		!slices.Equal(res.Written, []string{"n2-key.pem", "n2.pem", "client-key.pem", "client.pem"}) {
		t.Errorf("second Init: %+v", res)
	}
	if !bytes.Equal(readFile(t, filepath.Join(dir, CAFile)), caBefore) || !bytes.Equal(readFile(t, filepath.Join(dir, "n1.pem")), n1Before) {
		t.Error("second Init rewrote the CA or n1")
	}
	pool := x509.NewCertPool()
	pool.AddCert(readCert(t, filepath.Join(dir, CAFile)))
	if _, err := readCert(t, filepath.Join(dir, "n2.pem")).Verify(x509.VerifyOptions{Roots: pool}); err != nil {
		t.Errorf("n2 is not signed by the first CA: %v", err)
	}

	// Another cluster's id against this CA: refused, nothing written.
	if _, err := Init(InitOptions{Dir: dir, Cluster: "test", Nodes: []string{"n9"}}); !errors.Is(err, ErrBadCluster) {
		t.Errorf("Init of another cluster over prod's CA: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "n9.pem")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("n9.pem written by a refused Init: %v", err)
	}

	// A kept certificate must be the CA's and the identity asked for.
	copyFile(t, filepath.Join(dir, "n2.pem"), filepath.Join(dir, "n3.pem"))
	copyFile(t, filepath.Join(dir, "n2-key.pem"), filepath.Join(dir, "n3-key.pem"))
	if _, err := Init(InitOptions{Dir: dir, Cluster: "prod", Nodes: []string{"n3"}}); err == nil || !strings.Contains(err.Error(), "not of node n3") {
		t.Errorf("Init keeping n2's certificate as n3's: %v", err)
	}
	if _, err := Init(InitOptions{Dir: dir, Cluster: "prod", Clients: []ClientSpec{{"client", []Role{RoleRead}}}}); err == nil || !strings.Contains(err.Error(), "not of client client (read)") {
		t.Errorf("Init keeping an admin certificate as a read one: %v", err)
	}
	other := initDir(t, "prod", []string{"n4"})
	copyFile(t, filepath.Join(other, "n4.pem"), filepath.Join(dir, "n4.pem"))
	copyFile(t, filepath.Join(other, "n4-key.pem"), filepath.Join(dir, "n4-key.pem"))
	if _, err := Init(InitOptions{Dir: dir, Cluster: "prod", Nodes: []string{"n4"}}); err == nil || !strings.Contains(err.Error(), "unknown authority") {
		t.Errorf("Init keeping a certificate of another CA: %v", err)
	}

	// Force: a new CA, n1 reissued under it.
	res, err = Init(InitOptions{Dir: dir, Cluster: "test", Nodes: []string{"n1"}, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.CAReused || len(res.Kept) != 0 || bytes.Equal(readFile(t, filepath.Join(dir, CAFile)), caBefore) ||
		bytes.Equal(readFile(t, filepath.Join(dir, "n1.pem")), n1Before) {
		t.Errorf("Init with Force: %+v, CA or n1 unchanged", res)
	}
	if id, err := IdentityOf(readCert(t, filepath.Join(dir, "n1.pem"))); err != nil || id.Cluster != "test" {
		t.Errorf("n1 after Force: %v %v", id, err)
	}
}

// TestInitRefuses: options Init refuses before writing anything.
func TestInitRefuses(t *testing.T) {
	tests := []struct {
		name string
		opts InitOptions
		want string
	}{
		{"no directory", InitOptions{Cluster: "c", Nodes: []string{"n1"}}, "no directory"},
		{"bad cluster", InitOptions{Cluster: "c..d", Nodes: []string{"n1"}}, "cluster id"},
		{"nothing to issue", InitOptions{Cluster: "c"}, "no nodes and no clients"},
		{"bad node id", InitOptions{Cluster: "c", Nodes: []string{"n/1"}}, "node n/1"},
		{"node called ca", InitOptions{Cluster: "c", Nodes: []string{"ca"}}, "would both write ca.pem"},
		{"node and client of one name", InitOptions{Cluster: "c", Nodes: []string{"x"}, Clients: []ClientSpec{{"x", []Role{RoleRead}}}}, "would both write x.pem"},
		{"name and name-key", InitOptions{Cluster: "c", Nodes: []string{"x", "x-key"}}, "would both write x-key.pem"},
		{"same node twice", InitOptions{Cluster: "c", Nodes: []string{"n1", "n1"}}, "would both write n1.pem"},
		{"client without role", InitOptions{Cluster: "c", Clients: []ClientSpec{{Name: "app"}}}, "no role"},
		{"client with an unknown role", InitOptions{Cluster: "c", Clients: []ClientSpec{{"app", []Role{"root"}}}}, "unknown role"},
		{"bad host", InitOptions{Cluster: "c", Nodes: []string{"n1"}, Hosts: []string{"http://x"}}, "neither a DNS name"},
		{"empty host label", InitOptions{Cluster: "c", Nodes: []string{"n1"}, Hosts: []string{"a..b"}}, "neither a DNS name"},
		{"negative validity", InitOptions{Cluster: "c", Nodes: []string{"n1"}, LeafValidity: -time.Hour}, "negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.opts.Dir == "" && tc.name != "no directory" {
				tc.opts.Dir = filepath.Join(t.TempDir(), "tls")
			}
			_, err := Init(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Init: %v, want an error with %q", err, tc.want)
			}
			if tc.opts.Dir != "" {
				if _, err := os.Stat(tc.opts.Dir); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("Init refused but made %s: %v", tc.opts.Dir, err)
				}
			}
		})
	}
	// Half a CA: refused unless Force.
	dir := initDir(t, "c", []string{"n1"})
	if err := os.Remove(filepath.Join(dir, CAKeyFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := Init(InitOptions{Dir: dir, Cluster: "c", Nodes: []string{"n2"}}); err == nil || !strings.Contains(err.Error(), "only one of ca.pem and ca-key.pem") {
		t.Errorf("Init with ca.pem but no key: %v", err)
	}
	if _, err := Init(InitOptions{Dir: dir, Cluster: "c", Nodes: []string{"n2"}, Force: true}); err != nil {
		t.Errorf("Init with Force over half a CA: %v", err)
	}
}

// TestInitCapsLeafValidity: a leaf never outlives its CA.
func TestInitCapsLeafValidity(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	if _, err := Init(InitOptions{Dir: dir, Cluster: "c", Nodes: []string{"n1"}, CAValidity: 24 * time.Hour, LeafValidity: 48 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	ca, n1 := readCert(t, filepath.Join(dir, CAFile)), readCert(t, filepath.Join(dir, "n1.pem"))
	if !n1.NotAfter.Equal(ca.NotAfter) {
		t.Errorf("n1 valid until %v, CA until %v", n1.NotAfter, ca.NotAfter)
	}
}

func TestParseClients(t *testing.T) {
	tests := []struct {
		in      string
		want    []ClientSpec
		wantErr string
	}{
		{in: "", want: nil},
		{in: "admin,app:write, ro:read ,", want: []ClientSpec{{"admin", []Role{RoleAdmin}}, {"app", []Role{RoleWrite}}, {"ro", []Role{RoleRead}}}},
		{in: "client:admin", want: []ClientSpec{{"client", []Role{RoleAdmin}}}},
		{in: "read,write", want: []ClientSpec{{"read", []Role{RoleRead}}, {"write", []Role{RoleWrite}}}},
		{in: "ops:read+admin", want: []ClientSpec{{"ops", []Role{RoleRead, RoleAdmin}}}},
		{in: "app", wantErr: `client "app": no role`},
		{in: "app:root", wantErr: `unknown role "root"`},
		{in: "app:", wantErr: `unknown role ""`},
	}
	for _, tc := range tests {
		got, err := ParseClients(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseClients(%q) = %v, %v; want error %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !slices.EqualFunc(got, tc.want, func(a, b ClientSpec) bool { return a.Name == b.Name && slices.Equal(a.Roles, b.Roles) }) {
			t.Errorf("ParseClients(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

// The hosts Init accepts; net is used to build the IPv6 case.
func TestHostOK(t *testing.T) {
	for h, want := range map[string]bool{
		"db.example.com": true, "*.example.com": true, "10.0.0.5": true, net.IPv6loopback.String(): true, "fe80::1": true,
		"host_1": true, "": false, "a..b": false, "a.*": false, "x y": false, "http://x": false, "a:80": false,
	} {
		if got := hostOK(h); got != want {
			t.Errorf("hostOK(%q) = %v, want %v", h, got, want)
		}
	}
}
