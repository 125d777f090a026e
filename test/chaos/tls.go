//go:build chaos

package chaos

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/heartbeat-sidecar/heartbeat/pki"
)

// tlsClientName is the client certificate the suite's host-side clients
// present: the recorder, both workloads. Role admin: the suite reads, writes
// and moves leadership.
const tlsClientName = "client"

// ClusterTLS is the suite's certificates: a CA of the cluster id, one node
// certificate per node (mounted into the containers at /tls, see
// docker-compose.yml) and the admin client certificate of the host's
// clients. A nil *ClusterTLS means plaintext (CHAOS_INSECURE).
type ClusterTLS struct {
	Dir   string
	store *pki.Store
}

// MakeClusterTLS issues the certificates into dir with pki.Init (a new CA
// every run: Force) and hands the node files to the image's user (uid), so
// that a node running as that user reads its 0600 key through the read-only
// bind mount. The directory becomes 0711 (the container user may open the
// files it owns, not list them); the CA key and the client key stay the
// caller's, unreadable in the containers.
func MakeClusterTLS(dir, cluster string, nodes []string, uid, gid int) (*ClusterTLS, error) {
	_, err := pki.Init(pki.InitOptions{
		Dir: dir, Cluster: cluster, Nodes: nodes, Force: true,
		Clients: []pki.ClientSpec{{Name: tlsClientName, Roles: []pki.Role{pki.RoleAdmin}}},
	})
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		return nil, err
	}
	if uid >= 0 && uid != os.Getuid() {
		files := []string{pki.CAFile}
		for _, n := range nodes {
			files = append(files, pki.CertFile(n), pki.KeyFile(n))
		}
		for _, f := range files {
			if err := os.Chown(filepath.Join(dir, f), uid, gid); err != nil {
				return nil, fmt.Errorf("chaos: hand %s to the container user %d:%d (run as root): %w", f, uid, gid, err)
			}
		}
	}
	store, err := pki.NewStore(pki.StoreOptions{
		CertFile: filepath.Join(dir, pki.CertFile(tlsClientName)),
		KeyFile:  filepath.Join(dir, pki.KeyFile(tlsClientName)),
		CAFile:   filepath.Join(dir, pki.CAFile),
	})
	if err != nil {
		return nil, err
	}
	return &ClusterTLS{Dir: dir, store: store}, nil
}

// Config is a client TLS configuration with the admin client certificate
// that verifies a node's chain against the CA and its identity (any node of
// the cluster), not the host name: the suite dials the nodes by IP. nil for
// plaintext.
func (c *ClusterTLS) Config() *tls.Config {
	if c == nil {
		return nil
	}
	return c.store.ClientTLSConfig(nil)
}

// ConfigFor is Config that also wants the node to be node: the recorder
// follows one given node per connection, and a reply from another would
// mislabel the history. nil for plaintext.
func (c *ClusterTLS) ConfigFor(node string) *tls.Config {
	if c == nil {
		return nil
	}
	return c.store.ClientTLSConfig(pki.ExpectNode(node))
}

// DialOptions are the gRPC dial options of a host-side client: TLS
// credentials, or nil (the client package's plaintext default).
func (c *ClusterTLS) DialOptions() []grpc.DialOption {
	if c == nil {
		return nil
	}
	return []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(c.Config()))}
}

// Scheme is "https" with TLS, "http" without.
func (c *ClusterTLS) Scheme() string {
	if c == nil {
		return "http"
	}
	return "https"
}

// imageUser returns the uid and gid an image runs as (its USER, numeric as
// the FROM-scratch Dockerfile gives it); -1, -1 when unset, root or not
// numeric (then no chown is needed, or none is possible).
func imageUser(ctx context.Context, image string) (uid, gid int) {
	out, err := run(ctx, "docker", "image", "inspect", "-f", "{{.Config.User}}", image)
	if err != nil || out == "" {
		return -1, -1
	}
	u, g, ok := strings.Cut(out, ":")
	uid, err = strconv.Atoi(u)
	if err != nil || uid == 0 {
		return -1, -1
	}
	gid = uid
	if ok {
		if gid, err = strconv.Atoi(g); err != nil {
			return -1, -1
		}
	}
	return uid, gid
}
