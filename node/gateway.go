package node

import (
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"

	"github.com/heartbeat-sidecar/heartbeat/gateway"
	"github.com/heartbeat-sidecar/heartbeat/membership"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// httpHandler assembles the node's HTTP surface: the gateway (the HTTP/JSON
// face of the Coordinator, a client of this node's own client port over
// n.gwConn) with the node's own handlers mounted as entries of its route
// table: /healthz, /readyz, /metrics and, with EnablePprof, /debug/pprof/.
func (n *Node) httpHandler() (http.Handler, error) {
	cc, err := grpc.NewClient(loopback(n.clientLn.Addr()),
		n.gatewayDialOption(),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(heartbeatpb.MaxResponseBytes)))
	if err != nil {
		return nil, fmt.Errorf("node: gateway connection: %w", err)
	}
	n.gwConn = cc
	cfg := gateway.DefaultConfig()
	cfg.Conn = cc
	cfg.Context = n.bgCtx
	cfg.MaxBodyBytes, cfg.MaxBodyItems = int64(n.cfg.MaxRequestBytes), membership.MaxBatch
	cfg.Credentials = n.authz.HTTPCredentials
	cfg.Authorize = n.authorizeHTTP
	metrics := promhttp.HandlerFor(n.registry, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	cfg.Handlers = map[string]http.Handler{
		gateway.HandlerHealthz: http.HandlerFunc(n.handleHealthz),
		gateway.HandlerReadyz:  http.HandlerFunc(n.handleReadyz),
		gateway.HandlerMetrics: metrics,
	}
	if n.metricsLn != nil {
		n.metricsSrv = n.newHTTPServer(n.metricsHandler(metrics))
	}
	if n.cfg.EnablePprof {
		cfg.Handlers[gateway.HandlerPprof] = http.HandlerFunc(pprofHandler)
	}
	// A leave drains first: its bound is the drain's plus a write's.
	cfg.Timeouts = map[string]time.Duration{heartbeatpb.Coordinator_Leave_FullMethodName: n.cfg.DrainTimeout + gateway.WriteTimeout}
	h, err := gateway.New(cfg)
	if err != nil {
		_ = cc.Close()
		return nil, fmt.Errorf("node: %w", err)
	}
	return h, nil
}

// loopback is the address the node dials its own listener on: a wildcard
// host (":7401", "0.0.0.0:7401", "[::]:7401") becomes 127.0.0.1. A "[::]"
// listener is dual-stack and takes IPv4 too, while ::1 may not exist at all
// (Docker containers have no IPv6 loopback unless IPv6 is enabled: the
// gateway's every call failed there with "cannot assign requested address").
func loopback(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// handleHealthz answers 200 "ok" while the process serves HTTP at all.
func (n *Node) handleHealthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

// handleReadyz answers 200 when Ready, else 503; the body lists each check.
func (n *Node) handleReadyz(w http.ResponseWriter, _ *http.Request) {
	ok, lines := n.Ready()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if ok {
		w.WriteHeader(http.StatusOK)
	} else {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_, _ = w.Write([]byte(strings.Join(lines, "\n") + "\n"))
}

// pprofHandler serves Go's profiles under /debug/pprof/ (Config.EnablePprof).
func pprofHandler(w http.ResponseWriter, r *http.Request) {
	switch strings.TrimPrefix(r.URL.Path, "/debug/pprof/") {
	case "cmdline":
		pprof.Cmdline(w, r)
	case "profile":
		pprof.Profile(w, r)
	case "symbol":
		pprof.Symbol(w, r)
	case "trace":
		pprof.Trace(w, r)
	default:
		pprof.Index(w, r) // the index, and named profiles: heap, goroutine, ...
	}
}
