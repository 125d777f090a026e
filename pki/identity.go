package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// Scheme is the URI scheme of the identities in certificates:
// heartbeat://<cluster>/node/<id>, heartbeat://<cluster>/client/<name>,
// heartbeat://<cluster>/role/<role>, and heartbeat://<cluster> on the CA.
const Scheme = "heartbeat"

// MaxNameLen bounds a cluster id, a node id and a client name (bytes).
const MaxNameLen = 64

// Kind says what a certificate's holder is: a node of the cluster or a
// client of it.
type Kind string

// The kinds of identity.
const (
	// KindNode is a member of the cluster: it serves (server auth) and
	// dials its peers (client auth).
	KindNode Kind = "node"
	// KindClient is a caller of the cluster's API with roles; it only
	// dials (client auth).
	KindClient Kind = "client"
)

// Role is what a client may do. The roles are ordered: admin implies write,
// write implies read (Role.Implies).
type Role string

// The roles, weakest first.
const (
	// RoleRead may read: status, members, leader, resources, watches.
	RoleRead Role = "read"
	// RoleWrite may also change resources and heartbeats of its
	// application.
	RoleWrite Role = "write"
	// RoleAdmin may also change the cluster: membership, leadership,
	// drains, priorities.
	RoleAdmin Role = "admin"
)

// roles are the roles, weakest first.
var roles = []Role{RoleRead, RoleWrite, RoleAdmin}

// Roles lists every role, weakest first.
func Roles() []Role { return slices.Clone(roles) }

// rank orders the roles; 0 is not a role.
func (r Role) rank() int {
	return slices.Index(roles, r) + 1
}

// Valid reports whether r is one of Roles.
func (r Role) Valid() bool { return r.rank() > 0 }

// Implies reports whether holding r grants need: admin implies write and
// read, write implies read, every role implies itself. An unknown role
// implies nothing and is implied by nothing.
func (r Role) Implies(need Role) bool {
	return r.Valid() && need.Valid() && r.rank() >= need.rank()
}

// ParseRole returns the role called s (read, write or admin).
func ParseRole(s string) (Role, error) {
	if r := Role(s); r.Valid() {
		return r, nil
	}
	return "", fmt.Errorf("%w %q (want read, write or admin)", ErrUnknownRole, s)
}

// Errors of IdentityOf and the name checks; they come wrapped with the
// details, test them with errors.Is.
var (
	// ErrNoIdentity: the certificate carries no heartbeat:// node or
	// client URI.
	ErrNoIdentity = errors.New("no heartbeat identity")
	// ErrTwoIdentities: the certificate carries more than one node or
	// client URI.
	ErrTwoIdentities = errors.New("more than one heartbeat identity")
	// ErrBadCluster: a cluster id is malformed, the URIs of one certificate
	// name different clusters, or a peer belongs to another cluster.
	ErrBadCluster = errors.New("bad cluster")
	// ErrUnknownRole: a role URI or argument names no role.
	ErrUnknownRole = errors.New("unknown role")
	// ErrBadName: a node id or client name is malformed, or a heartbeat://
	// URI has an unknown form.
	ErrBadName = errors.New("bad name")
)

// Identity is who a certificate speaks for: a node or a client of one
// cluster, with the client's roles.
type Identity struct {
	// Cluster is the cluster id (the host of the URIs).
	Cluster string
	// Kind is KindNode or KindClient.
	Kind Kind
	// Name is the node id or the client name.
	Name string
	// Roles are the roles the certificate grants, sorted weakest first,
	// without duplicates. Nodes carry none (Init issues none to them).
	Roles []Role
}

// String is e.g. "node n1 of cluster prod" or "client app (write) of
// cluster prod".
func (id Identity) String() string {
	s := string(id.Kind) + " " + id.Name
	if len(id.Roles) > 0 {
		rs := make([]string, len(id.Roles))
		for i, r := range id.Roles {
			rs[i] = string(r)
		}
		s += " (" + strings.Join(rs, ",") + ")"
	}
	return s + " of cluster " + id.Cluster
}

// Has reports whether one of the identity's roles implies need
// (Role.Implies): a write client has read, an admin has everything.
func (id Identity) Has(need Role) bool {
	for _, r := range id.Roles {
		if r.Implies(need) {
			return true
		}
	}
	return false
}

// URI is the identity's SAN URI, heartbeat://<cluster>/<kind>/<name>.
func (id Identity) URI() *url.URL {
	return &url.URL{Scheme: Scheme, Host: id.Cluster, Path: "/" + string(id.Kind) + "/" + id.Name}
}

// Validate checks the identity's names (CheckCluster, CheckName), its kind
// and its roles.
func (id Identity) Validate() error {
	if err := CheckCluster(id.Cluster); err != nil {
		return err
	}
	if id.Kind != KindNode && id.Kind != KindClient {
		return fmt.Errorf("%w: kind %q (want node or client)", ErrBadName, id.Kind)
	}
	if err := CheckName(id.Name); err != nil {
		return fmt.Errorf("%s name: %w", id.Kind, err)
	}
	for _, r := range id.Roles {
		if !r.Valid() {
			return fmt.Errorf("%w %q", ErrUnknownRole, r)
		}
	}
	return nil
}

// RoleURI is the SAN URI of a role in cluster: heartbeat://<cluster>/role/<r>.
func RoleURI(cluster string, r Role) *url.URL {
	return &url.URL{Scheme: Scheme, Host: cluster, Path: "/role/" + string(r)}
}

// CAURI is the SAN URI of a cluster's CA: heartbeat://<cluster>.
func CAURI(cluster string) *url.URL {
	return &url.URL{Scheme: Scheme, Host: cluster}
}

// CheckName checks a node id or client name: 1..MaxNameLen bytes of
// [A-Za-z0-9._-] (the node ids the cluster accepts).
func CheckName(s string) error {
	if len(s) == 0 || len(s) > MaxNameLen {
		return fmt.Errorf("%w: %q has %d bytes (want 1..%d)", ErrBadName, s, len(s), MaxNameLen)
	}
	for _, c := range []byte(s) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		if !ok {
			return fmt.Errorf("%w: %q: only letters, digits, '.', '_' and '-'", ErrBadName, s)
		}
	}
	return nil
}

// CheckCluster checks a cluster id: a name (CheckName) that is also the host
// of a URI, so no empty dot-separated label (no leading, trailing or double
// dot): Go's x509 refuses to parse a certificate whose URI host has one.
func CheckCluster(s string) error {
	if err := CheckName(s); err != nil {
		return fmt.Errorf("%w: cluster id: %w", ErrBadCluster, err)
	}
	if strings.HasPrefix(s, ".") || strings.HasSuffix(s, ".") || strings.Contains(s, "..") {
		return fmt.Errorf("%w: cluster id %q: a '.' must sit between two other characters", ErrBadCluster, s)
	}
	return nil
}

// IdentityOf reads the identity a certificate carries in its heartbeat://
// SAN URIs: exactly one node or client URI, any number of role URIs, all of
// one cluster. Other URIs (other schemes) are ignored. It checks the form
// only, not the signature: verify the chain first (the configs of Store do).
func IdentityOf(cert *x509.Certificate) (Identity, error) {
	var id Identity
	var found []string
	for _, u := range cert.URIs {
		if u.Scheme != Scheme {
			continue
		}
		if err := CheckCluster(u.Host); err != nil {
			return Identity{}, fmt.Errorf("%s: %w", u, err)
		}
		if id.Cluster == "" {
			id.Cluster = u.Host
		} else if u.Host != id.Cluster {
			return Identity{}, fmt.Errorf("%w: URIs of clusters %q and %q in one certificate", ErrBadCluster, id.Cluster, u.Host)
		}
		if u.Path == "" && u.User == nil && u.RawQuery == "" && u.Fragment == "" && u.Port() == "" {
			continue // heartbeat://<cluster>: the CA's
		}
		kind, name, ok := strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
		if !ok || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" || !strings.HasPrefix(u.Path, "/") {
			return Identity{}, fmt.Errorf("%w: URI %s is not heartbeat://<cluster>/{node,client,role}/<name>", ErrBadName, u)
		}
		switch Kind(kind) {
		case KindNode, KindClient:
			if err := CheckName(name); err != nil {
				return Identity{}, fmt.Errorf("URI %s: %w", u, err)
			}
			found = append(found, u.String())
			id.Kind, id.Name = Kind(kind), name
		case "role":
			r, err := ParseRole(name)
			if err != nil {
				return Identity{}, fmt.Errorf("URI %s: %w", u, err)
			}
			if !slices.Contains(id.Roles, r) {
				id.Roles = append(id.Roles, r)
			}
		default:
			return Identity{}, fmt.Errorf("%w: URI %s: %q is not node, client or role", ErrBadName, u, kind)
		}
	}
	switch {
	case len(found) == 0 && cert.IsCA:
		return Identity{}, fmt.Errorf("%w: %s is a CA certificate", ErrNoIdentity, describeSubject(cert))
	case len(found) == 0:
		return Identity{}, fmt.Errorf("%w: %s has no heartbeat://<cluster>/node/<id> or /client/<name> URI", ErrNoIdentity, describeSubject(cert))
	case len(found) > 1:
		return Identity{}, fmt.Errorf("%w: %s has %s", ErrTwoIdentities, describeSubject(cert), strings.Join(found, " and "))
	}
	slices.SortFunc(id.Roles, func(a, b Role) int { return a.rank() - b.rank() })
	return id, nil
}

// ClusterOfCA returns the cluster a CA certificate (made by Init) signs for:
// the host of its heartbeat://<cluster> URI.
func ClusterOfCA(cert *x509.Certificate) (string, error) {
	if !cert.IsCA {
		return "", fmt.Errorf("%s is not a CA certificate", describeSubject(cert))
	}
	for _, u := range cert.URIs {
		if u.Scheme == Scheme && u.Path == "" {
			if err := CheckCluster(u.Host); err != nil {
				return "", fmt.Errorf("CA %s: %w", describeSubject(cert), err)
			}
			return u.Host, nil
		}
	}
	return "", fmt.Errorf("%w: CA %s has no heartbeat://<cluster> URI", ErrBadCluster, describeSubject(cert))
}

// describeSubject names a certificate in errors.
func describeSubject(cert *x509.Certificate) string {
	if s := cert.Subject.String(); s != "" {
		return "certificate " + s
	}
	return "certificate with serial " + cert.SerialNumber.String()
}
