package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/membership"
	"github.com/heartbeat-sidecar/heartbeat/node"
)

const snapshotUsage = `Usage: heartbeat snapshot save FILE [flags]
       heartbeat snapshot restore FILE --data-dir DIR --node-id ID --peer-addr HOST:PORT [flags]
       heartbeat snapshot inspect FILE

save (role admin) asks the node at --addr for a consistent copy of the cluster
state (members, resources, assignments) and writes it to FILE (mode 0600) with
its revision, term and SHA-256; a stream damaged on the way is refused.

restore is offline and seeds a NEW cluster (etcdctl snapshot restore): it
checks FILE, then writes into the empty --data-dir a fresh identity
(--cluster-id, --node-id) and a raft snapshot of the state whose only voter is
--node-id at --peer-addr. Start that node with the same --node-id,
--cluster-id, --data-dir and --peer-addr (no --initial-cluster needed): it
elects itself and serves the restored state; add members with join. The old
cluster's members are in the state as they were; the reconciler declares the
absent ones dead and moves their resources.

inspect checks FILE and prints what it holds.
`

func cmdSnapshot(ctx context.Context, args []string, stdout, stderr io.Writer, getenv env) error {
	if len(args) == 0 || isHelp(args[0]) {
		if len(args) == 0 {
			return usageErrorf("missing save, restore or inspect")
		}
		fmt.Fprint(stdout, snapshotUsage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "save":
		return snapshotSave(ctx, args[1:], stdout, getenv)
	case "restore":
		return snapshotRestore(args[1:], stdout, getenv)
	case "inspect":
		return snapshotInspect(args[1:], stdout, getenv)
	default:
		return usageErrorf("unknown snapshot command %q: want save, restore or inspect", args[0])
	}
}

// oneFile returns the single positional argument FILE.
func oneFile(pos []string) (string, error) {
	switch len(pos) {
	case 0:
		return "", usageErrorf("missing FILE")
	case 1:
		return pos[0], nil
	default:
		return "", usageErrorf("unexpected argument %q", pos[1])
	}
}

func snapshotSave(ctx context.Context, args []string, stdout io.Writer, getenv env) error {
	c, pos, err := parseClientArgs("snapshot save", snapshotUsage, args, getenv, stdout, nil)
	if err != nil {
		return err
	}
	path, err := oneFile(pos)
	if err != nil {
		return err
	}
	w, err := election.CreateBackup(path)
	if err != nil {
		return err
	}
	cl, err := newClient(c)
	if err != nil {
		w.Abort()
		return err
	}
	defer cl.Close()
	// The whole state streams: --timeout bounds the call, retries included.
	sctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	snap, err := cl.Snapshot(sctx, w)
	if err != nil {
		w.Abort()
		return fmt.Errorf("snapshot from %s: %w", c.addr(), err)
	}
	info, err := w.Commit(election.BackupInfo{ClusterID: snap.ClusterID, NodeID: snap.NodeID, Revision: snap.Revision, Term: snap.Term, Format: snap.Format}, snap.Size, snap.SHA256)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(stdout, info)
	}
	return printBackupLine(stdout, "saved", path, info)
}

func printBackupLine(w io.Writer, verb, path string, info election.BackupInfo) error {
	_, err := fmt.Fprintf(w, "%s %s: cluster %s, revision %d, term %d, %d bytes, sha256 %s\n",
		verb, path, info.ClusterID, info.Revision, info.Term, info.Size, info.SHA256)
	return err
}

func snapshotInspect(args []string, stdout io.Writer, getenv env) error {
	var asJSON bool
	fs := flag.NewFlagSet("snapshot inspect", flag.ContinueOnError)
	fs.BoolVar(&asJSON, "json", false, "print JSON instead of text")
	pos, err := parseFlagsArgs(fs, args, getenv, stdout, snapshotUsage, "json")
	if err != nil {
		return err
	}
	path, err := oneFile(pos)
	if err != nil {
		return err
	}
	info, err := election.VerifyBackup(path)
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(stdout, info)
	}
	return printBackupLine(stdout, "backup", path, info)
}

func snapshotRestore(args []string, stdout io.Writer, getenv env) error {
	def := node.DefaultConfig()
	var rc election.RestoreConfig
	var asJSON bool
	fs := flag.NewFlagSet("snapshot restore", flag.ContinueOnError)
	fs.StringVar(&rc.DataDir, "data-dir", "", "the new node's data dir: must not exist or be empty (required)")
	fs.StringVar(&rc.NodeID, "node-id", "", "the new node's id (required)")
	fs.StringVar(&rc.ClusterID, "cluster-id", def.ClusterID, "the new cluster's name")
	fs.StringVar(&rc.PeerAddr, "peer-addr", "", "the new node's advertised peer address, host:port (required)")
	fs.BoolVar(&asJSON, "json", false, "print JSON instead of text")
	pos, err := parseFlagsArgs(fs, args, getenv, stdout, snapshotUsage, "data-dir", "node-id", "cluster-id", "peer-addr", "json")
	if err != nil {
		return err
	}
	if rc.Backup, err = oneFile(pos); err != nil {
		return err
	}
	switch {
	case rc.DataDir == "":
		return usageErrorf("missing --data-dir")
	case rc.NodeID == "":
		return usageErrorf("missing --node-id")
	case rc.PeerAddr == "":
		return usageErrorf("missing --peer-addr")
	}
	if err := node.ValidatePeers([]election.Peer{{ID: rc.NodeID, Address: rc.PeerAddr, Voter: true}}); err != nil {
		return usageErrorf("--node-id/--peer-addr: %v", err)
	}
	fsm, err := membership.NewFSM(membership.DefaultConfig())
	if err != nil {
		return err
	}
	info, err := election.RestoreBackup(rc, fsm)
	if err != nil {
		if errors.Is(err, election.ErrInvalidConfig) {
			return usageErrorf("%v", err)
		}
		return err
	}
	if asJSON {
		return printJSON(stdout, map[string]any{"backup": info, "data_dir": rc.DataDir, "node_id": rc.NodeID, "cluster_id": rc.ClusterID, "peer_addr": rc.PeerAddr})
	}
	_, err = fmt.Fprintf(stdout, "restored %s into %s: cluster %s, node %s at %s, revision %d, term %d\n",
		rc.Backup, rc.DataDir, rc.ClusterID, rc.NodeID, rc.PeerAddr, info.Revision, info.Term)
	return err
}
