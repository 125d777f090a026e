package authz

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"strings"

	"google.golang.org/grpc/health/grpc_health_v1"

	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// Role is what a caller may do. Each role includes the ones below it.
type Role int

// The roles, weakest first.
const (
	// RoleNone may call only public methods.
	RoleNone Role = iota
	// RoleRead may read: status, members, leader, leases, resources,
	// assignments and every watch.
	RoleRead
	// RoleWrite may also register and delete resources and send its
	// application's heartbeat.
	RoleWrite
	// RoleAdmin may also change the cluster: join, remove, leave, drain,
	// priority, step-down, transfer, profiles.
	RoleAdmin
)

var roleNames = [...]string{"none", "read", "write", "admin"}

// String is the role's name: none, read, write, admin.
func (r Role) String() string {
	if r < 0 || int(r) >= len(roleNames) {
		return fmt.Sprintf("role(%d)", int(r))
	}
	return roleNames[r]
}

// Includes reports whether a caller with role r may do what need requires.
func (r Role) Includes(need Role) bool { return r >= need }

// ParseRole reads a role name (read, write, admin).
func ParseRole(s string) (Role, error) {
	for i, n := range roleNames {
		if i > 0 && strings.EqualFold(s, n) {
			return Role(i), nil
		}
	}
	return RoleNone, fmt.Errorf("unknown role %q (read, write or admin)", s)
}

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
func DefaultPolicy() map[string]Role {
	c := func(name string) string { return "/" + heartbeatpb.Coordinator_ServiceDesc.ServiceName + "/" + name }
	p := map[string]Role{
		HTTPMetrics: RoleRead,
		HTTPPprof:   RoleAdmin,
		// Server reflection shows the API, nothing of the state.
		"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      RoleRead,
		"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": RoleRead,
	}
	for _, m := range []string{"GetStatus", "ListMembers", "WatchMembers", "GetLeader", "WatchLeader", "GetLease", "KeepAlive",
		"GetResource", "ListResources", "ListAssignments", "WatchAssignments"} {
		p[c(m)] = RoleRead
	}
	for _, m := range []string{"RegisterResources", "DeleteResources", "AppHeartbeat"} {
		p[c(m)] = RoleWrite
	}
	for _, m := range []string{"SetDrain", "SetLeaderPriority", "StepDown", "TransferLeadership", "Join", "Leave", "Remove"} {
		p[c(m)] = RoleAdmin
	}
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
	Role Role
	hash [32]byte
}

// NewToken makes a Token from its secret.
func NewToken(name string, role Role, secret string) Token {
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
		role, err := ParseRole(f[1])
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
