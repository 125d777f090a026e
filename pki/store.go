package pki

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultCheckInterval is how often at most a Store looks at its files.
const DefaultCheckInterval = time.Second

// StoreOptions names the files of a Store.
type StoreOptions struct {
	// CertFile and KeyFile are this node's (or client's) certificate and
	// private key, PEM. CertFile may hold intermediates after the leaf.
	// Both empty make a CA-only store: a client that authenticates
	// otherwise (a bearer token) and only verifies the server. Its
	// ClientTLSConfig presents no certificate; its ServerTLSConfig fails
	// every handshake (a server needs a certificate).
	CertFile, KeyFile string
	// CAFile is the CA bundle, PEM: one or more CA certificates (several
	// while a CA is being replaced).
	CAFile string
	// CheckInterval is how often at most the files are looked at again
	// (size, modification time, inode; the content of recently modified
	// ones), on use: when a handshake needs the certificate or the CA
	// pool. 0 means DefaultCheckInterval.
	CheckInterval time.Duration
	// OnReload, if set, is called after every reload the files' change
	// caused: with nil when the new files are in use, with the error when
	// they were refused and the previous ones stay in use. It runs on the
	// goroutine of a handshake, without the Store's lock held; it should
	// be quick (log and return).
	OnReload func(err error)
}

// Store holds a certificate with its key and a CA pool, read from files,
// and reloads them when the files change: the TLS configs it makes ask it
// at every handshake, so a replaced certificate or CA bundle is used by the
// next handshake without a restart. A change is looked for at most every
// CheckInterval, on use; the Store has no goroutine and needs no Close.
//
// New files are checked before they are used: the key must match the
// certificate, the certificate must be valid now under the new CA bundle and
// carry the same identity (cluster, kind, name) as before. Files that fail
// are refused: the previous certificate and pool stay in use, LastError
// returns the reason and OnReload is told. A Store is safe for concurrent
// use.
type Store struct {
	opts StoreOptions
	cur  atomic.Pointer[material]
	err  atomic.Pointer[errBox]

	mu        sync.Mutex    // serializes looking at and reading the files
	nextCheck time.Time     // guarded by mu
	seen      []os.FileInfo // guarded by mu: the files' stamps as last read
	seenData  [][]byte      // guarded by mu: their content then
	seenAt    time.Time     // guarded by mu: when
	seenErr   string        // guarded by mu: the stat error last reported
}

// material is what a Store serves, replaced as a whole on reload.
type material struct {
	cert *tls.Certificate // Leaf set; nil in a CA-only store
	pool *x509.CertPool
	id   Identity // only Cluster in a CA-only store
}

// ErrNoCertificate: a CA-only store (StoreOptions without CertFile and
// KeyFile) was asked to serve; a server needs a certificate.
var ErrNoCertificate = errors.New("pki: CA-only store has no certificate to serve")

// errBox lets an atomic.Pointer hold an error (nil box: no error).
type errBox struct{ err error }

// NewStore reads the files of opts and returns a Store serving them. The
// files must be valid (see Store); NewStore returns why not. Without
// CertFile and KeyFile the store is CA-only (see StoreOptions): its cluster
// is then the one its CA bundle's heartbeat://<cluster> URIs name, all the
// same.
func NewStore(opts StoreOptions) (*Store, error) {
	switch {
	case opts.CAFile == "":
		return nil, errors.New("pki: store needs a CA file")
	case (opts.CertFile == "") != (opts.KeyFile == ""):
		return nil, errors.New("pki: store needs a certificate and its key, or neither (CA only)")
	}
	if opts.CheckInterval <= 0 {
		opts.CheckInterval = DefaultCheckInterval
	}
	s := &Store{opts: opts}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload reads the files now, whether they changed or not, and uses them if
// they are valid. On error the previous material stays in use (NewStore:
// there is none) and LastError returns the error. OnReload is not called.
func (s *Store) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextCheck = time.Now().Add(s.opts.CheckInterval)
	s.seenErr = ""
	data, stamps, err := s.read()
	return s.install(data, stamps, err)
}

// racyWindow: a file modified less than this before it was read may change
// again without its size or modification time changing (file systems stamp
// with a coarse clock), so its content is compared on the next check.
const racyWindow = 2 * time.Second

// read stamps the three files (size, mtime, inode through os.SameFile),
// then reads them; s.mu is held.
func (s *Store) read() (data [][]byte, stamps []os.FileInfo, err error) {
	s.seenAt = time.Now()
	if stamps, err = s.stat(); err != nil {
		return nil, nil, err
	}
	for _, p := range s.paths() {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, nil, err
		}
		data = append(data, b)
	}
	return data, stamps, nil
}

// install parses data (read with err) and serves it if it is valid, else
// records the error; s.mu is held.
func (s *Store) install(data [][]byte, stamps []os.FileInfo, err error) error {
	s.seen, s.seenData = stamps, data
	var m *material
	if err == nil {
		m, err = s.parse(data)
	}
	if err != nil {
		err = fmt.Errorf("pki: reload %s: %w", s.name(), err)
		s.err.Store(&errBox{err})
		return err
	}
	s.cur.Store(m)
	s.err.Store(nil)
	return nil
}

// caOnly reports whether the store has no certificate (StoreOptions).
func (s *Store) caOnly() bool { return s.opts.CertFile == "" }

// name is the file that names the store in errors: the certificate, or
// the CA bundle of a CA-only store.
func (s *Store) name() string {
	if s.caOnly() {
		return s.opts.CAFile
	}
	return s.opts.CertFile
}

// paths are the files, in the order of stat and read: the CA bundle last.
func (s *Store) paths() []string {
	if s.caOnly() {
		return []string{s.opts.CAFile}
	}
	return []string{s.opts.CertFile, s.opts.KeyFile, s.opts.CAFile}
}

// stat stamps the files.
func (s *Store) stat() ([]os.FileInfo, error) {
	var out []os.FileInfo
	for _, p := range s.paths() {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		out = append(out, fi)
	}
	return out, nil
}

// changed reports whether the files differ from the stamps last read.
func changed(old, cur []os.FileInfo) bool {
	if len(old) != len(cur) {
		return true
	}
	for i := range cur {
		if !os.SameFile(old[i], cur[i]) || old[i].Size() != cur[i].Size() || !old[i].ModTime().Equal(cur[i].ModTime()) {
			return true
		}
	}
	return false
}

// racy reports whether a file was modified within racyWindow before it was
// last read.
func racy(stamps []os.FileInfo, readAt time.Time) bool {
	for _, fi := range stamps {
		if fi.ModTime().After(readAt.Add(-racyWindow)) {
			return true
		}
	}
	return false
}

// parse checks the files' content (in the order of paths) and makes the
// material to serve.
func (s *Store) parse(data [][]byte) (*material, error) {
	caPEM := data[len(data)-1]
	cas, err := parseCerts(caPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.opts.CAFile, err)
	}
	pool := x509.NewCertPool()
	for _, c := range cas {
		if !c.IsCA {
			return nil, fmt.Errorf("%s: %s is not a CA certificate", s.opts.CAFile, describeSubject(c))
		}
		pool.AddCert(c)
	}
	if s.caOnly() {
		cluster, err := bundleCluster(cas)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.opts.CAFile, err)
		}
		if old := s.cur.Load(); old != nil && old.id.Cluster != cluster {
			return nil, fmt.Errorf("%s is a CA of cluster %s; this store verifies cluster %s", s.opts.CAFile, cluster, old.id.Cluster)
		}
		return &material{pool: pool, id: Identity{Cluster: cluster}}, nil
	}
	cert, err := tls.X509KeyPair(data[0], data[1])
	if err != nil {
		return nil, fmt.Errorf("%s with %s: %w", s.opts.CertFile, s.opts.KeyFile, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("%s: %w", s.opts.CertFile, err)
		}
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{
		Roots:         pool,
		Intermediates: intermediates(cert.Certificate[1:]),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return nil, fmt.Errorf("%s is not valid under %s: %w", s.opts.CertFile, s.opts.CAFile, err)
	}
	id, err := IdentityOf(cert.Leaf)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.opts.CertFile, err)
	}
	if old := s.cur.Load(); old != nil && (old.id.Cluster != id.Cluster || old.id.Kind != id.Kind || old.id.Name != id.Name) {
		return nil, fmt.Errorf("%s is the certificate of %s; this store serves %s", s.opts.CertFile, id, old.id)
	}
	return &material{cert: &cert, pool: pool, id: id}, nil
}

// bundleCluster is the cluster a CA bundle signs for, without a leaf to
// tell it: the one its CAs' heartbeat://<cluster> URIs name (CAs without
// one are trusted but name none). None, or two, is an error: a CA-only
// store would not know which cluster's nodes to accept.
func bundleCluster(cas []*x509.Certificate) (string, error) {
	cluster := ""
	for _, c := range cas {
		cl, err := ClusterOfCA(c)
		if errors.Is(err, ErrBadCluster) && !hasHeartbeatURI(c) {
			continue // a CA of another origin: trusted, names no cluster
		}
		if err != nil {
			return "", err
		}
		if cluster != "" && cl != cluster {
			return "", fmt.Errorf("%w: the CAs are of clusters %s and %s; without a certificate of its own a store needs the CAs of one", ErrBadCluster, cluster, cl)
		}
		cluster = cl
	}
	if cluster == "" {
		return "", fmt.Errorf("%w: no CA names its cluster (heartbeat://<cluster>); without a certificate of its own a store needs one that does", ErrBadCluster)
	}
	return cluster, nil
}

// hasHeartbeatURI reports whether a certificate carries a heartbeat:// URI.
func hasHeartbeatURI(c *x509.Certificate) bool {
	for _, u := range c.URIs {
		if u.Scheme == Scheme {
			return true
		}
	}
	return false
}

// intermediates is a pool of the DER certificates (unparsable ones are
// left out; verification then fails).
func intermediates(ders [][]byte) *x509.CertPool {
	pool := x509.NewCertPool()
	for _, der := range ders {
		if c, err := x509.ParseCertificate(der); err == nil {
			pool.AddCert(c)
		}
	}
	return pool
}

// current returns the material to use, looking at the files first when
// CheckInterval has passed since the last look. A handshake never waits
// for another's look: if one is under way it uses the current material.
func (s *Store) current() *material {
	if s.mu.TryLock() {
		report, err := s.checkLocked()
		s.mu.Unlock()
		if report && s.opts.OnReload != nil {
			s.opts.OnReload(err)
		}
	}
	return s.cur.Load()
}

// checkLocked reloads when CheckInterval has passed and the files changed;
// report says whether OnReload should hear of err. s.mu is held.
func (s *Store) checkLocked() (report bool, err error) {
	now := time.Now()
	if now.Before(s.nextCheck) {
		return false, nil
	}
	s.nextCheck = now.Add(s.opts.CheckInterval)
	stamps, err := s.stat()
	if err != nil {
		// A file is missing (perhaps for a moment, between a remove and
		// a rename): keep serving; report each new error once.
		err = fmt.Errorf("pki: reload %s: %w", s.name(), err)
		s.err.Store(&errBox{err})
		if err.Error() == s.seenErr {
			return false, err
		}
		s.seenErr = err.Error()
		return true, err
	}
	if s.seenErr == "" && !changed(s.seen, stamps) && !racy(stamps, s.seenAt) {
		return false, nil
	}
	back := s.seenErr != "" // after a stat error: report what follows
	s.seenErr = ""
	data, stamps, err := s.read()
	if err == nil && !back && slices.EqualFunc(data, s.seenData, bytes.Equal) {
		s.seen = stamps // the same content (touched, or a racy look)
		return false, nil
	}
	return true, s.install(data, stamps, err)
}

// LastError is the error of the last reload, nil if it succeeded: files
// that were refused (the previous ones stay in use) or could not be read.
func (s *Store) LastError() error {
	if b := s.err.Load(); b != nil {
		return b.err
	}
	return nil
}

// Identity is the identity of the certificate in use. A CA-only store has
// none: only Cluster is set, the cluster its CA bundle names.
func (s *Store) Identity() Identity { return s.current().id }

// Certificate is the certificate in use (its Leaf is set), e.g. to export
// its expiry; nil in a CA-only store.
func (s *Store) Certificate() *tls.Certificate { return s.current().cert }

// HasCertificate reports whether the store serves a certificate: false for
// a CA-only store (StoreOptions without CertFile and KeyFile), which can
// verify servers but neither serve nor authenticate as a client.
func (s *Store) HasCertificate() bool { return !s.caOnly() }

// ServerTLSConfig is the configuration of a TLS server (a gRPC listener of a
// node): it presents the current certificate, and verifies a client's
// certificate against the current CA pool (client auth) and requires an
// identity of the store's cluster. With requireClientCert a client without
// a certificate fails the handshake; without it such a client is let in
// with no identity (PeerIdentity then fails), and one that presents a
// certificate is verified all the same. TLS 1.3 only; no session tickets,
// so every connection verifies the peer against the current pool. Callers
// may add to the returned config (gRPC and net/http add ALPN protocols).
// A CA-only store cannot serve: every handshake of its config fails with
// ErrNoCertificate (check HasCertificate first).
func (s *Store) ServerTLSConfig(requireClientCert bool) *tls.Config {
	return s.ServerTLSConfigExpect(requireClientCert, nil)
}

// ServerTLSConfigExpect is ServerTLSConfig with a further check of the
// client's identity, e.g. ExpectKind(KindNode) on the peer port. expect is
// called only for clients that present a certificate.
func (s *Store) ServerTLSConfigExpect(requireClientCert bool, expect func(Identity) error) *tls.Config {
	auth := tls.RequestClientCert
	if requireClientCert {
		auth = tls.RequireAnyClientCert
	}
	// The certificate comes from GetCertificate and the chain is verified
	// in VerifyConnection, both per handshake, rather than from a config
	// returned by GetConfigForClient: that config would replace the one
	// gRPC and net/http add their ALPN protocols ("h2") to.
	return &tls.Config{
		MinVersion:             tls.VersionTLS13,
		SessionTicketsDisabled: true,
		ClientAuth:             auth, // verified by VerifyConnection against the current pool
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c := s.current().cert; c != nil {
				return c, nil
			}
			return nil, ErrNoCertificate
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			return s.verifyPeer(cs, x509.ExtKeyUsageClientAuth, requireClientCert, expect)
		},
	}
}

// ClientTLSConfig is the configuration to dial a node: it presents the
// current certificate when asked, verifies the server's chain against the
// current CA pool (server auth), requires a node identity of the store's
// cluster, then calls expect (nil: any node), e.g. ExpectNode("n2"). The
// host name is not checked (addresses vary; see the package doc):
// InsecureSkipVerify turns off only the crypto/tls check, VerifyConnection
// does the full chain verification instead. A CA-only store presents no
// certificate: the server must let the client in otherwise (a token).
func (s *Store) ClientTLSConfig(expect func(Identity) error) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // VerifyConnection verifies the chain; identity, not host name
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if c := s.current().cert; c != nil {
				return c, nil
			}
			return &tls.Certificate{}, nil // none: crypto/tls sends an empty certificate message
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			return s.verifyPeer(cs, x509.ExtKeyUsageServerAuth, true, func(id Identity) error {
				if id.Kind != KindNode {
					return fmt.Errorf("server is %s, not a node", id)
				}
				if expect != nil {
					return expect(id)
				}
				return nil
			})
		},
	}
}

// verifyPeer verifies the peer's chain against the current pool for usage,
// then its identity: the store's cluster, then expect.
func (s *Store) verifyPeer(cs tls.ConnectionState, usage x509.ExtKeyUsage, required bool, expect func(Identity) error) error {
	if len(cs.PeerCertificates) == 0 {
		if required {
			return errors.New("pki: peer presented no certificate")
		}
		return nil
	}
	m := s.current()
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: m.pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return fmt.Errorf("pki: peer certificate: %w", err)
	}
	id, err := IdentityOf(leaf)
	if err != nil {
		return fmt.Errorf("pki: peer: %w", err)
	}
	if id.Cluster != m.id.Cluster {
		return fmt.Errorf("pki: peer is %s: %w: want cluster %s", id, ErrBadCluster, m.id.Cluster)
	}
	if expect != nil {
		if err := expect(id); err != nil {
			return fmt.Errorf("pki: peer %s refused: %w", id, err)
		}
	}
	return nil
}

// PeerIdentity is the identity of the peer of a connection made with a
// Store's config (which verified the peer's chain during the handshake;
// VerifiedChains stays empty, as crypto/tls did not verify it itself).
// It fails when the peer presented no certificate.
func PeerIdentity(state tls.ConnectionState) (Identity, error) {
	if len(state.PeerCertificates) == 0 {
		return Identity{}, fmt.Errorf("%w: peer presented no certificate", ErrNoIdentity)
	}
	return IdentityOf(state.PeerCertificates[0])
}

// ExpectKind is an expect function for the configs: the peer must be of
// kind k.
func ExpectKind(k Kind) func(Identity) error {
	return func(id Identity) error {
		if id.Kind != k {
			return fmt.Errorf("want a %s", k)
		}
		return nil
	}
}

// ExpectNode is an expect function for ClientTLSConfig: the server must be
// node id (e.g. the peer a Raft transport means to reach).
func ExpectNode(id string) func(Identity) error {
	return func(got Identity) error {
		if got.Kind != KindNode || got.Name != id {
			return fmt.Errorf("want node %s", id)
		}
		return nil
	}
}
