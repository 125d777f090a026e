package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/internal/atomicfile"
)

// The files of a directory made by Init.
const (
	// CAFile is the CA certificate: the trust anchor every node and client
	// is given.
	CAFile = "ca.pem"
	// CAKeyFile is the CA's private key: keep it off the nodes.
	CAKeyFile = "ca-key.pem"
)

// CertFile is the certificate file of a node or client: <name>.pem.
func CertFile(name string) string { return name + ".pem" }

// KeyFile is the private key file of a node or client: <name>-key.pem.
func KeyFile(name string) string { return name + "-key.pem" }

// Default validities.
const (
	DefaultCAValidity   = 10 * 365 * 24 * time.Hour
	DefaultLeafValidity = 365 * 24 * time.Hour
)

// File modes Init gives what it writes.
const (
	DirMode  fs.FileMode = 0o700 // the directory, when Init creates it
	KeyMode  fs.FileMode = 0o600 // private keys
	CertMode fs.FileMode = 0o644 // certificates
)

// backdate is how far before now a certificate's validity starts, for
// clocks a little behind the issuer's.
const backdate = 5 * time.Minute

// ClientSpec is a client certificate to issue: its name and roles.
type ClientSpec struct {
	Name  string
	Roles []Role
}

// ParseClients parses a comma-separated list of clients, each name:role or
// name:role+role, e.g. "admin:admin,app:write,ro:read". A bare name that is
// a role name stands for that role ("admin" is admin:admin); another bare
// name is an error. The name client with role admin ("client:admin") gives
// the files client.pem and client-key.pem.
func ParseClients(list string) ([]ClientSpec, error) {
	var out []ClientSpec
	for _, item := range splitList(list) {
		name, roles, ok := strings.Cut(item, ":")
		if !ok {
			if !Role(name).Valid() {
				return nil, fmt.Errorf("client %q: no role (write %s:read, :write or :admin; a bare name must be a role name)", name, name)
			}
			roles = name
		}
		spec := ClientSpec{Name: name}
		for _, r := range strings.Split(roles, "+") {
			role, err := ParseRole(r)
			if err != nil {
				return nil, fmt.Errorf("client %q: %w", name, err)
			}
			spec.Roles = append(spec.Roles, role)
		}
		out = append(out, spec)
	}
	return out, nil
}

// splitList splits a comma-separated list, dropping spaces and empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// InitOptions says what Init issues.
type InitOptions struct {
	// Dir is the directory to write into, created (DirMode) if missing.
	Dir string
	// Cluster is the cluster id every certificate names.
	Cluster string
	// Nodes are the node ids to issue node certificates for.
	Nodes []string
	// Clients are the client certificates to issue.
	Clients []ClientSpec
	// Hosts are extra DNS names or IP addresses put in every node
	// certificate (besides the node id, localhost, 127.0.0.1 and ::1).
	// Clients of this package do not check them (see the package doc);
	// they are for other TLS clients.
	Hosts []string
	// LeafValidity is how long node and client certificates are valid
	// (0: DefaultLeafValidity).
	LeafValidity time.Duration
	// CAValidity is how long a new CA is valid (0: DefaultCAValidity).
	CAValidity time.Duration
	// Force makes a new CA even if Dir has one, and reissues every
	// certificate asked for. Without it Init signs with the CA in Dir
	// and keeps the certificates already there.
	Force bool
}

// InitResult says what Init did, file by file (paths inside Dir).
type InitResult struct {
	// CAReused is true when Init signed with the CA already in Dir.
	CAReused bool
	// Written are the files Init wrote.
	Written []string
	// Kept are the certificate files of nodes and clients that were
	// already there and issued by the CA; Init left them alone.
	Kept []string
}

// Init makes or reuses the CA of a cluster in opts.Dir and issues node and
// client certificates signed by it. The layout (all in Dir):
//
//	ca.pem, ca-key.pem            the CA (reused when present, unless Force)
//	<node>.pem, <node>-key.pem    per node: server and client auth
//	<client>.pem, <client>-key.pem per client: client auth and roles
//
// A node or client whose files exist is kept as it is (checked against the
// CA and the cluster) unless Force, so running Init again with more nodes
// adds only the new ones. Names whose files would collide ("ca", a node and
// a client of one name, n and n-key) are refused before anything is
// written.
func Init(opts InitOptions) (InitResult, error) {
	var res InitResult
	if err := opts.Validate(); err != nil {
		return res, fmt.Errorf("tls init: %w", err)
	}
	if err := os.MkdirAll(opts.Dir, DirMode); err != nil {
		return res, fmt.Errorf("tls init: %w", err)
	}
	ca, err := loadOrMakeCA(opts, &res)
	if err != nil {
		return res, fmt.Errorf("tls init: %w", err)
	}
	var leaves []Identity
	for _, n := range opts.Nodes {
		leaves = append(leaves, Identity{Cluster: opts.Cluster, Kind: KindNode, Name: n})
	}
	for _, c := range opts.Clients {
		leaves = append(leaves, Identity{Cluster: opts.Cluster, Kind: KindClient, Name: c.Name, Roles: c.Roles})
	}
	for _, id := range leaves {
		if err := ca.issueFile(opts, id, &res); err != nil {
			return res, fmt.Errorf("tls init: %s: %w", id, err)
		}
	}
	return res, nil
}

// Validate checks the options as Init does before it writes anything: the
// names, roles and hosts, and that no two files would collide. It looks at
// no file.
func (o InitOptions) Validate() error {
	if o.Dir == "" {
		return errors.New("no directory")
	}
	if err := CheckCluster(o.Cluster); err != nil {
		return err
	}
	if len(o.Nodes) == 0 && len(o.Clients) == 0 {
		return errors.New("no nodes and no clients to issue certificates for")
	}
	if o.LeafValidity < 0 || o.CAValidity < 0 {
		return errors.New("negative validity")
	}
	files := map[string]string{CAFile: "the CA", CAKeyFile: "the CA"}
	claim := func(who, name string) error {
		if err := CheckName(name); err != nil {
			return fmt.Errorf("%s: %w", who, err)
		}
		for _, f := range []string{CertFile(name), KeyFile(name)} {
			if other, ok := files[f]; ok {
				return fmt.Errorf("%s and %s would both write %s", who, other, f)
			}
			files[f] = who
		}
		return nil
	}
	for _, n := range o.Nodes {
		if err := claim("node "+n, n); err != nil {
			return err
		}
	}
	for _, c := range o.Clients {
		if err := claim("client "+c.Name, c.Name); err != nil {
			return err
		}
		if len(c.Roles) == 0 {
			return fmt.Errorf("client %s: no role", c.Name)
		}
		for _, r := range c.Roles {
			if !r.Valid() {
				return fmt.Errorf("client %s: %w %q", c.Name, ErrUnknownRole, r)
			}
		}
	}
	for _, h := range o.Hosts {
		if !hostOK(h) {
			return fmt.Errorf("host %q is neither a DNS name nor an IP address", h)
		}
	}
	return nil
}

// hostOK accepts an IP address or a DNS name: dot-separated labels of
// letters, digits, '-' and '_', the first label possibly "*".
func hostOK(h string) bool {
	if net.ParseIP(h) != nil {
		return true
	}
	if h == "" || len(h) > 253 {
		return false
	}
	for i, label := range strings.Split(h, ".") {
		if i == 0 && label == "*" {
			continue
		}
		if label == "" {
			return false
		}
		for _, c := range []byte(label) {
			ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
			if !ok {
				return false
			}
		}
	}
	return true
}

// authority is a CA that signs.
type authority struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// loadOrMakeCA reuses the CA in opts.Dir (unless Force) or makes one.
func loadOrMakeCA(opts InitOptions, res *InitResult) (*authority, error) {
	certPath, keyPath := filepath.Join(opts.Dir, CAFile), filepath.Join(opts.Dir, CAKeyFile)
	certOK, keyOK := exists(certPath), exists(keyPath)
	if certOK && keyOK && !opts.Force {
		ca, err := loadCA(certPath, keyPath)
		if err != nil {
			return nil, err
		}
		cluster, err := ClusterOfCA(ca.cert)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", certPath, err)
		}
		if cluster != opts.Cluster {
			return nil, fmt.Errorf("%w: %s is the CA of cluster %q, not %q (use another directory, or force a new CA)",
				ErrBadCluster, certPath, cluster, opts.Cluster)
		}
		res.CAReused = true
		return ca, nil
	}
	if (certOK || keyOK) && !opts.Force {
		return nil, fmt.Errorf("%s has only one of %s and %s (remove it, or force a new CA)", opts.Dir, CAFile, CAKeyFile)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"heartbeat"}, CommonName: "heartbeat CA " + opts.Cluster},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(orDefault(opts.CAValidity, DefaultCAValidity)),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true, // signs leaves only
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		URIs:                  []*url.URL{CAURI(opts.Cluster)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	if err := writePair(opts.Dir, CAFile, CAKeyFile, der, key, res); err != nil {
		return nil, err
	}
	return &authority{cert: cert, key: key}, nil
}

// loadCA reads a CA certificate and its key and checks they belong together.
func loadCA(certPath, keyPath string) (*authority, error) {
	certs, err := readCerts(certPath)
	if err != nil {
		return nil, err
	}
	cert := certs[0]
	if !cert.IsCA {
		return nil, fmt.Errorf("%s: not a CA certificate", certPath)
	}
	b, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, err
	}
	key, err := parseKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%s is not the key of %s", keyPath, certPath)
	}
	return &authority{cert: cert, key: key}, nil
}

// issueFile writes the certificate and key of id, or keeps existing ones
// (unless Force) after checking them.
func (ca *authority) issueFile(opts InitOptions, id Identity, res *InitResult) error {
	certName, keyName := CertFile(id.Name), KeyFile(id.Name)
	certPath, keyPath := filepath.Join(opts.Dir, certName), filepath.Join(opts.Dir, keyName)
	certOK, keyOK := exists(certPath), exists(keyPath)
	if !opts.Force && (certOK || keyOK) {
		if !certOK || !keyOK {
			return fmt.Errorf("%s has only one of %s and %s (remove it, or force)", opts.Dir, certName, keyName)
		}
		if err := ca.checkExisting(certPath, id); err != nil {
			return fmt.Errorf("existing %s: %w (remove it, or force)", certPath, err)
		}
		res.Kept = append(res.Kept, certName, keyName)
		return nil
	}
	der, key, err := ca.issue(id, opts.Hosts, orDefault(opts.LeafValidity, DefaultLeafValidity))
	if err != nil {
		return err
	}
	return writePair(opts.Dir, certName, keyName, der, key, res)
}

// checkExisting checks that a kept certificate is id's and the CA's.
func (ca *authority) checkExisting(certPath string, id Identity) error {
	certs, err := readCerts(certPath)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("not valid under %s: %w", CAFile, err)
	}
	got, err := IdentityOf(certs[0])
	if err != nil {
		return err
	}
	if got.Cluster != id.Cluster || got.Kind != id.Kind || got.Name != id.Name || !slices.Equal(got.Roles, sortedRoles(id.Roles)) {
		return fmt.Errorf("it is the certificate of %s, not of %s", got, id)
	}
	return nil
}

// issue makes a key and a certificate for id signed by the CA.
func (ca *authority) issue(id Identity, hosts []string, validity time.Duration) ([]byte, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{"heartbeat"}, OrganizationalUnit: []string{id.Cluster + " " + string(id.Kind)}, CommonName: id.Name},
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		URIs:         []*url.URL{id.URI()},
	}
	if tmpl.NotAfter.After(ca.cert.NotAfter) {
		tmpl.NotAfter = ca.cert.NotAfter // a leaf cannot outlive its CA
	}
	switch id.Kind {
	case KindNode:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		tmpl.DNSNames = []string{id.Name, "localhost"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
		for _, h := range hosts {
			if ip := net.ParseIP(h); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else if !slices.Contains(tmpl.DNSNames, h) {
				tmpl.DNSNames = append(tmpl.DNSNames, h)
			}
		}
	case KindClient:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		for _, r := range sortedRoles(id.Roles) {
			tmpl.URIs = append(tmpl.URIs, RoleURI(id.Cluster, r))
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate: %w", err)
	}
	return der, key, nil
}

// sortedRoles returns the roles weakest first, without duplicates.
func sortedRoles(rs []Role) []Role {
	out := slices.Clone(rs)
	slices.SortFunc(out, func(a, b Role) int { return a.rank() - b.rank() })
	return slices.Compact(out)
}

// writePair writes a key (KeyMode) then its certificate (CertMode), each
// atomically, and records them in res.
func writePair(dir, certName, keyName string, der []byte, key *ecdsa.PrivateKey, res *InitResult) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("%s: %w", keyName, err)
	}
	if err := writeFile(filepath.Join(dir, keyName), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), KeyMode); err != nil {
		return err
	}
	res.Written = append(res.Written, keyName)
	if err := writeFile(filepath.Join(dir, certName), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), CertMode); err != nil {
		return err
	}
	res.Written = append(res.Written, certName)
	return nil
}

// writeFile writes data atomically with exactly mode (whatever the umask
// or the mode of the file it replaces).
func writeFile(path string, data []byte, mode fs.FileMode) error {
	if err := atomicfile.Write(path, data, mode); err != nil {
		return err
	}
	if err := os.Chmod(path, mode); err != nil {
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	return nil
}

// readCerts reads the PEM certificates of a file (at least one).
func readCerts(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	certs, err := parseCerts(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return certs, nil
}

// parseCerts parses the CERTIFICATE blocks of PEM data (at least one).
func parseCerts(b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return certs, nil
}

// parseKey parses an ECDSA private key (PKCS #8 or SEC 1 PEM).
func parseKey(b []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	switch block.Type {
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		ek, ok := k.(*ecdsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("a %T key, want ECDSA", k)
		}
		return ek, nil
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(block.Bytes)
	}
	return nil, fmt.Errorf("PEM block %q is not a private key", block.Type)
}

// newSerial is a random 128-bit serial number.
func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("serial: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil // positive
}

// exists reports whether path exists (any error but "not exist" counts as
// existing, so that Init never writes over what it could not look at).
func exists(path string) bool {
	_, err := os.Lstat(path)
	return !errors.Is(err, fs.ErrNotExist)
}

// orDefault is d, or def when d is zero.
func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}
