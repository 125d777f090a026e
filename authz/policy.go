package authz

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"strings"

	"google.golang.org/grpc/health/grpc_health_v1"

	"github.com/heartbeat-sidecar/heartbeat/pki"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// Names of the HTTP routes that have no RPC, as policy entries.
const (
	HTTPMetrics = "http:/metrics"
	HTTPPprof   = "http:/debug/pprof/"
	HTTPOpenAPI = "http:/v1/openapi.json"
	HTTPHealthz = "http:/healthz"
	HTTPReadyz  = "http:/readyz"
)

// DefaultPolicy is the role table of the client port and the HTTP port
// (README: Security). Every method of heartbeat.v1.Coordinator is in it.
func DefaultPolicy() map[string]pki.Role {
	c := func(name string) string { return "/" + heartbeatpb.Coordinator_ServiceDesc.ServiceName + "/" + name }
	p := map[string]pki.Role{
		HTTPMetrics: pki.RoleRead,
		HTTPPprof:   pki.RoleAdmin,
		// Server reflection shows the API, nothing of the state.
		"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      pki.RoleRead,
		"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": pki.RoleRead,
	}
	for _, m := range []string{"GetStatus", "ListMembers", "WatchMembers", "GetLeader", "WatchLeader", "GetLease", "KeepAlive",
		"GetResource", "ListResources", "ListAssignments", "WatchAssignments"} {
		p[c(m)] = pki.RoleRead
	}
	for _, m := range []string{"RegisterResources", "DeleteResources", "AppHeartbeat"} {
		p[c(m)] = pki.RoleWrite
	}
	for _, m := range []string{"SetDrain", "SetLeaderPriority", "StepDown", "TransferLeadership", "Join", "Leave", "Remove"} {
		p[c(m)] = pki.RoleAdmin
	}
	// A backup holds the whole state: admin only.
	p[c("Snapshot")] = pki.RoleAdmin
	return p
}

// DefaultPublic lists what anyone may call: the gRPC health service (probes
// carry no credentials), the HTTP health routes and the API document.
func DefaultPublic() map[string]bool {
	return map[string]bool{
		grpc_health_v1.Health_Check_FullMethodName: true,
		grpc_health_v1.Health_Watch_FullMethodName: true,
		grpc_health_v1.Health_List_FullMethodName:  true,
		HTTPHealthz: true, HTTPReadyz: true, HTTPOpenAPI: true,
	}
}

// Token is a bearer token: who it names and what it may do. Only the
// token's SHA-256 is kept.
type Token struct {
	// Name names the caller in logs ("token/<name>").
	Name string
	// Role is what the token may do.
	Role pki.Role
	hash [32]byte
}

// NewToken makes a Token from its secret.
func NewToken(name string, role pki.Role, secret string) Token {
	return Token{Name: name, Role: role, hash: sha256.Sum256([]byte(secret))}
}

// MinTokenLen is the shortest secret a tokens file may hold.
const MinTokenLen = 16

// ParseTokens reads a tokens file: one "<name> <role> <secret>" per line,
// blank lines and lines starting with # ignored. Secrets shorter than
// MinTokenLen are refused.
func ParseTokens(r io.Reader) ([]Token, error) {
	var out []Token
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		f := strings.Fields(s)
		if len(f) != 3 {
			return nil, fmt.Errorf("line %d: want \"<name> <role> <secret>\", got %d fields", line, len(f))
		}
		role, err := pki.ParseRole(f[1])
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if len(f[2]) < MinTokenLen {
			return nil, fmt.Errorf("line %d: token of %q is shorter than %d characters", line, f[0], MinTokenLen)
		}
		out = append(out, NewToken(f[0], role, f[2]))
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// LoadTokens reads a tokens file (ParseTokens). The file must not be
// readable by others than its owner.
func LoadTokens(path string) ([]Token, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("authz: tokens: %w", err)
	}
	defer func() { _ = f.Close() }()
	if st, err := f.Stat(); err == nil && st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("authz: tokens file %s is readable by group or others (mode %v): chmod 600 it", path, st.Mode().Perm())
	}
	t, err := ParseTokens(f)
	if err != nil {
		return nil, fmt.Errorf("authz: tokens file %s: %w", path, err)
	}
	return t, nil
}
