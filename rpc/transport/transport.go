package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/proto/raftpb"
)

// Compile-time checks that *Transport is what raft needs.
var (
	_ raft.Transport   = (*Transport)(nil)
	_ raft.WithPreVote = (*Transport)(nil)
	_ raft.WithClose   = (*Transport)(nil)
)

const (
	// gracefulStopTimeout bounds how long Close lets in-flight server calls finish
	// before it closes every connection.
	gracefulStopTimeout = 250 * time.Millisecond
	// minConnectTimeout is the least time gRPC gives one connection attempt.
	minConnectTimeout = time.Second
	// baseReconnectDelay is gRPC's first reconnect backoff (capped by MaxReconnectBackoff).
	baseReconnectDelay = 50 * time.Millisecond
	// serverPingIdle and serverPingTimeout: the server pings a connection idle this long
	// and closes it when the ping is not answered in time.
	serverPingIdle    = 30 * time.Second
	serverPingTimeout = 10 * time.Second
	// streamWindow and connWindow are the HTTP/2 flow-control windows, per stream and
	// per connection, of client and server. They are static: with gRPC's dynamic
	// windows every DATA frame that arrives while no estimate is running starts one
	// (a PING and a WINDOW_UPDATE each way), which tripled the frames, and the
	// syscalls and wake-ups, of every heartbeat. 4 MiB per stream moves a bulk append
	// at 4 MiB per round trip: 40 GB/s at loopback's 0.1 ms, 4 GB/s at 1 ms.
	streamWindow = 4 << 20
	connWindow   = 16 << 20
)

// Transport is a raft.Transport over gRPC. It serves the RaftTransport service on its
// listener and keeps two client connections per peer: "control" (heartbeats, votes,
// pre-votes, TimeoutNow, Hold, Confirm) and "bulk" (AppendEntries, pipelines,
// InstallSnapshot). Create it with New; stop it with Close. Safe for concurrent use.
type Transport struct {
	cfg       Config
	logger    hclog.Logger
	metrics   *metrics
	localAddr raft.ServerAddress
	server    *grpc.Server
	consumeCh chan raft.RPC

	hbMu sync.Mutex
	hbFn func(raft.RPC)

	// closeCtx is canceled by Close; every outgoing call and every handler waits on it.
	closeCtx    context.Context
	closeCancel context.CancelFunc
	closeOnce   sync.Once
	wg          sync.WaitGroup // the serve goroutine and pipeline receivers

	mu        sync.Mutex // guards the fields below
	closed    bool
	peers     map[raft.ServerAddress]*peerConns
	pipelines map[*pipeline]struct{}

	acks    ackTable
	held    heldState
	holders holders // the held streams this node serves, one per node

	// Ownership grants and TimeoutNow arrivals (grant.go).
	grantMu      sync.Mutex
	grantHooks   GrantHooks
	grants       grantTable
	epoch        time.Time    // monotonic base of timeoutNowAt
	timeoutNowAt atomic.Int64 // nanoseconds since epoch; 0: never

	goodbyeCh   chan struct{}
	goodbyeOnce sync.Once

	warnMu sync.Mutex
	warned map[string]time.Time // caller -> last wrong-cluster warning

	// hbStreams counts the heartbeat streams served so far (observed by tests).
	hbStreams atomic.Int64
}

// peerConns are the two client connections to one peer, its heartbeat stream and its
// cached RTT observer (no label lookup per heartbeat).
type peerConns struct {
	controlConn, bulkConn *grpc.ClientConn
	control, bulk         raftpb.RaftTransportClient
	hb                    hbStream
	rtt                   prometheus.Observer
}

// New validates cfg, listens on cfg.BindAddr and starts serving at once: RPCs that
// arrive are delivered on Consumer(), which raft (or the caller) must read. Close
// releases the listener and every goroutine.
func New(cfg Config) (*Transport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = hclog.New(&hclog.LoggerOptions{Name: "transport"})
	} else {
		logger = logger.Named("transport")
	}
	logger = logger.With("node", string(cfg.ID))
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("transport: listen on %s: %w", cfg.BindAddr, err)
	}
	local := cfg.Advertise
	if local == "" {
		if tcp, ok := lis.Addr().(*net.TCPAddr); ok && tcp.IP.IsUnspecified() {
			_ = lis.Close()
			return nil, fmt.Errorf("%w: Advertise is required when BindAddr %q has no specific IP", ErrInvalidConfig, cfg.BindAddr)
		}
		local = raft.ServerAddress(lis.Addr().String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &Transport{
		cfg:         cfg,
		logger:      logger,
		metrics:     m,
		localAddr:   local,
		consumeCh:   make(chan raft.RPC),
		closeCtx:    ctx,
		closeCancel: cancel,
		peers:       make(map[raft.ServerAddress]*peerConns),
		pipelines:   make(map[*pipeline]struct{}),
		goodbyeCh:   make(chan struct{}),
		epoch:       time.Now(),
	}
	var serverCreds []grpc.ServerOption
	if cfg.ServerTLS != nil {
		serverCreds = append(serverCreds, grpc.Creds(credentials.NewTLS(cfg.ServerTLS)))
	}
	t.server = grpc.NewServer(append(serverCreds,
		grpc.StaticStreamWindowSize(streamWindow), // see streamWindow
		grpc.StaticConnWindowSize(connWindow),
		grpc.MaxRecvMsgSize(cfg.MaxMsgSize),
		grpc.MaxSendMsgSize(cfg.MaxMsgSize),
		grpc.ChainUnaryInterceptor(t.unaryServerInterceptor),
		grpc.ChainStreamInterceptor(t.streamServerInterceptor),
		grpc.WaitForHandlers(true),
		// Ping connections idle for a while and drop those that do not answer, so
		// the handlers of held streams from vanished peers do not pile up.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: serverPingIdle, Timeout: serverPingTimeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: KeepaliveMinTime, PermitWithoutStream: true}),
		grpc.MaxConcurrentStreams(cfg.MaxConcurrentStreams),
	)...)
	raftpb.RegisterRaftTransportServer(t.server, &rpcServer{t: t})
	if cfg.Register != nil {
		cfg.Register(t.server)
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		if err := t.server.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.logger.Error("peer server stopped", "error", err)
		}
	}()
	t.logger.Debug("transport listening", "bind", lis.Addr().String(), "advertise", string(local))
	return t, nil
}

// Close stops the transport: it cancels every call in flight (they return
// ErrTransportShutdown), ends held streams (served and held) and pipelines, stops the
// server (gracefully for at most a short while, then abruptly), closes every client
// connection and waits for every goroutine it started. Later calls return
// ErrTransportShutdown. Close is idempotent and always returns nil.
func (t *Transport) Close() error {
	t.closeOnce.Do(func() {
		t.mu.Lock()
		t.closed = true
		pipes := make([]*pipeline, 0, len(t.pipelines))
		for p := range t.pipelines {
			pipes = append(pipes, p)
		}
		peers := t.peers
		t.peers = nil
		t.mu.Unlock()

		t.closeCancel()
		for _, p := range pipes {
			_ = p.Close()
		}
		stopped := make(chan struct{})
		go func() {
			t.server.GracefulStop()
			close(stopped)
		}()
		select {
		case <-stopped:
		case <-time.After(gracefulStopTimeout):
			t.server.Stop()
			<-stopped
		}
		for _, pc := range peers {
			_ = pc.controlConn.Close()
			_ = pc.bulkConn.Close()
		}
		t.wg.Wait()
		t.logger.Debug("transport closed")
	})
	return nil
}

// Config returns the configuration the transport runs with (defaults filled in).
func (t *Transport) Config() Config { return t.cfg }

// Consumer returns the channel on which incoming RPCs are delivered. Every RPC must be
// answered with RPC.Respond; a handler waits for the answer until the caller's deadline
// or Close. The channel is unbuffered: nobody reading it stalls every peer's calls.
func (t *Transport) Consumer() <-chan raft.RPC { return t.consumeCh }

// LocalAddr returns the address peers use to reach this node (Config.Advertise or the
// listener's address).
func (t *Transport) LocalAddr() raft.ServerAddress { return t.localAddr }

// EncodePeer encodes a peer's address as its bytes (the id is not needed).
func (t *Transport) EncodePeer(_ raft.ServerID, addr raft.ServerAddress) []byte {
	return []byte(addr)
}

// DecodePeer decodes an address encoded by EncodePeer.
func (t *Transport) DecodePeer(buf []byte) raft.ServerAddress { return raft.ServerAddress(buf) }

// SetHeartbeatHandler sets the callback that receives heartbeats directly, bypassing
// Consumer() (raft's fast path, so a heartbeat never waits behind disk I/O). The
// callback must answer the RPC; it runs on the server goroutine of the call. nil
// restores delivery through Consumer().
func (t *Transport) SetHeartbeatHandler(cb func(rpc raft.RPC)) {
	t.hbMu.Lock()
	defer t.hbMu.Unlock()
	t.hbFn = cb
}

func (t *Transport) heartbeatFn() func(raft.RPC) {
	t.hbMu.Lock()
	defer t.hbMu.Unlock()
	return t.hbFn
}

// Acks returns a copy of the latest acknowledged AppendEntries/heartbeat per peer
// address (see Ack). The election package computes the leader lease from it.
func (t *Transport) Acks() map[raft.ServerAddress]Ack { return t.acks.snapshot() }

// peer returns the connections to target, creating them on first use. Connecting is
// lazy: the first call on a connection dials.
func (t *Transport) peer(target raft.ServerAddress) (*peerConns, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, ErrTransportShutdown
	}
	if pc, ok := t.peers[target]; ok {
		return pc, nil
	}
	control, err := t.dial(target)
	if err != nil {
		return nil, err
	}
	bulk, err := t.dial(target)
	if err != nil {
		_ = control.Close()
		return nil, err
	}
	pc := &peerConns{
		controlConn: control,
		bulkConn:    bulk,
		control:     raftpb.NewRaftTransportClient(control),
		bulk:        raftpb.NewRaftTransportClient(bulk),
		rtt:         t.metrics.heartbeatRTT.WithLabelValues(string(target)),
	}
	t.peers[target] = pc
	return pc, nil
}

func (t *Transport) dial(target raft.ServerAddress) (*grpc.ClientConn, error) {
	bo := backoff.DefaultConfig
	bo.BaseDelay = min(baseReconnectDelay, t.cfg.MaxReconnectBackoff)
	bo.MaxDelay = t.cfg.MaxReconnectBackoff
	creds := insecure.NewCredentials()
	if t.cfg.ClientTLS != nil {
		creds = credentials.NewTLS(t.cfg.ClientTLS)
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(t.cfg.MaxMsgSize),
			grpc.MaxCallSendMsgSize(t.cfg.MaxMsgSize),
		),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bo, MinConnectTimeout: minConnectTimeout}),
		grpc.WithChainUnaryInterceptor(t.unaryClientInterceptor),
		grpc.WithChainStreamInterceptor(t.streamClientInterceptor),
		grpc.WithStaticStreamWindowSize(streamWindow),
		grpc.WithStaticConnWindowSize(connWindow),
	}
	cc, err := grpc.NewClient("passthrough:///"+string(target), opts...)
	if err != nil {
		return nil, fmt.Errorf("transport: client for %s: %w", target, err)
	}
	return cc, nil
}

// outgoing adds this node's cluster and node id to ctx's outgoing metadata.
func (t *Transport) outgoing(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, MetadataCluster, t.cfg.ClusterID, MetadataNodeID, string(t.cfg.ID))
}

func (t *Transport) unaryClientInterceptor(ctx context.Context, method string, req, reply any,
	cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return invoker(t.outgoing(ctx), method, req, reply, cc, opts...)
}

func (t *Transport) streamClientInterceptor(ctx context.Context, desc *grpc.StreamDesc,
	cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return streamer(t.outgoing(ctx), desc, cc, method, opts...)
}

var raftMethodPrefix = "/" + raftpb.RaftTransport_ServiceDesc.ServiceName + "/"

// checkCluster rejects a call from another cluster. A call without the cluster header
// is rejected for RaftTransport (our own clients always send it) and let through for
// other services, which check the cluster in their messages (JoinRequest.cluster_id).
func (t *Transport) checkCluster(ctx context.Context, method string) error {
	md, _ := metadata.FromIncomingContext(ctx)
	from := "unknown node"
	if ids := md.Get(MetadataNodeID); len(ids) > 0 {
		from = fmt.Sprintf("node %q", ids[0])
	}
	got := md.Get(MetadataCluster)
	if len(got) == 0 {
		if strings.HasPrefix(method, raftMethodPrefix) {
			return status.Errorf(codes.FailedPrecondition,
				"wrong cluster: request from %s carries no cluster id, this node is in cluster %q", from, t.cfg.ClusterID)
		}
		return nil
	}
	if got[0] != t.cfg.ClusterID {
		t.warnWrongCluster(from, got[0])
		return status.Errorf(codes.FailedPrecondition,
			"wrong cluster: request from %s of cluster %q, this node %q is in cluster %q",
			from, got[0], t.cfg.ID, t.cfg.ClusterID)
	}
	return nil
}

// wrongClusterLogEvery limits the warning about calls from another cluster to one per
// calling node per interval.
const wrongClusterLogEvery = time.Minute

func (t *Transport) warnWrongCluster(from, cluster string) {
	t.warnMu.Lock()
	if t.warned == nil {
		t.warned = make(map[string]time.Time)
	}
	last, ok := t.warned[from]
	now := time.Now()
	if ok && now.Sub(last) < wrongClusterLogEvery {
		t.warnMu.Unlock()
		return
	}
	t.warned[from] = now
	t.warnMu.Unlock()
	t.logger.Warn("rejected calls from another cluster", "from", from, "cluster", cluster, "ours", t.cfg.ClusterID)
}

func (t *Transport) unaryServerInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo,
	handler grpc.UnaryHandler) (any, error) {
	if err := t.checkCluster(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	if err := t.checkIdentity(ctx); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (t *Transport) streamServerInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo,
	handler grpc.StreamHandler) error {
	if err := t.checkCluster(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	if err := t.checkIdentity(ss.Context()); err != nil {
		return err
	}
	return handler(srv, ss)
}

// callCtx returns a context for one outgoing call: canceled by Close, with timeout.
func (t *Transport) callCtx(timeout time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(t.closeCtx, timeout)
}

// callErr wraps the error of an outgoing call and counts it.
func (t *Transport) callErr(rpc string, target raft.ServerAddress, err error) error {
	if t.closeCtx.Err() != nil {
		return ErrTransportShutdown
	}
	t.metrics.rpcErrors.WithLabelValues(rpc, string(target)).Inc()
	switch status.Code(err) {
	case codes.FailedPrecondition:
		return fmt.Errorf("transport: %s to %s: %w: %w", rpc, target, ErrWrongCluster, err)
	case codes.Aborted:
		return fmt.Errorf("transport: %s to %s: %w: %w", rpc, target, ErrRemote, err)
	}
	return fmt.Errorf("transport: %s to %s: %w", rpc, target, err)
}
