package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/membership"
	"github.com/heartbeat-sidecar/heartbeat/node"
)

const recoverUsage = `Usage: heartbeat recover --data-dir DIR --voters id=host:port,... [flags]

Rebuilds a cluster that lost its quorum for good from the survivors. Offline:
stop every survivor first (a running node's data dir is refused). On each
survivor's data dir, with the same voter list each time, it replays the
node's log, writes a snapshot whose configuration is exactly --voters (or
--peers-file) and compacts the log. Start the survivors again as before: they
elect a leader among themselves. Members that are gone stay in the membership
list as dead; remove them with 'heartbeat remove'.

Entries the old cluster logged but never committed may survive on one node;
the first leader decides. Step by step: docs/operations.md.
`

// peersFileEntry is one server of a --peers-file (Consul's peers.json).
type peersFileEntry struct {
	ID      string `json:"id"`
	Address string `json:"address"`
}

func cmdRecover(_ context.Context, args []string, stdout, _ io.Writer, getenv env) error {
	var dataDir, clusterID, voters, peersFile string
	var asJSON bool
	fs := flag.NewFlagSet("recover", flag.ContinueOnError)
	fs.StringVar(&dataDir, "data-dir", "", "the stopped node's data dir (required)")
	fs.StringVar(&clusterID, "cluster-id", node.DefaultConfig().ClusterID, "the cluster the data dir belongs to; another cluster's dir is refused")
	fs.StringVar(&voters, "voters", "", "the new voter set, id=host:port,... (the survivors; the same on each)")
	fs.StringVar(&peersFile, "peers-file", "", `the new voter set as a JSON file: [{"id":"n1","address":"host:port"},...]`)
	fs.BoolVar(&asJSON, "json", false, "print the result as JSON")
	if err := parseFlags(fs, args, getenv, stdout, recoverUsage, "data-dir", "cluster-id", "voters", "peers-file", "json"); err != nil {
		return err
	}
	if dataDir == "" {
		return usageErrorf("missing --data-dir")
	}
	peers, err := recoverVoters(voters, peersFile)
	if err != nil {
		return err
	}
	fsm, err := membership.NewFSM(membership.DefaultConfig())
	if err != nil {
		return err
	}
	res, err := election.Recover(election.RecoverConfig{DataDir: dataDir, ClusterID: clusterID, Voters: peers}, fsm)
	if err != nil {
		if errors.Is(err, election.ErrInvalidConfig) {
			return usageErrorf("%v", err)
		}
		return err
	}
	if asJSON {
		return printJSON(stdout, map[string]any{"node_id": res.NodeID, "index": res.Index, "term": res.Term, "voters": peers})
	}
	_, err = fmt.Fprintf(stdout, "recovered %s (node %s) at index %d term %d; voters now %s\n",
		dataDir, res.NodeID, res.Index, res.Term, describePeers(peers))
	return err
}

// recoverVoters reads the voter set from exactly one of --voters and
// --peers-file.
func recoverVoters(voters, peersFile string) ([]election.Peer, error) {
	switch {
	case voters != "" && peersFile != "":
		return nil, usageErrorf("give --voters or --peers-file, not both")
	case voters != "":
		peers, err := node.ParsePeers(voters)
		if err != nil {
			return nil, usageErrorf("--voters: %v", err)
		}
		if len(peers) == 0 {
			return nil, usageErrorf("--voters: the voter set is empty")
		}
		return peers, nil
	case peersFile != "":
		b, err := os.ReadFile(peersFile)
		if err != nil {
			return nil, fmt.Errorf("--peers-file: %w", err)
		}
		var entries []peersFileEntry
		if err := json.Unmarshal(b, &entries); err != nil {
			return nil, usageErrorf("--peers-file %s: %v", peersFile, err)
		}
		if len(entries) == 0 {
			return nil, usageErrorf("--peers-file %s: the voter set is empty", peersFile)
		}
		peers := make([]election.Peer, 0, len(entries))
		for _, e := range entries {
			peers = append(peers, election.Peer{ID: e.ID, Address: e.Address, Voter: true})
		}
		if err := node.ValidatePeers(peers); err != nil {
			return nil, usageErrorf("--peers-file %s: %v", peersFile, err)
		}
		return peers, nil
	default:
		return nil, usageErrorf("missing --voters (or --peers-file): the survivors that form the new cluster")
	}
}

// describePeers formats peers as id=addr,...
func describePeers(peers []election.Peer) string {
	s := ""
	for i, p := range peers {
		if i > 0 {
			s += ","
		}
		s += p.ID + "=" + p.Address
	}
	return s
}
