package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/client"
)

// defaultAddr is the client address asked when neither --addr nor
// HEARTBEAT_ADDR names one: a node on this machine with the default ports.
const defaultAddr = "127.0.0.1:7401"

// clientFlags are the flags every client command takes.
type clientFlags struct {
	// addrs is --addr split at commas: the node asked first, then fallbacks.
	addrs   []string
	json    bool
	timeout time.Duration
	// tls is built from --cacert, --cert and --key (nil: plaintext).
	tls *tls.Config
	// token is --token, read from its file when given as @FILE.
	token string
}

// securityFlags are the common flags that say how a command proves who it
// is and checks whom it talks to; read from the environment like --addr.
type securityFlags struct {
	cacert, cert, key, token string
}

// define adds the flags to fs.
func (sf *securityFlags) define(fs *flag.FlagSet) {
	fs.StringVar(&sf.cacert, "cacert", "", "the cluster's CA bundle (PEM: ca.pem of 'heartbeat tls init'): talk TLS and\naccept only nodes it signed; \"\": plaintext")
	fs.StringVar(&sf.cert, "cert", "", "this client's certificate (PEM), whose roles the node grants; with --key and\n--cacert")
	fs.StringVar(&sf.key, "key", "", "the private key of --cert (PEM)")
	fs.StringVar(&sf.token, "token", "", "bearer token a node's --tokens-file lists; @FILE reads it from FILE (keeps it\nout of ps and the shell history); without --cacert only to a loopback --addr")
}

// apply checks the flags and sets c's TLS configuration and token; errors
// are usage errors (nothing was sent).
func (sf securityFlags) apply(c *clientFlags) error {
	switch {
	case (sf.cert == "") != (sf.key == ""):
		return usageErrorf("--cert and --key go together")
	case sf.cert != "" && sf.cacert == "":
		return usageErrorf("--cert needs --cacert (the cluster's ca.pem): a node's certificate is verified against it")
	}
	if sf.cacert != "" {
		cfg, err := client.TLSConfigFromFiles(sf.cacert, sf.cert, sf.key)
		if err != nil {
			return usageErrorf("--cacert, --cert, --key: %v", err)
		}
		c.tls = cfg
	}
	c.token = sf.token
	if path, ok := strings.CutPrefix(sf.token, "@"); ok {
		b, err := os.ReadFile(path)
		if err != nil {
			return usageErrorf("--token: %v", err)
		}
		c.token = strings.TrimSpace(string(b))
		if c.token == "" {
			return usageErrorf("--token: %s is empty", path)
		}
	}
	if c.token != "" && c.tls == nil {
		for _, a := range c.addrs {
			if !loopback(a) {
				return usageErrorf("--token without --cacert: the token would travel in the clear to %s; give --cacert (the cluster's ca.pem)", a)
			}
		}
	}
	return nil
}

// loopback reports whether addr's host is localhost or a loopback IP, where
// a token may go without TLS.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return strings.EqualFold(host, "localhost") || ip != nil && ip.IsLoopback()
}

// addr is the node the command asks: the first of --addr.
func (c clientFlags) addr() string { return c.addrs[0] }

// clientUsage is the usage text of a command without positional arguments.
func clientUsage(cmd, what string) string {
	return fmt.Sprintf("Usage: heartbeat %s [flags]\n\n%s\n", cmd, what)
}

// parseClient defines the common client flags (plus extra ones) and parses;
// a positional argument is a usage error.
func parseClient(cmd, what string, args []string, getenv env, stdout io.Writer, extra func(*flag.FlagSet)) (clientFlags, error) {
	c, pos, err := parseClientArgs(cmd, clientUsage(cmd, what), args, getenv, stdout, extra)
	if err == nil && len(pos) > 0 {
		err = usageErrorf("unexpected argument %q (flags start with --)", pos[0])
	}
	return c, err
}

// parseClientArgs is parseClient for a command with positional arguments
// (returned in order) and a usage text of its own. Only --addr and the
// security flags are read from the environment (HEARTBEAT_ADDR,
// HEARTBEAT_CACERT, HEARTBEAT_CERT, HEARTBEAT_KEY, HEARTBEAT_TOKEN): a
// command's own flags never are, so that the HEARTBEAT_* variables of 'run'
// (HEARTBEAT_NODE_ID, ...) do not leak into a command run beside a node.
func parseClientArgs(cmd, usage string, args []string, getenv env, stdout io.Writer, extra func(*flag.FlagSet)) (clientFlags, []string, error) {
	var c clientFlags
	var addr string
	var sf securityFlags
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.StringVar(&addr, "addr", defaultAddr, "client gRPC address host:port of the node to ask; a comma-separated list adds\nfallbacks for when it is unreachable")
	fs.BoolVar(&c.json, "json", false, "print JSON instead of text")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Second, "deadline of the command (retries included)")
	sf.define(fs)
	noEnv := []string{"json", "timeout"}
	if extra != nil {
		before := map[string]bool{}
		fs.VisitAll(func(f *flag.Flag) { before[f.Name] = true })
		extra(fs)
		fs.VisitAll(func(f *flag.Flag) {
			if !before[f.Name] {
				noEnv = append(noEnv, f.Name)
			}
		})
	}
	pos, err := parseFlagsArgs(fs, args, getenv, stdout, usage, noEnv...)
	if err != nil {
		return c, nil, err
	}
	for _, a := range strings.Split(addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			c.addrs = append(c.addrs, a)
		}
	}
	if len(c.addrs) == 0 {
		return c, nil, usageErrorf("--addr is empty")
	}
	if c.timeout <= 0 {
		return c, nil, usageErrorf("--timeout must be positive")
	}
	if err := sf.apply(&c); err != nil {
		return c, nil, err
	}
	if _, err := clientConfig(c, c.addrs); err != nil {
		return c, nil, usageErrorf("--addr: %v", err)
	}
	return c, pos, nil
}

// defaultTimeout changes the default of --timeout, for a command whose call
// takes longer than a read (call it from parseClient's extra).
func defaultTimeout(fs *flag.FlagSet, d time.Duration) {
	f := fs.Lookup("timeout")
	_ = f.Value.Set(d.String())
	f.DefValue = d.String()
}

// clientConfig is the client configuration of the CLI over endpoints, with
// c's TLS and token, validated.
func clientConfig(c clientFlags, endpoints []string) (client.Config, error) {
	cfg := client.DefaultConfig()
	cfg.Endpoints = endpoints
	cfg.TLS = c.tls
	cfg.Token = c.token
	// A person waits at the terminal: retry soon.
	cfg.RetryBackoff = client.Backoff{Min: 50 * time.Millisecond, Max: 500 * time.Millisecond}
	return cfg, cfg.Validate()
}

// newClient returns a client over c's addresses.
func newClient(c clientFlags) (*client.Client, error) {
	cfg, err := clientConfig(c, c.addrs)
	if err != nil {
		return nil, err
	}
	return client.New(cfg)
}

// withClient runs f with a client over c's addresses and a context bounded
// by --timeout, then closes the client.
func withClient(ctx context.Context, c clientFlags, f func(context.Context, *client.Client) error) error {
	cl, err := newClient(c)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	return f(ctx, cl)
}

// watchClient returns a client for a --watch command: over c's addresses
// plus the client addresses of the other members, as the first node lists
// them (a stale read bounded by --timeout), so that the watch can reconnect
// to another node when the one it watches dies. When the listing fails the
// watch goes on with c's addresses alone (a note goes to stderr).
func watchClient(ctx context.Context, c clientFlags, stderr io.Writer) (*client.Client, error) {
	endpoints := append([]string(nil), c.addrs...)
	cl, err := newClient(c)
	if err != nil {
		return nil, err
	}
	lctx, cancel := context.WithTimeout(ctx, c.timeout)
	ms, err := cl.Members(lctx, client.Stale())
	cancel()
	cl.Close()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		fmt.Fprintf(stderr, "heartbeat: no member list from %s (%v); watching %s only\n", c.addr(), err, strings.Join(endpoints, ","))
	}
	seen := map[string]bool{}
	for _, e := range endpoints {
		seen[e] = true
	}
	for _, m := range ms {
		a := m.ClientAddress
		if a == "" || seen[a] || m.State == "left" {
			continue
		}
		if !dialable(a) || c.token != "" && c.tls == nil && !loopback(a) {
			// (A token goes in the clear to loopback addresses only.)
			continue
		}
		seen[a] = true
		endpoints = append(endpoints, a)
	}
	cfg, err := clientConfig(c, endpoints)
	if err != nil {
		return nil, err
	}
	return client.New(cfg)
}

// dialable reports whether a member's registered client address can be
// dialed from elsewhere: host:port with a port and a host that is not a
// wildcard (a node listening on 0.0.0.0 registers that).
func dialable(addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || port == "" || port == "0" {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsUnspecified()
}
