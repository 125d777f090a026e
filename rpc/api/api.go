package api

import (
	"context"
	"errors"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/metadata"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/rpc/transport"
)

// Election is what the API servers need of the raft node. *election.Node
// implements it; the servers never start or stop it.
type Election interface {
	// Leadership returns the current leadership view; it never blocks on raft.
	Leadership() election.Leadership
	// Watch opens a latest-wins leadership watch; the caller must Close it.
	Watch() *election.Watcher
	// Members lists the raft configuration.
	Members() ([]election.Member, error)
	// Join and Remove change the configuration; only the leader can.
	Join(ctx context.Context, id, addr string, voter bool) error
	Remove(ctx context.Context, id string) error
	// CheckRemove runs Remove's checks (the quorum guard) without removing.
	CheckRemove(ctx context.Context, id string) error
	// Raft exposes the raft instance for its indexes.
	Raft() *raft.Raft
}

// Metadata keys sent on ClusterAdmin calls between nodes. The first two are
// the raft transport's, so a ClusterAdmin call passes the same cluster check.
const (
	// MetadataNodeID carries the calling node's id.
	MetadataNodeID = transport.MetadataNodeID
	// MetadataCluster carries the calling node's cluster id.
	MetadataCluster = transport.MetadataCluster
	// MetadataForwarded marks a ClusterAdmin call a follower forwarded to the
	// leader; the receiver answers it itself or fails, and never forwards it again.
	MetadataForwarded = "heartbeat-forwarded"
)

// Errors returned by the servers before they become gRPC status codes, and by
// the client helpers. Test them with errors.Is.
var (
	// ErrInvalidConfig wraps every Config validation failure.
	ErrInvalidConfig = errors.New("api: invalid config")
	// ErrClosed is returned by a watch stream when its server closes.
	ErrClosed = errors.New("api: server closed")
)

// OutgoingContext returns ctx carrying the node id and cluster id metadata
// that peers expect on a ClusterAdmin call.
func OutgoingContext(ctx context.Context, nodeID, clusterID string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, MetadataNodeID, nodeID, MetadataCluster, clusterID)
}

// isForwarded reports whether an incoming call was already forwarded once.
func isForwarded(ctx context.Context) bool {
	md, ok := metadata.FromIncomingContext(ctx)
	return ok && len(md.Get(MetadataForwarded)) > 0
}
