package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
	"github.com/heartbeat-sidecar/heartbeat/proto/raftpb"
	"github.com/heartbeat-sidecar/heartbeat/rpc/api"
)

const removeUsage = `Usage: heartbeat remove --id ID [--addr ADDR | --peer ADDR] [flags]

Removes the member ID from the cluster (for a node that is gone for good).
With --addr (or HEARTBEAT_ADDR), asks the Coordinator at that client address,
which also records the member as left; it refuses (FailedPrecondition) a
removal that would leave the cluster without a voter majority. Otherwise
asks the node at the peer address --peer (the ClusterAdmin service); a
follower forwards the call to the leader. --addr wins when both are given.
The id is never read from the environment.
`

func cmdRemove(ctx context.Context, args []string, stdout, _ io.Writer, getenv env) error {
	var id, addr, peer, clusterID string
	var timeout time.Duration
	var asJSON bool
	fs := flag.NewFlagSet("remove", flag.ContinueOnError)
	fs.StringVar(&id, "id", "", "id of the member to remove (required)")
	fs.StringVar(&addr, "addr", "", "client gRPC address of any member (the Coordinator's Remove); wins over --peer")
	fs.StringVar(&peer, "peer", "127.0.0.1:7400", "peer address of any member (ClusterAdmin), when --addr is not given")
	fs.StringVar(&clusterID, "cluster-id", "heartbeat", "cluster id (must match the cluster's; with --peer)")
	fs.DurationVar(&timeout, "timeout", 15*time.Second, "deadline of the request")
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	if err := parseFlags(fs, args, getenv, stdout, removeUsage, "id", "timeout", "json"); err != nil {
		return err
	}
	switch {
	case id == "":
		return usageErrorf("missing --id (the member to remove)")
	case addr == "" && peer == "":
		return usageErrorf("--peer is empty (and no --addr)")
	case timeout <= 0:
		return usageErrorf("--timeout must be positive")
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var index uint64
	via := addr
	if addr != "" {
		conn, err := dial(addr)
		if err != nil {
			return err
		}
		defer conn.Close()
		resp, err := heartbeatpb.NewCoordinatorClient(conn).Remove(ctx, &heartbeatpb.RemoveRequest{NodeId: id})
		if err != nil {
			return fmt.Errorf("remove %s via %s: %w", id, addr, err)
		}
		index = resp.GetRevision()
	} else {
		via = peer
		conn, err := dial(peer)
		if err != nil {
			return err
		}
		defer conn.Close()
		ctx = api.OutgoingContext(ctx, "heartbeat-cli", clusterID)
		resp, err := raftpb.NewClusterAdminClient(conn).Remove(ctx, &raftpb.RemoveRequest{Id: id})
		if err != nil {
			return fmt.Errorf("remove %s via %s: %w", id, peer, err)
		}
		index = resp.GetIndex()
	}
	if asJSON {
		return printJSON(stdout, map[string]any{"node_id": id, "index": index, "via": via})
	}
	_, err := fmt.Fprintf(stdout, "removed %s (log index %d)\n", id, index)
	return err
}
