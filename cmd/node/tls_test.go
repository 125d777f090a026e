package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestCLITLS: tls init writes the CA, node and client files with their
// modes; tls inspect prints what each grants; a second init adds a node
// with the same CA and keeps the rest.
func TestCLITLS(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	out := cliOK(t, "tls", "init", "--out", dir, "--cluster-id", "prod", "--nodes", "n1,n2",
		"--clients", "client:admin,app:write,read", "--hosts", "db.example.com,10.0.0.5", "--days", "30")
	if !strings.Contains(out, "made a new CA for cluster prod: "+filepath.Join(dir, "ca.pem")) ||
		!strings.Contains(out, "wrote "+filepath.Join(dir, "client-key.pem")) {
		t.Errorf("tls init output:\n%s", out)
	}
	files := []string{"app-key.pem", "app.pem", "ca-key.pem", "ca.pem", "client-key.pem", "client.pem",
		"n1-key.pem", "n1.pem", "n2-key.pem", "n2.pem", "read-key.pem", "read.pem"}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if !slices.Equal(got, files) {
		t.Errorf("tls init wrote %v, want %v", got, files)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("%s: %v %v, want mode 0700", dir, fi.Mode(), err)
	}

	// Each file, inspected: what it must say, line by line.
	serial := regexp.MustCompile(`(?m)^serial:    [0-9a-f]+$`)
	for _, tc := range []struct {
		file string
		mode fs.FileMode
		want []string
	}{
		{"ca.pem", 0o644, []string{"subject:   CN=heartbeat CA prod,O=heartbeat", "CA:        yes, of cluster prod",
			"URI:       heartbeat://prod\n", "grants:    trust: the nodes and clients of cluster prod"}},
		{"n1.pem", 0o644, []string{"subject:   CN=n1,OU=prod node,O=heartbeat", "issuer:    CN=heartbeat CA prod,O=heartbeat",
			"CA:        no", "cluster:   prod", "node:      n1", "usage:     server auth, client auth",
			"DNS names: n1, localhost, db.example.com", "IPs:       127.0.0.1, ::1, 10.0.0.5",
			"URI:       heartbeat://prod/node/n1", "grants:    membership: serve as node n1", "(valid now)"}},
		{"n2.pem", 0o644, []string{"node:      n2"}},
		{"client.pem", 0o644, []string{"client:    client", "roles:     admin", "usage:     client auth\n",
			"grants:    read, write, admin in cluster prod"}},
		{"app.pem", 0o644, []string{"client:    app", "roles:     write", "grants:    read, write in cluster prod"}},
		{"read.pem", 0o644, []string{"client:    read", "roles:     read", "grants:    read in cluster prod"}},
		{"ca-key.pem", 0o600, []string{"private:   ECDSA P-256 private key"}},
		{"n1-key.pem", 0o600, []string{"private:   ECDSA P-256 private key"}},
		{"client-key.pem", 0o600, []string{"private:   ECDSA P-256 private key"}},
	} {
		path := filepath.Join(dir, tc.file)
		if fi, err := os.Stat(path); err != nil || fi.Mode() != tc.mode {
			t.Errorf("%s: mode %v %v, want %v", tc.file, fi.Mode(), err, tc.mode)
		}
		out := cliOK(t, "tls", "inspect", path)
		for _, w := range append(tc.want, "file:      "+path) {
			if !strings.Contains(out, w) {
				t.Errorf("tls inspect %s: no %q in\n%s", tc.file, w, out)
			}
		}
		if strings.HasSuffix(tc.file, "-key.pem") == serial.MatchString(out) {
			t.Errorf("tls inspect %s: a serial line for a key or none for a certificate:\n%s", tc.file, out)
		}
		if strings.HasSuffix(tc.file, "-key.pem") && strings.Contains(out, "BEGIN") {
			t.Errorf("tls inspect %s prints the key:\n%s", tc.file, out)
		}
	}
	// Several files at once, one section each.
	if out := cliOK(t, "tls", "inspect", filepath.Join(dir, "n1.pem"), filepath.Join(dir, "n2.pem")); strings.Count(out, "\nfile:") != 1 {
		t.Errorf("tls inspect of two files:\n%s", out)
	}

	// Again with a new node: the CA is reused, n1 kept, n3 added.
	caBefore, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	out = cliOK(t, "tls", "init", "--out", dir, "--cluster-id", "prod", "--nodes", "n1,n3")
	for _, w := range []string{"signed with the CA in " + filepath.Join(dir, "ca.pem"), "wrote " + filepath.Join(dir, "n3.pem"),
		"kept  " + filepath.Join(dir, "n1.pem") + " (already there)"} {
		if !strings.Contains(out, w) {
			t.Errorf("second tls init: no %q in\n%s", w, out)
		}
	}
	if caAfter, _ := os.ReadFile(filepath.Join(dir, "ca.pem")); string(caAfter) != string(caBefore) {
		t.Error("second tls init replaced the CA")
	}
	if out := cliOK(t, "tls", "inspect", filepath.Join(dir, "n3.pem")); !strings.Contains(out, "issuer:    CN=heartbeat CA prod") {
		t.Errorf("n3:\n%s", out)
	}

	// Runtime failures exit 1: another cluster over this CA, a file that
	// is not PEM.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"tls", "init", "--out", dir, "--cluster-id", "test", "--nodes", "n4"}, `CA of cluster "prod", not "test"`},
		{[]string{"tls", "inspect", filepath.Join(dir, "nope.pem")}, "no such file"},
		{[]string{"tls", "inspect", os.Args[0]}, "no PEM data"},
	} {
		code, _, errOut := cli(tc.args...)
		if code != exitFailure || !strings.Contains(errOut, tc.want) {
			t.Errorf("heartbeat %s: exit %d %q, want 1 and %q", strings.Join(tc.args, " "), code, errOut, tc.want)
		}
	}
}

// TestCLITLSUsage: mistakes on the tls command line exit 2 and write
// nothing.
func TestCLITLSUsage(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"tls"}, "missing subcommand"},
		{[]string{"tls", "frob"}, "unknown subcommand"},
		{[]string{"tls", "init", "--nodes", "n1"}, "missing --out"},
		{[]string{"tls", "init", "--out", dir}, "missing --nodes"},
		{[]string{"tls", "init", "--out", dir, "--nodes", "n1", "--days", "0"}, "--days must be positive"},
		{[]string{"tls", "init", "--out", dir, "--nodes", "n1", "--cluster-id", "a..b"}, "--cluster-id"},
		{[]string{"tls", "init", "--out", dir, "--clients", "app"}, `client "app": no role`},
		{[]string{"tls", "init", "--out", dir, "--clients", "app:root"}, `unknown role "root"`},
		{[]string{"tls", "init", "--out", dir, "--nodes", "n1", "extra"}, `unexpected argument "extra"`},
		{[]string{"tls", "init", "--out", dir, "--nodes", "n/1"}, `"n/1": only letters`},
		{[]string{"tls", "init", "--out", dir, "--nodes", "ca"}, "would both write ca.pem"},
		{[]string{"tls", "init", "--out", dir, "--nodes", "n1", "--hosts", "a..b"}, `host "a..b"`},
		{[]string{"tls", "inspect"}, "missing FILE"},
	} {
		code, out, errOut := cli(tc.args...)
		if code != exitUsage || !strings.Contains(errOut, tc.want) {
			t.Errorf("heartbeat %s: exit %d, stdout %q, stderr %q; want 2 and %q", strings.Join(tc.args, " "), code, out, errOut, tc.want)
		}
	}
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("a refused tls init made %s", dir)
	}
}
