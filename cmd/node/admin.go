package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/proto/raftpb"
	"github.com/heartbeat-sidecar/heartbeat/rpc/api"
)

const removeUsage = `Usage: heartbeat remove --id ID [--peer ADDR]

Removes the member ID from the raft configuration (for a node that is gone
for good). Asks the node at the peer address --peer; a follower forwards the
call to the leader. The id is never read from the environment.
`

func cmdRemove(ctx context.Context, args []string, stdout, _ io.Writer, getenv env) error {
	var id, peer, clusterID string
	var timeout time.Duration
	fs := flag.NewFlagSet("remove", flag.ContinueOnError)
	fs.StringVar(&id, "id", "", "id of the member to remove (required)")
	fs.StringVar(&peer, "peer", "127.0.0.1:7400", "peer address of any member")
	fs.StringVar(&clusterID, "cluster-id", "heartbeat", "cluster id (must match the cluster's)")
	fs.DurationVar(&timeout, "timeout", 15*time.Second, "deadline of the request")
	if err := parseFlags(fs, args, getenv, stdout, removeUsage, "id", "timeout"); err != nil {
		return err
	}
	if id == "" {
		return usageErrorf("missing --id (the member to remove)")
	}
	if peer == "" {
		return usageErrorf("--peer is empty")
	}
	conn, err := dial(peer)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ctx = api.OutgoingContext(ctx, "heartbeat-cli", clusterID)
	resp, err := raftpb.NewClusterAdminClient(conn).Remove(ctx, &raftpb.RemoveRequest{Id: id})
	if err != nil {
		return fmt.Errorf("remove %s via %s: %w", id, peer, err)
	}
	fmt.Fprintf(stdout, "removed %s (log index %d)\n", id, resp.GetIndex())
	return nil
}
