package pki

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// withURIs is a certificate (fields only, as IdentityOf reads them) with
// the URIs given.
func withURIs(t *testing.T, ca bool, uris ...string) *x509.Certificate {
	t.Helper()
	c := &x509.Certificate{Subject: pkix.Name{CommonName: "test"}, IsCA: ca}
	for _, s := range uris {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		c.URIs = append(c.URIs, u)
	}
	return c
}

func TestIdentityOf(t *testing.T) {
	tests := []struct {
		name    string
		ca      bool
		uris    []string
		want    Identity
		wantErr error
	}{
		{name: "node", uris: []string{"heartbeat://prod/node/n1"},
			want: Identity{Cluster: "prod", Kind: KindNode, Name: "n1"}},
		{name: "client with roles, sorted, deduplicated, other schemes ignored",
			uris: []string{"spiffe://x/y", "heartbeat://prod/role/admin", "heartbeat://prod/client/ops", "heartbeat://prod/role/read", "heartbeat://prod/role/admin"},
			want: Identity{Cluster: "prod", Kind: KindClient, Name: "ops", Roles: []Role{RoleRead, RoleAdmin}}},
		{name: "names of every allowed character", uris: []string{"heartbeat://a.b-c_D9/node/N._-0"},
			want: Identity{Cluster: "a.b-c_D9", Kind: KindNode, Name: "N._-0"}},
		{name: "no URI", wantErr: ErrNoIdentity},
		{name: "only other schemes", uris: []string{"https://prod/node/n1"}, wantErr: ErrNoIdentity},
		{name: "only roles", uris: []string{"heartbeat://prod/role/read"}, wantErr: ErrNoIdentity},
		{name: "a CA", ca: true, uris: []string{"heartbeat://prod"}, wantErr: ErrNoIdentity},
		{name: "two identities", uris: []string{"heartbeat://prod/node/n1", "heartbeat://prod/client/n1"}, wantErr: ErrTwoIdentities},
		{name: "two nodes", uris: []string{"heartbeat://prod/node/n1", "heartbeat://prod/node/n2"}, wantErr: ErrTwoIdentities},
		{name: "two clusters", uris: []string{"heartbeat://prod/client/ops", "heartbeat://test/role/admin"}, wantErr: ErrBadCluster},
		{name: "empty cluster", uris: []string{"heartbeat:///node/n1"}, wantErr: ErrBadCluster},
		{name: "cluster with a port", uris: []string{"heartbeat://prod:1/node/n1"}, wantErr: ErrBadCluster},
		{name: "cluster with an empty label", uris: []string{"heartbeat://a..b/node/n1"}, wantErr: ErrBadCluster},
		{name: "unknown role", uris: []string{"heartbeat://prod/client/ops", "heartbeat://prod/role/root"}, wantErr: ErrUnknownRole},
		{name: "unknown kind", uris: []string{"heartbeat://prod/user/bob"}, wantErr: ErrBadName},
		{name: "name with a slash", uris: []string{"heartbeat://prod/node/a/b"}, wantErr: ErrBadName},
		{name: "empty name", uris: []string{"heartbeat://prod/node/"}, wantErr: ErrBadName},
		{name: "no name", uris: []string{"heartbeat://prod/node"}, wantErr: ErrBadName},
		{name: "query", uris: []string{"heartbeat://prod/node/n1?x=1"}, wantErr: ErrBadName},
		{name: "name too long", uris: []string{"heartbeat://prod/node/" + strings.Repeat("n", MaxNameLen+1)}, wantErr: ErrBadName},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := IdentityOf(withURIs(t, tc.ca, tc.uris...))
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("IdentityOf = %v, %v; want %v", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got.Cluster != tc.want.Cluster || got.Kind != tc.want.Kind || got.Name != tc.want.Name || !slices.Equal(got.Roles, tc.want.Roles) {
				t.Fatalf("IdentityOf = %+v, %v; want %+v", got, err, tc.want)
			}
			if u := got.URI().String(); !slices.Contains(tc.uris, u) {
				t.Errorf("URI() = %s, not among %v", u, tc.uris)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

func TestRoles(t *testing.T) {
	tests := []struct {
		have, need Role
		want       bool
	}{
		{RoleAdmin, RoleAdmin, true}, {RoleAdmin, RoleWrite, true}, {RoleAdmin, RoleRead, true},
		{RoleWrite, RoleAdmin, false}, {RoleWrite, RoleWrite, true}, {RoleWrite, RoleRead, true},
		{RoleRead, RoleAdmin, false}, {RoleRead, RoleWrite, false}, {RoleRead, RoleRead, true},
		{"root", RoleRead, false}, {RoleAdmin, "root", false}, {"", "", false},
	}
	for _, tc := range tests {
		if got := tc.have.Implies(tc.need); got != tc.want {
			t.Errorf("%q.Implies(%q) = %v, want %v", tc.have, tc.need, got, tc.want)
		}
	}
	id := Identity{Cluster: "c", Kind: KindClient, Name: "app", Roles: []Role{RoleWrite}}
	if !id.Has(RoleRead) || !id.Has(RoleWrite) || id.Has(RoleAdmin) {
		t.Errorf("a write client: Has read %v, write %v, admin %v", id.Has(RoleRead), id.Has(RoleWrite), id.Has(RoleAdmin))
	}
	if (Identity{Kind: KindNode}).Has(RoleRead) {
		t.Error("an identity without roles has read")
	}
	if _, err := ParseRole("Admin"); !errors.Is(err, ErrUnknownRole) {
		t.Errorf("ParseRole(Admin): %v", err)
	}
}

func TestCheckNames(t *testing.T) {
	tests := []struct {
		s                 string
		nameOK, clusterOK bool
	}{
		{"n1", true, true},
		{"prod.eu-1_a", true, true},
		{strings.Repeat("x", MaxNameLen), true, true},
		{strings.Repeat("x", MaxNameLen+1), false, false},
		{"", false, false},
		{"a b", false, false},
		{"a/b", false, false},
		{"a:b", false, false},
		{"é", false, false},
		{".n", true, false},
		{"n.", true, false},
		{"a..b", true, false},
		{"..", true, false},
	}
	for _, tc := range tests {
		if err := CheckName(tc.s); (err == nil) != tc.nameOK || err != nil && !errors.Is(err, ErrBadName) {
			t.Errorf("CheckName(%q) = %v, want ok %v", tc.s, err, tc.nameOK)
		}
		if err := CheckCluster(tc.s); (err == nil) != tc.clusterOK || err != nil && !errors.Is(err, ErrBadCluster) {
			t.Errorf("CheckCluster(%q) = %v, want ok %v", tc.s, err, tc.clusterOK)
		}
	}
}
