package client

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/pki"
)

// mdAuthorization is the gRPC metadata key that carries Config.Token, as
// "Bearer <token>" (the key the sidecars read).
const mdAuthorization = "authorization"

// TLSConfigFromFiles returns a TLS configuration for Config.TLS from PEM
// files made by `heartbeat tls init` (package pki): caFile is the cluster's
// CA bundle, the only trust anchor; certFile and keyFile are this client's
// certificate and key, presented to the sidecars (its identity and roles),
// or both empty for a client that authenticates with Config.Token and only
// verifies the sidecars. The files are read now (an error says what is
// wrong with them) and read again when they change, from the next
// connection on, so certificates rotate without a restart.
//
// The sidecar's certificate must verify against the CA bundle and name a
// node of the CA's cluster; the address dialed is not compared with the
// certificate's host names (sidecars are dialed by whatever address the
// membership gives; see package pki).
func TLSConfigFromFiles(caFile, certFile, keyFile string) (*tls.Config, error) {
	st, err := pki.NewStore(pki.StoreOptions{CAFile: caFile, CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		return nil, fmt.Errorf("client: TLS files: %w", err)
	}
	return st.ClientTLSConfig(nil), nil
}

// isLoopback reports whether addr (host:port) names this machine's
// loopback interface: localhost or a loopback IP (127.0.0.0/8, ::1). A
// token may travel to such an address without TLS.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkToken checks that a token can go in a header: printable ASCII, no
// spaces. The message never holds the token.
func checkToken(tok string) error {
	for i := 0; i < len(tok); i++ {
		if c := tok[i]; c <= ' ' || c > '~' {
			return fmt.Errorf("byte %d of the token is %s: a token is printable ASCII without spaces (a trailing newline from a file?)", i, describeByte(c))
		}
	}
	return nil
}

// describeByte names a byte of a token without showing a printable one.
func describeByte(c byte) string {
	switch c {
	case ' ':
		return "a space"
	case '\n', '\r':
		return "a line break"
	case '\t':
		return "a tab"
	}
	return fmt.Sprintf("0x%02x", c)
}

// tokenCreds sends a bearer token with every call and stream on one
// connection. It refuses to send it over a connection without privacy
// (plaintext) unless the address is a loopback one: the client also dials
// addresses it learns (a leader's), which Validate never saw.
type tokenCreds struct {
	header  string // "Bearer <token>"
	addr    string
	clearOK bool // addr is loopback: plaintext allowed
}

// newTokenCreds returns the credentials of token for the connection to
// addr.
func newTokenCreds(token, addr string) tokenCreds {
	return tokenCreds{header: "Bearer " + token, addr: addr, clearOK: isLoopback(addr)}
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (t tokenCreds) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	if !t.clearOK {
		ri, _ := credentials.RequestInfoFromContext(ctx)
		if err := credentials.CheckSecurityLevel(ri.AuthInfo, credentials.PrivacyAndIntegrity); err != nil {
			// A status error: gRPC fails the call with it as it is
			// (Unauthenticated: not retried elsewhere).
			return nil, status.Errorf(codes.Unauthenticated, "client: not sending the token to %s in the clear (%v): set Config.TLS", t.addr, err)
		}
	}
	return map[string]string{mdAuthorization: t.header}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials. It is
// false so that loopback plaintext works; GetRequestMetadata enforces the
// rest per connection.
func (tokenCreds) RequireTransportSecurity() bool { return false }
