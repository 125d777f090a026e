package node

import (
	"fmt"
	"net/http"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/heartbeat-sidecar/heartbeat/authz"
	"github.com/heartbeat-sidecar/heartbeat/gateway"
	"github.com/heartbeat-sidecar/heartbeat/pki"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// setupSecurity loads the node's certificates (Config.CAFile, CertFile,
// KeyFile) and tokens and builds the authorizer of the client and HTTP
// ports. Without TLS the node's own dials are plaintext.
func (n *Node) setupSecurity() error {
	cfg := n.cfg
	if cfg.TLS() {
		st, err := pki.NewStore(pki.StoreOptions{
			CAFile: cfg.CAFile, CertFile: cfg.CertFile, KeyFile: cfg.KeyFile,
			OnReload: func(err error) {
				if err != nil {
					n.log.Error("new certificate files refused; the previous ones stay in use", "error", err)
					return
				}
				n.log.Info("certificate files reloaded", "cert", cfg.CertFile, "ca", cfg.CAFile)
			},
		})
		if err != nil {
			return fmt.Errorf("%w: TLS: %w", ErrInvalidConfig, err)
		}
		id := st.Identity()
		if id.Kind != pki.KindNode || id.Name != cfg.ID || id.Cluster != cfg.ClusterID {
			return fmt.Errorf("%w: TLS: %s is the certificate of %s, not of node %s of cluster %s",
				ErrInvalidConfig, cfg.CertFile, id, cfg.ID, cfg.ClusterID)
		}
		n.tls = st
	}
	var tokens []authz.Token
	if cfg.TokensFile != "" {
		var err error
		if tokens, err = authz.LoadTokens(cfg.TokensFile); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
	}
	az, err := authz.New(authz.Config{
		SelfID:     cfg.ID,
		Open:       !cfg.TLS() && len(tokens) == 0,
		TLS:        cfg.TLS(),
		Tokens:     tokens,
		Registerer: n.registry,
		Logger:     n.log.Named("authz"),
	})
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.authz = az
	if az.Open() && cfg.Insecure {
		n.log.Warn("running without TLS and without tokens on a non-loopback address (--insecure): anyone who reaches a port controls the cluster")
	}
	return nil
}

// dialOptions are the credentials of the node's own calls to other nodes'
// peer and client ports: its certificate, verifying theirs (any node of
// the cluster), or plaintext.
func (n *Node) dialOptions() []grpc.DialOption {
	if n.tls == nil {
		return []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	return []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(n.tls.ClientTLSConfig(nil)))}
}

// clientServerOptions are the client port's: TLS (client certificates
// optional, verified when presented) and the authorizer on every call.
func (n *Node) clientServerOptions() []grpc.ServerOption {
	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(n.authz.UnaryInterceptor),
		// The stream cap after the authorizer: a refused caller takes no place.
		grpc.ChainStreamInterceptor(n.authz.StreamInterceptor, n.watches.StreamInterceptor),
		// One request limit on every path (Config.MaxRequestBytes), the
		// gateway's body limit too; answers up to the client's limit.
		grpc.MaxRecvMsgSize(n.cfg.MaxRequestBytes),
		grpc.MaxSendMsgSize(heartbeatpb.MaxResponseBytes),
	}
	opts = append(opts, n.clientLimitOptions()...)
	if n.tls != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(n.tls.ServerTLSConfig(false))))
	}
	return opts
}

// gatewayDialOption is the credential of the gateway's connection to the
// node's own client port: with TLS, the node's certificate, expecting the
// node itself (so that the authorizer believes the identities it forwards).
func (n *Node) gatewayDialOption() grpc.DialOption {
	if n.tls == nil {
		return grpc.WithTransportCredentials(insecure.NewCredentials())
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(n.tls.ClientTLSConfig(pki.ExpectNode(n.cfg.ID))))
}

// handlerActions maps the gateway's Handler routes to the authorizer's
// policy entries.
var handlerActions = map[string]string{
	gateway.HandlerHealthz: authz.HTTPHealthz,
	gateway.HandlerReadyz:  authz.HTTPReadyz,
	gateway.HandlerMetrics: authz.HTTPMetrics,
	gateway.HandlerPprof:   authz.HTTPPprof,
}

// authorizeHTTP checks an HTTP request before the gateway serves it: key is
// an RPC route's full method name or a Handler route's key.
func (n *Node) authorizeHTTP(r *http.Request, key string) error {
	action := key
	if !strings.HasPrefix(key, "/") {
		var ok bool
		if action, ok = handlerActions[key]; !ok {
			action = "http:" + key // not in the policy: refused
		}
	}
	return n.authz.AuthorizeHTTP(r, action)
}

// serveHTTP serves the HTTP port: HTTPS with the node's certificate when
// TLS is on (client certificates optional, verified when presented).
func (n *Node) serveHTTP() error {
	if n.tls != nil {
		n.httpServer.TLSConfig = n.tls.ServerTLSConfig(false)
		return n.httpServer.ServeTLS(n.httpLn, "", "")
	}
	return n.httpServer.Serve(n.httpLn)
}

// metricsHandler serves the plaintext metrics listener (Config.MetricsAddr):
// /healthz, /readyz and /metrics, nothing else, no credentials.
func (n *Node) metricsHandler(metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", n.handleHealthz)
	mux.HandleFunc("GET /readyz", n.handleReadyz)
	mux.Handle("GET /metrics", metrics)
	return mux
}
