package transport

import (
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
)

// Metadata keys every outgoing call carries. Callers of other services served on the
// peer port (ClusterAdmin) should send MetadataCluster too: a present but different
// value is rejected by the server with codes.FailedPrecondition.
const (
	// MetadataCluster carries the sender's Config.ClusterID.
	MetadataCluster = "heartbeat-cluster"
	// MetadataNodeID carries the sender's Config.ID.
	MetadataNodeID = "heartbeat-node-id"
)

// Sentinel errors. Errors returned by the transport wrap these with %w; test them with
// errors.Is.
var (
	// ErrTransportShutdown is returned by every call made after Close.
	ErrTransportShutdown = errors.New("transport: shut down")
	// ErrPeerClosed is returned by Hold when the held stream broke after it had opened:
	// the other side's process ended or its transport closed, without a goodbye.
	ErrPeerClosed = errors.New("transport: held stream closed by peer")
	// ErrGoodbye is returned by Hold when the other side said goodbye (a graceful stop).
	ErrGoodbye = errors.New("transport: peer said goodbye")
	// ErrPipelineClosed is the error of pipelined appends that were in flight when their
	// pipeline was closed, and of appends made after it.
	ErrPipelineClosed = errors.New("transport: pipeline closed")
	// ErrWrongCluster is the cause named when a peer of another cluster is met.
	ErrWrongCluster = errors.New("transport: wrong cluster")
	// ErrRemote is wrapped when the receiving node's raft answered with an error.
	ErrRemote = errors.New("transport: remote raft error")
	// ErrNotServing is wrapped by Reachable when a TCP connection to the target opened
	// but no HTTP/2 server answered on it in time: the process behind the port is dying,
	// wedged, or not a gRPC server.
	ErrNotServing = errors.New("transport: no live server answered")
	// ErrInvalidConfig is wrapped by Config.Validate's errors.
	ErrInvalidConfig = errors.New("transport: invalid config")
)

// Config configures a Transport. Start from DefaultConfig and set ID, BindAddr and
// ClusterID.
type Config struct {
	// ID is this node's raft server id; sent on every call as metadata "heartbeat-node-id"
	// and in HoldEvent.leader_id. Required.
	ID raft.ServerID
	// BindAddr is the TCP address the peer gRPC server listens on, e.g. "127.0.0.1:7410";
	// port 0 picks a free port (see Transport.LocalAddr).
	BindAddr string
	// Advertise is the address peers use to reach this node. Empty: the listener's
	// address, which must then not be an unspecified IP (0.0.0.0 or ::).
	Advertise raft.ServerAddress
	// ClusterID names the cluster; sent as metadata "heartbeat-cluster". A peer of another
	// cluster is rejected with codes.FailedPrecondition, naming both ids.
	ClusterID string
	// HeartbeatTimeout is the per-RPC deadline of a heartbeat (an empty AppendEntries).
	// Short, so a dead follower costs the leader little; default 250ms.
	HeartbeatTimeout time.Duration
	// RPCTimeout is the deadline of votes, pre-votes, AppendEntries, TimeoutNow and
	// Confirm, and of each pipelined response; InstallSnapshot gets RPCTimeout per MiB
	// (at least one). Default 5s.
	RPCTimeout time.Duration
	// SnapshotChunkSize is the number of snapshot bytes per InstallSnapshot message.
	// Default 1 MiB; must be below MaxMsgSize.
	SnapshotChunkSize int
	// MaxMsgSize is the gRPC send and receive limit in bytes, on client and server.
	// An AppendEntries batch larger than this fails. Default 64 MiB.
	MaxMsgSize int
	// MaxReconnectBackoff caps gRPC's reconnect backoff, so traffic resumes within about
	// this long after a peer restarts or a partition heals. Default 1s (gRPC's is 120s).
	MaxReconnectBackoff time.Duration
	// CurrentTerm, if set, returns the node's current raft term (raft's
	// CurrentTerm; 0 before raft runs). An incoming raft RPC whose term is
	// more than MaxTermAhead beyond it is refused. nil: only MaxTerm applies.
	CurrentTerm func() uint64
	// MaxTermAhead bounds how far beyond CurrentTerm the term of an incoming
	// raft RPC may be; one further ahead is refused (codes.InvalidArgument),
	// logged and counted (heartbeat_transport_rejected_total{reason="term"}).
	// Legitimate terms move by one per election, and with pre-vote a node
	// cut off from the others does not raise its term at all, so a peer is
	// at most a few elections ahead; even a node partitioned for a day
	// without pre-vote, campaigning every election timeout, sees thousands.
	// A forged term far ahead (2^64-1) would otherwise be adopted and wrap
	// to 0 at the next election. Default 1<<20.
	MaxTermAhead uint64
	// IsMember, if set, reports whether addr is a server of the node's
	// current raft configuration. Confirm (a follower asking whether this
	// node lost a leader too) dials the named leader only when it is one;
	// another address is refused with codes.FailedPrecondition, undialed.
	// nil: no check (for tests of the transport alone); a node must set it.
	IsMember func(addr raft.ServerAddress) bool
	// AddressOf, if set, returns the address of server id in the node's
	// current raft configuration. With TLS, a raft RPC whose header names a
	// member must carry that member's address (the certificate names the
	// id; the configuration binds the id to its address), or it is refused.
	// An id outside the configuration is not checked (a joining node).
	AddressOf func(id raft.ServerID) (raft.ServerAddress, bool)
	// IsVoter, if set, reports whether id is a voter of the node's current
	// raft configuration. Only a voter may hold a stream to this node (Hold:
	// crash detection is a voter's business); another caller is refused
	// with codes.FailedPrecondition. nil: no check (for tests of the
	// transport alone); a node must set it. Either way a node holds at most
	// one stream here: a newer Hold from the same node ends the older one.
	IsVoter func(id raft.ServerID) bool
	// MaxConcurrentStreams caps the streams one connection may have open
	// at once on the peer server; a caller's stream beyond it waits for a
	// free one. A node's own connections carry a handful (heartbeats,
	// held stream, pipelines, votes, forwarded calls). Default 1024.
	MaxConcurrentStreams uint32
	// ServerTLS and ClientTLS, when set (both or neither), make every peer
	// connection mutual TLS: the server presents the node's certificate and
	// demands one of a node of the cluster (pki.Store.ServerTLSConfigExpect
	// with pki.ExpectKind(pki.KindNode)); dials present the node's
	// certificate and verify the server's (pki.Store.ClientTLSConfig). With
	// them, every incoming call's node-id metadata and every raft RPC
	// header's ID must name the node its certificate names, or the call is
	// refused (codes.PermissionDenied, heartbeat_transport_rejected_total
	// {reason="identity"}). nil: plaintext, and anyone who reaches the port
	// is believed.
	ServerTLS *tls.Config
	ClientTLS *tls.Config
	// Register, if set, registers extra services (ClusterAdmin) on the peer server before
	// it starts serving. They get the same cluster-id interceptors.
	Register func(*grpc.Server)
	// Registerer receives the transport's Prometheus metrics; nil: they are kept but not
	// registered. The global registry is never used.
	Registerer prometheus.Registerer
	// Logger is used for the transport's logs; nil: a default hclog logger on stderr.
	Logger hclog.Logger
}

// DefaultConfig returns a Config with the defaults above, bound to 127.0.0.1:7400.
// ID and ClusterID are left for the caller.
func DefaultConfig() Config {
	return Config{
		BindAddr:             "127.0.0.1:7400",
		HeartbeatTimeout:     250 * time.Millisecond,
		RPCTimeout:           5 * time.Second,
		SnapshotChunkSize:    1 << 20,
		MaxMsgSize:           64 << 20,
		MaxReconnectBackoff:  time.Second,
		MaxTermAhead:         DefaultMaxTermAhead,
		MaxConcurrentStreams: DefaultMaxConcurrentStreams,
	}
}

// DefaultMaxConcurrentStreams is Config.MaxConcurrentStreams's default.
const DefaultMaxConcurrentStreams = 1024

// KeepaliveMinTime is the shortest interval between a peer's keepalive
// pings the peer server accepts (gRPC's keepalive.EnforcementPolicy; pings
// without an open stream allowed); a peer pinging more often is sent GOAWAY
// "too_many_pings". The transport's own dials send no keepalive pings.
const KeepaliveMinTime = 5 * time.Second

// DefaultMaxTermAhead is Config.MaxTermAhead's default.
const DefaultMaxTermAhead = 1 << 20

// MaxTerm is the highest term an incoming raft RPC may carry, whatever the
// node's own term: far from 2^64, so raft's term+1 can never wrap.
const MaxTerm = 1 << 62

// msgOverhead is room left in MaxMsgSize for the framing of a snapshot chunk.
const msgOverhead = 1 << 10

// Validate reports the first problem with c, wrapping ErrInvalidConfig.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...)
	}
	switch {
	case (c.ServerTLS == nil) != (c.ClientTLS == nil):
		return bad("ServerTLS and ClientTLS go together")
	case c.ID == "":
		return bad("ID is required")
	case c.BindAddr == "":
		return bad("BindAddr is required")
	case c.HeartbeatTimeout <= 0:
		return bad("HeartbeatTimeout must be positive, got %v", c.HeartbeatTimeout)
	case c.RPCTimeout <= 0:
		return bad("RPCTimeout must be positive, got %v", c.RPCTimeout)
	case c.SnapshotChunkSize <= 0:
		return bad("SnapshotChunkSize must be positive, got %d", c.SnapshotChunkSize)
	case c.MaxMsgSize <= 0:
		return bad("MaxMsgSize must be positive, got %d", c.MaxMsgSize)
	case c.SnapshotChunkSize+msgOverhead > c.MaxMsgSize:
		return bad("SnapshotChunkSize %d does not fit in MaxMsgSize %d", c.SnapshotChunkSize, c.MaxMsgSize)
	case c.MaxReconnectBackoff <= 0:
		return bad("MaxReconnectBackoff must be positive, got %v", c.MaxReconnectBackoff)
	case c.MaxConcurrentStreams == 0:
		return bad("MaxConcurrentStreams must be positive")
	case c.MaxTermAhead == 0 || c.MaxTermAhead > MaxTerm:
		return bad("MaxTermAhead must be in 1..%d, got %d", uint64(MaxTerm), c.MaxTermAhead)
	}
	return nil
}
