package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
)

// TestRecoverTwoOfFive: a 5-node cluster loses n3, n4 and n5 for good; the
// two survivors, stopped and recovered with 'heartbeat recover' to the
// voter set {n1, n2}, elect a leader, accept writes and still hold every
// write acknowledged before the loss. Without the recover step they never
// elect (2 of 5 is no quorum). recover refuses a running node's dir,
// another cluster's dir, an empty voter set and a set without the node.
func TestRecoverTwoOfFive(t *testing.T) {
	c := testcluster.Start(t, 5, testcluster.Options{Wait: cliWait})
	peers := c.Peers()
	dir := func(id string) string { return c.Config(id, "").DataDir }
	addr := c.Leader().ClientAddr()

	var acked []string
	for i := range 12 {
		id := fmt.Sprintf("r-%02d", i)
		if out := cliOK(t, "resources", "put", id, "--addr", addr); !strings.HasPrefix(out, "registered "+id) {
			t.Fatalf("resources put %s: %q", id, out)
		}
		acked = append(acked, id)
	}
	voters := fmt.Sprintf("n1=%s,n2=%s", peers[0].Address, peers[1].Address)

	// A running node's data dir is refused (bolt's lock), and left as it was.
	code, _, errOut := cli("recover", "--data-dir", dir("n1"), "--voters", voters)
	if code != exitFailure || !strings.Contains(errOut, "in use") {
		t.Errorf("recover on a running node: exit %d %q, want 1 and 'in use'", code, errOut)
	}

	for _, id := range []string{"n3", "n4", "n5"} {
		c.Kill(id)
	}
	// Without a quorum no consistent backup can be taken: refused, and no
	// file (not even a partial one) is left.
	backup := filepath.Join(t.TempDir(), "backup.hb")
	code, _, errOut = cli("snapshot", "save", backup, "--addr", c.Node("n1").ClientAddr(), "--timeout", "3s")
	if code != exitFailure {
		t.Errorf("snapshot save without a quorum: exit %d %q, want 1", code, errOut)
	}
	if entries, err := os.ReadDir(filepath.Dir(backup)); err != nil || len(entries) != 0 {
		t.Errorf("snapshot save without a quorum left %v (%v)", entries, err)
	}
	for _, id := range []string{"n1", "n2"} {
		c.Kill(id)
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--data-dir", dir("n1"), "--voters", voters, "--cluster-id", "other"}, exitFailure, "another cluster"},
		{[]string{"--data-dir", dir("n1")}, exitUsage, "missing --voters"},
		{[]string{"--data-dir", dir("n1"), "--voters", " , "}, exitUsage, "voter set is empty"},
		{[]string{"--data-dir", dir("n1"), "--voters", "n2=" + peers[1].Address}, exitUsage, `does not name this data dir's node "n1"`},
		{[]string{"--data-dir", filepath.Join(t.TempDir(), "none"), "--voters", voters}, exitFailure, "no raft state"},
	} {
		code, _, errOut := cli(append([]string{"recover"}, tc.args...)...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("recover %s: exit %d %q, want %d and %q", strings.Join(tc.args, " "), code, errOut, tc.code, tc.want)
		}
	}

	// The second survivor's list comes as a peers file (Consul's peers.json).
	pf := filepath.Join(t.TempDir(), "peers.json")
	b, err := json.Marshal([]peersFileEntry{{ID: "n1", Address: peers[0].Address}, {ID: "n2", Address: peers[1].Address}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pf, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if out := cliOK(t, "recover", "--data-dir", dir("n1"), "--voters", voters); !strings.Contains(out, "voters now "+voters) {
		t.Errorf("recover n1: %q", out)
	}
	if out := cliOK(t, "recover", "--data-dir", dir("n2"), "--peers-file", pf); !strings.Contains(out, "voters now "+voters) {
		t.Errorf("recover n2: %q", out)
	}

	c.Restart("n1")
	c.Restart("n2")
	leader := c.Leader()
	addr = leader.ClientAddr()
	if cfg := leader.Election().Raft().GetConfiguration(); cfg.Error() != nil || len(cfg.Configuration().Servers) != 2 {
		t.Errorf("configuration after recovery: %+v (%v), want n1 and n2", cfg.Configuration().Servers, cfg.Error())
	}
	if out := cliOK(t, "resources", "put", "after", "--addr", addr); !strings.HasPrefix(out, "registered after") {
		t.Fatalf("write after recovery: %q", out)
	}
	want := append(slices.Clone(acked), "after")
	slices.Sort(want)
	for _, n := range []string{"n1", "n2"} {
		naddr := c.Node(n).ClientAddr()
		testwait.Eventually(t, cliWait, n+" lists every acknowledged write", func() (bool, string) {
			var rs []resourceView
			cliJSON(t, &rs, "resources", "list", "--addr", naddr, "--json")
			var got []string
			for _, r := range rs {
				got = append(got, r.ID)
			}
			slices.Sort(got)
			return slices.Equal(got, want), fmt.Sprintf("have %v, want %v", got, want)
		})
	}
}
