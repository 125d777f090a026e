package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/node"
	"github.com/heartbeat-sidecar/heartbeat/pki"
)

const tlsUsage = `Usage: heartbeat tls init|inspect [flags]

  heartbeat tls init --out DIR [--cluster-id ID] --nodes n1,n2,n3 [--clients admin,app:write]
                     [--hosts h1,10.0.0.5] [--days N] [--force]
  heartbeat tls inspect FILE...

init makes the cluster's CA and the certificates of its nodes and clients
(package pki); inspect prints what a certificate grants. Neither asks a node.
Run 'heartbeat tls init|inspect --help' for the flags.
`

const tlsInitUsage = `Usage: heartbeat tls init --out DIR [--cluster-id ID] --nodes n1,n2,n3 [--clients LIST] [flags]

Makes a CA for the cluster in DIR (ca.pem, ca-key.pem), or signs with the one
already there, and issues ECDSA P-256 certificates: for each node
<id>.pem and <id>-key.pem (server and client auth, identity
heartbeat://<cluster>/node/<id>), for each client <name>.pem and
<name>-key.pem (client auth, identity heartbeat://<cluster>/client/<name>
and its roles). Certificates already in DIR are kept, so running it again
with more nodes adds them. DIR is created 0700, keys are 0600,
certificates 0644. The CA is valid 10 years.

--clients takes name:role (roles: read, write, admin; admin implies write
implies read; name:read+admin for several). A bare name that is a role name
is that role: "admin" is admin:admin. "client:admin" gives client.pem and
client-key.pem, the files the scripts hand to the CLI.

Example:
  heartbeat tls init --out data/tls --cluster-id prod --nodes n1,n2,n3 \
    --clients client:admin,app:write --hosts db1.example.com,10.0.0.5
`

const tlsInspectUsage = `Usage: heartbeat tls inspect FILE...

Prints each certificate in the PEM files: subject, issuer, serial, validity,
whether it is a CA, its key, usages and names, and what it grants: the
cluster, the node or client it names and the client's roles. A private key
file is named as such.
`

// cmdTLS dispatches tls init|inspect.
func cmdTLS(_ context.Context, args []string, stdout, _ io.Writer, getenv env) error {
	if len(args) == 0 || isHelp(args[0]) {
		fmt.Fprint(stdout, tlsUsage)
		if len(args) == 0 {
			return usageErrorf("missing subcommand: init or inspect")
		}
		return nil
	}
	switch args[0] {
	case "init":
		return tlsInit(args[1:], stdout, getenv)
	case "inspect":
		return tlsInspect(args[1:], stdout, getenv)
	}
	return usageErrorf("tls: unknown subcommand %q (want init or inspect)", args[0])
}

// tlsInit is heartbeat tls init.
func tlsInit(args []string, stdout io.Writer, getenv env) error {
	var out, cluster, nodes, clients, hosts string
	var days int
	var force bool
	fs := flag.NewFlagSet("tls init", flag.ContinueOnError)
	fs.StringVar(&out, "out", "", "directory to write into (required)")
	fs.StringVar(&cluster, "cluster-id", node.DefaultConfig().ClusterID, "the cluster the certificates are for (run's --cluster-id)")
	fs.StringVar(&nodes, "nodes", "", "node ids to issue node certificates for, n1,n2,...")
	fs.StringVar(&clients, "clients", "", "clients to issue, name:role,... (roles read, write, admin; a bare role name is name and role)")
	fs.StringVar(&hosts, "hosts", "", "extra DNS names and IP addresses for every node certificate, h1,10.0.0.5,...")
	fs.IntVar(&days, "days", 365, "validity of the node and client certificates, in days")
	fs.BoolVar(&force, "force", false, "make a new CA even if --out has one, and reissue every certificate named")
	if err := parseFlags(fs, args, getenv, stdout, tlsInitUsage, "out", "cluster-id", "nodes", "clients", "hosts", "days", "force"); err != nil {
		return err
	}
	opts := pki.InitOptions{Dir: out, Cluster: cluster, Nodes: splitComma(nodes), Hosts: splitComma(hosts),
		LeafValidity: time.Duration(days) * 24 * time.Hour, Force: force}
	switch {
	case out == "":
		return usageErrorf("missing --out DIR")
	case days <= 0:
		return usageErrorf("--days must be positive, got %d", days)
	case len(opts.Nodes) == 0 && clients == "":
		return usageErrorf("missing --nodes (or --clients): nothing to issue")
	}
	if err := pki.CheckCluster(cluster); err != nil {
		return usageErrorf("--cluster-id: %v", err)
	}
	var err error
	if opts.Clients, err = pki.ParseClients(clients); err != nil {
		return usageErrorf("--clients: %v", err)
	}
	if err := opts.Validate(); err != nil {
		return usageErrorf("%v", err)
	}
	res, err := pki.Init(opts)
	caPath := filepath.Join(out, pki.CAFile)
	switch {
	case res.CAReused:
		fmt.Fprintf(stdout, "signed with the CA in %s (cluster %s)\n", caPath, cluster)
	case slices.Contains(res.Written, pki.CAFile):
		fmt.Fprintf(stdout, "made a new CA for cluster %s: %s\n", cluster, caPath)
	}
	for _, f := range res.Written {
		fmt.Fprintf(stdout, "wrote %s\n", filepath.Join(out, f))
	}
	for _, f := range res.Kept {
		fmt.Fprintf(stdout, "kept  %s (already there)\n", filepath.Join(out, f))
	}
	return err // after saying what was written before it
}

// splitComma splits a comma-separated flag value, dropping empty items.
func splitComma(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// tlsInspect is heartbeat tls inspect.
func tlsInspect(args []string, stdout io.Writer, getenv env) error {
	for _, a := range args {
		if isHelp(a) && a != "help" { // inspect has no flags to list
			fmt.Fprint(stdout, tlsInspectUsage)
			return flag.ErrHelp
		}
	}
	fs := flag.NewFlagSet("tls inspect", flag.ContinueOnError)
	files, err := parseFlagsArgs(fs, args, getenv, stdout, tlsInspectUsage)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return usageErrorf("missing FILE (heartbeat tls inspect FILE...)")
	}
	for i, f := range files {
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		if err := inspectFile(stdout, f); err != nil {
			return err
		}
	}
	return nil
}

// inspectFile prints every PEM block of a file: certificates in full, keys
// by their type.
func inspectFile(w io.Writer, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	n := 0
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if n > 0 {
			fmt.Fprintln(w)
		}
		n++
		switch {
		case block.Type == "CERTIFICATE":
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return fmt.Errorf("%s: certificate %d: %w", path, n, err)
			}
			printCert(w, path, cert, time.Now())
		case strings.HasSuffix(block.Type, "PRIVATE KEY"):
			fmt.Fprintf(w, "file:      %s\nprivate:   %s private key (secret; its certificate says what it grants)\n", path, describeKey(block))
		default:
			fmt.Fprintf(w, "file:      %s\nPEM block: %s (not a certificate)\n", path, block.Type)
		}
	}
	if n == 0 {
		return fmt.Errorf("%s: no PEM data", path)
	}
	return nil
}

// printCert prints one certificate and what it grants.
func printCert(w io.Writer, path string, c *x509.Certificate, now time.Time) {
	validity := "valid now"
	switch {
	case now.Before(c.NotBefore):
		validity = "NOT YET VALID"
	case now.After(c.NotAfter):
		validity = "EXPIRED"
	}
	fmt.Fprintf(w, "file:      %s\n", path)
	fmt.Fprintf(w, "subject:   %s\n", c.Subject)
	fmt.Fprintf(w, "issuer:    %s\n", c.Issuer)
	fmt.Fprintf(w, "serial:    %x\n", c.SerialNumber)
	fmt.Fprintf(w, "validity:  %s to %s (%s)\n", c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339), validity)
	fmt.Fprintf(w, "key:       %s\n", describePublicKey(c.PublicKey))
	if len(c.ExtKeyUsage) > 0 {
		fmt.Fprintf(w, "usage:     %s\n", strings.Join(extKeyUsages(c.ExtKeyUsage), ", "))
	}
	if len(c.DNSNames) > 0 {
		fmt.Fprintf(w, "DNS names: %s\n", strings.Join(c.DNSNames, ", "))
	}
	if len(c.IPAddresses) > 0 {
		ips := make([]string, len(c.IPAddresses))
		for i, ip := range c.IPAddresses {
			ips[i] = ip.String()
		}
		fmt.Fprintf(w, "IPs:       %s\n", strings.Join(ips, ", "))
	}
	for _, u := range c.URIs {
		fmt.Fprintf(w, "URI:       %s\n", u)
	}
	if c.IsCA {
		cluster, err := pki.ClusterOfCA(c)
		if err != nil {
			fmt.Fprintf(w, "CA:        yes, not a heartbeat cluster's (%v)\n", err)
			return
		}
		fmt.Fprintf(w, "CA:        yes, of cluster %s\n", cluster)
		fmt.Fprintf(w, "grants:    trust: the nodes and clients of cluster %s accept the certificates it signs\n", cluster)
		return
	}
	fmt.Fprintf(w, "CA:        no\n")
	id, err := pki.IdentityOf(c)
	if err != nil {
		fmt.Fprintf(w, "grants:    nothing in a heartbeat cluster (%v)\n", err)
		return
	}
	fmt.Fprintf(w, "cluster:   %s\n", id.Cluster)
	switch id.Kind {
	case pki.KindNode:
		fmt.Fprintf(w, "node:      %s\n", id.Name)
		fmt.Fprintf(w, "grants:    membership: serve as node %s and dial the other nodes of cluster %s\n", id.Name, id.Cluster)
	case pki.KindClient:
		fmt.Fprintf(w, "client:    %s\n", id.Name)
		fmt.Fprintf(w, "roles:     %s\n", rolesList(id.Roles))
		fmt.Fprintf(w, "grants:    %s in cluster %s\n", grantedBy(id), id.Cluster)
	}
}

// rolesList is "write" or "read, admin", or "-".
func rolesList(rs []pki.Role) string {
	if len(rs) == 0 {
		return "-"
	}
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = string(r)
	}
	return strings.Join(s, ", ")
}

// grantedBy says what a client's roles let it do, implied roles included.
func grantedBy(id pki.Identity) string {
	var can []string
	for _, r := range pki.Roles() {
		if id.Has(r) {
			can = append(can, string(r))
		}
	}
	if len(can) == 0 {
		return "no role: nothing"
	}
	return strings.Join(can, ", ")
}

// extKeyUsages names the extended key usages.
func extKeyUsages(us []x509.ExtKeyUsage) []string {
	out := make([]string, len(us))
	for i, u := range us {
		switch u {
		case x509.ExtKeyUsageServerAuth:
			out[i] = "server auth"
		case x509.ExtKeyUsageClientAuth:
			out[i] = "client auth"
		case x509.ExtKeyUsageAny:
			out[i] = "any"
		default:
			out[i] = fmt.Sprintf("extended key usage %d", u)
		}
	}
	return out
}

// describePublicKey names a key's algorithm and size.
func describePublicKey(k any) string {
	switch k := k.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d bits", k.N.BitLen())
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return fmt.Sprintf("%T", k)
}

// describeKey names a private key block's algorithm.
func describeKey(block *pem.Block) string {
	var k any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		err = errors.New("unknown type")
	}
	if err != nil {
		return fmt.Sprintf("%s (unreadable: %v)", block.Type, err)
	}
	if s, ok := k.(crypto.Signer); ok {
		return describePublicKey(s.Public())
	}
	return fmt.Sprintf("%T", k)
}
