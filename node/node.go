package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/heartbeat-sidecar/heartbeat/apphealth"
	"github.com/heartbeat-sidecar/heartbeat/authz"
	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/leadership"
	"github.com/heartbeat-sidecar/heartbeat/lifecycle"
	"github.com/heartbeat-sidecar/heartbeat/membership"
	"github.com/heartbeat-sidecar/heartbeat/pki"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
	"github.com/heartbeat-sidecar/heartbeat/proto/raftpb"
	"github.com/heartbeat-sidecar/heartbeat/rpc/api"
	"github.com/heartbeat-sidecar/heartbeat/rpc/transport"
)

// healthInterval is how often the gRPC health status is re-checked between
// leadership events (readiness also depends on the applied index).
const healthInterval = 500 * time.Millisecond

// clientDrainTimeout bounds the graceful stop of the client gRPC server
// (in-flight calls finish; streams still open after it are cut).
const clientDrainTimeout = 2 * time.Second

// Node is one running Heartbeat node. Build it with New (which starts it);
// stop it with Shutdown (graceful) or Close (abrupt). Its methods are safe for
// concurrent use.
type Node struct {
	cfg      Config
	log      hclog.Logger // base with "node"=ID
	base     hclog.Logger // for the transport and election, which add "node"
	registry *prometheus.Registry

	tr    PeerTransport // the gRPC transport, or Config.WrapTransport's wrapper of it
	el    *election.Node
	mfsm  *membership.FSM // nil when Config.FSM is another state machine
	coord *api.Coordinator
	ready readiness

	// The parts with one job each (see doc.go).
	life *lifecycle.Local       // join, register, drain, leave, rejoin
	rec  *membership.Reconciler // nil without the membership state
	prio *leadership.Priority   // leader-priority hand-offs; nil without the membership state
	app  *apphealth.Watcher     // application health; nil without the membership state

	recCancel context.CancelFunc // ends the reconciler (after the drain of a planned stop)
	admin     *api.Admin         // ClusterAdmin on the peer port; Leave removes this node through it

	health     *health.Server
	grpcServer *grpc.Server
	clientLn   net.Listener
	httpServer *http.Server
	httpLn     net.Listener
	gwConn     *grpc.ClientConn // the HTTP gateway's connection to the client port; closed after the HTTP server
	metricsSrv *http.Server     // the plaintext probe/scrape listener (Config.MetricsAddr); nil without
	metricsLn  net.Listener     //

	tls     *pki.Store         // the node's certificates (nil: no TLS)
	authz   *authz.Authorizer  // the client and HTTP ports' policy
	watches *api.StreamLimiter // the client port's cap on open streams (watches)

	bgCtx    context.Context    // ends background goroutines
	bgCancel context.CancelFunc //
	wg       sync.WaitGroup     // serve loops, health updater, join loop
	fatal    chan error         // first unrecoverable error; Run returns it

	stopOnce sync.Once
	stopErr  error
	stopped  atomic.Bool
}

// New builds a node from cfg and starts it: it binds the three ports, opens
// (or bootstraps) raft under DataDir, starts serving, and, when cfg.Join is
// set and the node has no raft state, starts asking to join. Errors wrap
// ErrInvalidConfig, the election's errors (a data dir of another cluster:
// election.ErrClusterMismatch) or the listen error of a port in use.
func New(cfg Config) (_ *Node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	base := cfg.newLogger()
	n := &Node{cfg: cfg, log: base.With("node", cfg.ID), base: base, fatal: make(chan error, 1)}
	fsm := cfg.FSM
	switch f := cfg.FSM.(type) {
	case nil:
		mc := cfg.Membership
		if mc.Logger == nil {
			mc.Logger = n.log.Named("membership")
		}
		if n.mfsm, err = membership.NewFSM(mc); err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
		fsm = n.mfsm
	case *membership.FSM:
		n.mfsm = f
	}
	n.bgCtx, n.bgCancel = context.WithCancel(context.Background())

	var undo []func()
	defer func() {
		if err != nil {
			n.bgCancel()
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()

	n.registry = prometheus.NewRegistry()
	n.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	if err := n.setupSecurity(); err != nil {
		return nil, err
	}
	if err := n.setupLimits(); err != nil {
		return nil, err
	}

	// Bind the client ports first: they are the cheapest to undo.
	if n.clientLn, err = net.Listen("tcp", cfg.ClientAddr); err != nil {
		return nil, fmt.Errorf("node: client listener: %w", err)
	}
	undo = append(undo, func() { n.clientLn.Close() })
	if n.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("node: http listener: %w", err)
	}
	undo = append(undo, func() { n.httpLn.Close() })
	if cfg.MetricsAddr != "" {
		if n.metricsLn, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			return nil, fmt.Errorf("node: metrics listener: %w", err)
		}
		undo = append(undo, func() { n.metricsLn.Close() })
	}

	// The peer transport serves ClusterAdmin beside raft. The admin server
	// needs the election, which needs the transport: it reads the election
	// through a reference that is filled in below.
	ref := &api.ElectionRef{}
	adminCfg := api.DefaultAdminConfig()
	adminCfg.ID, adminCfg.ClusterID, adminCfg.Election = cfg.ID, cfg.ClusterID, ref
	adminCfg.Logger = n.log.Named("admin")
	adminCfg.DialOptions = n.dialOptions()
	// The lifecycle is built with the election, before any leader can ask
	// this node to remove a member or tell it it was removed.
	adminCfg.BeforeRemove = func(ctx context.Context, id string) error { return n.life.BeforeRemove(ctx, id) }
	adminCfg.OnRemoved = func(notice *raftpb.RemovedRequest) error { return n.life.OnRemoved(notice) }
	admin, err := api.NewAdmin(adminCfg)
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	n.admin = admin
	tcfg := transport.DefaultConfig()
	tcfg.ID = raft.ServerID(cfg.ID)
	tcfg.BindAddr = cfg.PeerAddr
	tcfg.Advertise = raft.ServerAddress(cfg.AdvertisePeerAddr)
	tcfg.ClusterID = cfg.ClusterID
	tcfg.Register = func(s *grpc.Server) { admin.Register(s) }
	if n.tls != nil {
		// Only nodes of the cluster, each under its own id.
		tcfg.ServerTLS = n.tls.ServerTLSConfigExpect(true, pki.ExpectKind(pki.KindNode))
		tcfg.ClientTLS = n.tls.ClientTLSConfig(nil)
	}
	// The transport refuses raft RPCs with a term far beyond the node's,
	// and Confirm about a non-member, by raft's own state (through the
	// reference: the election is built after the transport).
	tcfg.CurrentTerm = func() uint64 {
		if r := ref.Raft(); r != nil {
			return r.CurrentTerm()
		}
		return 0
	}
	tcfg.IsMember = func(addr raft.ServerAddress) bool {
		_, ok := configServer(ref, func(s raft.Server) bool { return s.Address == addr })
		return ok
	}
	tcfg.IsVoter = func(id raft.ServerID) bool {
		_, ok := configServer(ref, func(s raft.Server) bool { return s.ID == id && s.Suffrage == raft.Voter })
		return ok
	}
	tcfg.AddressOf = func(id raft.ServerID) (raft.ServerAddress, bool) {
		s, ok := configServer(ref, func(s raft.Server) bool { return s.ID == id })
		return s.Address, ok
	}
	tcfg.Registerer = n.registry
	tcfg.Logger = n.base.Named("transport")
	inner, err := transport.New(tcfg)
	if err != nil {
		return nil, fmt.Errorf("node: transport: %w", err)
	}
	n.tr = inner
	if cfg.WrapTransport != nil {
		n.tr = cfg.WrapTransport(inner)
	}
	undo = append(undo, func() { _ = n.tr.Close() })

	// A node that left discards its stale raft state before the election
	// opens the data dir, and joins again instead of bootstrapping.
	join, rejoin, err := lifecycle.PrepareRejoin(cfg.DataDir, cfg.ID, cfg.Join, cfg.InitialCluster, n.log)
	if errors.Is(err, lifecycle.ErrInvalidConfig) {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	} else if err != nil {
		return nil, err
	}
	n.cfg.Join = join
	ecfg, err := n.electionConfig(rejoin)
	if err != nil {
		return nil, err
	}
	if n.el, err = election.New(ecfg, n.tr, fsm); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	undo = append(undo, func() { n.el.Close() })
	if err := n.setupLifecycle(rejoin); err != nil {
		return nil, err
	}
	ref.Set(n.el)
	if n.mfsm != nil {
		n.tr.SetGrantHooks(transport.GrantHooks{
			Source: n.el.GrantSource,
			Receive: func(g transport.Grant) {
				n.el.ReceiveGrant(election.Grant{Anchor: g.Anchor, Revision: g.Revision, Term: g.Term})
			},
		})
	}

	// The Coordinator serves the client port; the membership parts
	// (application health, reconciler, priority loop) hang off it and the
	// election.
	ccfg := api.DefaultCoordinatorConfig()
	ccfg.ID, ccfg.ClusterID, ccfg.Election = cfg.ID, cfg.ClusterID, n.el
	ccfg.LastContact = n.lastContact
	ccfg.Admin, ccfg.Leave = admin, n.Leave
	ccfg.Logger = n.log.Named("coordinator")
	ccfg.DialOptions = n.dialOptions()
	ccfg.Quota = api.Quota{MaxBytes: cfg.QuotaBytes, MaxResources: cfg.MaxResources}
	if n.mfsm != nil {
		if n.app, err = n.newAppHealth(); err != nil {
			return nil, err
		}
		ccfg.Membership, ccfg.Applier, ccfg.AppHeartbeat = n.mfsm, n.el, n.app.Push
	}
	if n.coord, err = api.NewCoordinator(ccfg); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	if n.mfsm != nil {
		if err := n.setupMembership(ecfg.HeartbeatTimeout); err != nil {
			return nil, err
		}
		n.registry.MustRegister(newMembershipCollector(n))
		n.registerQuotaMetrics()
	}

	n.health = health.NewServer()
	n.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	n.health.SetServingStatus(heartbeatpb.Coordinator_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	n.grpcServer = grpc.NewServer(n.clientServerOptions()...)
	n.coord.Register(n.grpcServer)
	healthpb.RegisterHealthServer(n.grpcServer, n.health)
	reflection.Register(n.grpcServer)
	handler, err := n.httpHandler()
	if err != nil {
		return nil, err
	}
	undo = append(undo, func() { n.gwConn.Close() })
	n.httpServer = n.newHTTPServer(handler)

	n.registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "heartbeat_read_index_served_total",
		Help: "Read-index requests this node served to followers as leader (each stands for a batch of their consistent reads).",
	}, func() float64 { return float64(n.admin.ReadIndexServed()) }))
	n.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "heartbeat_node_ready",
		Help: "1 when the node knows a leader and has applied the committed state (see /readyz).",
	}, func() float64 {
		if ok, _ := n.Ready(); ok {
			return 1
		}
		return 0
	}))

	// Everything is built: start serving, then the background loops.
	n.goServe("client gRPC", func() error { return n.grpcServer.Serve(n.clientLn) })
	n.goServe("HTTP", func() error {
		if err := n.serveHTTP(); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	if n.metricsSrv != nil {
		n.goServe("metrics HTTP", func() error {
			if err := n.metricsSrv.Serve(n.metricsLn); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	n.wg.Add(1)
	go func() { defer n.wg.Done(); n.healthLoop(n.bgCtx) }()

	if n.life.NeedsJoin() {
		// A rejoin asks the cluster even when the node's own (stale)
		// configuration still lists it.
		n.wg.Add(1)
		go func() { defer n.wg.Done(); n.life.Join(n.bgCtx) }()
	}
	if n.mfsm != nil {
		n.startMembership()
	}
	n.log.Info("node started", "cluster", cfg.ClusterID, "peer", n.PeerAddr(), "client", n.ClientAddr(),
		"http", n.HTTPAddr(), "data_dir", cfg.DataDir)
	return n, nil
}

// configServer finds a server of the current raft configuration (an atomic
// read in raft 1.7, not a trip through its loop); false before raft runs.
func configServer(ref *api.ElectionRef, match func(raft.Server) bool) (raft.Server, bool) {
	r := ref.Raft()
	if r == nil {
		return raft.Server{}, false
	}
	f := r.GetConfiguration()
	if f.Error() != nil {
		return raft.Server{}, false
	}
	for _, s := range f.Configuration().Servers {
		if match(s) {
			return s, true
		}
	}
	return raft.Server{}, false
}

// electionConfig derives the election config from the node's.
func (n *Node) electionConfig(rejoin bool) (election.Config, error) {
	cfg := n.cfg
	ec := election.DefaultConfig()
	ec.ID, ec.ClusterID, ec.DataDir = cfg.ID, cfg.ClusterID, cfg.DataDir
	switch {
	case rejoin:
		// It left this cluster: it joins again, never bootstraps.
	case len(cfg.InitialCluster) > 0:
		ec.Bootstrap = cfg.InitialCluster
	case len(cfg.Join) == 0:
		// Neither a member list nor a cluster to join: a cluster of one.
		ec.Bootstrap = []election.Peer{{ID: cfg.ID, Address: n.PeerAddr(), Voter: true}}
	}
	ec = cfg.electionTimings(ec)
	ec.Acks = n.acks
	if n.mfsm != nil {
		ec.Revision = n.mfsm.Revision
		// A transfer's target must be fit to lead as the membership
		// state says (leadership.CanLead), whoever asks for it.
		ec.CanLead = leadership.CanLead(n.mfsm)
	}
	ec.ErrPeerClosed, ec.ErrGoodbye = transport.ErrPeerClosed, transport.ErrGoodbye
	ec.Logger = n.base
	ec.Registerer = n.registry
	if err := ec.Validate(); err != nil {
		return ec, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return ec, nil
}

// acks converts the transport's ack records for the election (lease,
// learner promotion, quorum guard).
func (n *Node) acks() map[raft.ServerAddress]election.Ack {
	src := n.tr.Acks()
	out := make(map[raft.ServerAddress]election.Ack, len(src))
	for addr, a := range src {
		out[addr] = election.Ack{SentAt: a.SentAt, RepliedAt: a.RepliedAt, Term: a.Term, LastLog: a.LastLog}
	}
	return out
}

// lastContact is when the latest heartbeat reply from addr came back.
func (n *Node) lastContact(addr string) time.Time {
	return n.tr.Acks()[raft.ServerAddress(addr)].RepliedAt
}

// goServe runs a serve loop owned by the node; an unexpected error is fatal.
func (n *Node) goServe(what string, serve func() error) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := serve(); err != nil && !n.stopped.Load() {
			n.fail(fmt.Errorf("node: %s server: %w", what, err))
		}
	}()
}

// fail records the first fatal error for Run.
func (n *Node) fail(err error) {
	n.log.Error("fatal", "error", err)
	select {
	case n.fatal <- err:
	default:
	}
}

// healthLoop keeps the gRPC health status in step with readiness: at every
// leadership change, and every healthInterval for the applied index.
func (n *Node) healthLoop(ctx context.Context) {
	w := n.el.Watch()
	defer w.Close()
	t := time.NewTicker(healthInterval)
	defer t.Stop()
	serving := false
	events := w.C()
	for {
		ok, _ := n.Ready()
		if ok != serving {
			serving = ok
			st := healthpb.HealthCheckResponse_NOT_SERVING
			if ok {
				st = healthpb.HealthCheckResponse_SERVING
			}
			n.health.SetServingStatus("", st)
			n.health.SetServingStatus(heartbeatpb.Coordinator_ServiceDesc.ServiceName, st)
			n.log.Debug("health status", "serving", ok)
		}
		select {
		case <-ctx.Done():
			return
		case _, ok := <-events:
			if !ok {
				events = nil // the election closed: keep to the ticker
			}
		case <-t.C:
		}
	}
}

// Ready reports whether the node knows a leader, has applied the committed
// state and can write to its data dir (election.Node.StorageAlarm), with
// one reason line per condition (see /readyz).
func (n *Node) Ready() (bool, []string) {
	if n.stopped.Load() {
		return false, []string{"[-]node: shutting down"}
	}
	ready, lines := n.ready.check(n.el.Leadership(), n.el.Raft())
	if err := n.el.StorageAlarm(); err != nil {
		return false, append(lines, "[-]storage: "+err.Error())
	}
	return ready, append(lines, "[+]storage ok")
}

// Shutdown stops the node gracefully, in this order:
//
//  0. leave the membership (lifecycle.Local.PlannedStop): drain (this
//     node's resources move to live members; bounded by
//     Config.DrainTimeout), then record the node as left, so nobody
//     declares it dead;
//  1. stop client traffic: the health service says NOT_SERVING, open
//     leadership watches end, the client gRPC server stops (gracefully
//     within ctx);
//  2. stop the node's own background work (join, registration, health
//     updates, the priority loop, the application-health watcher), then
//     the reconciler;
//  3. election.Shutdown: a leader hands leadership to another voter, the
//     node says goodbye to the peers holding streams to it, raft stops;
//  4. close the transport (raft RPCs and ClusterAdmin);
//  5. close the HTTP server last, so /healthz and /metrics answer during the
//     hand-off.
//
// It returns once everything has stopped; a second call (or one after Close)
// returns the first call's result.
func (n *Node) Shutdown(ctx context.Context) error {
	n.stopOnce.Do(func() {
		n.log.Info("shutting down")
		n.life.PlannedStop(ctx)
		n.stopped.Store(true)
		var errs []error
		n.health.Shutdown()
		n.coord.Close()
		// Health Watch streams are not ended by health.Shutdown: bound the
		// wait for them so they cannot hold up the leadership hand-off.
		gctx, gcancel := context.WithTimeout(ctx, clientDrainTimeout)
		stopGRPC(gctx, n.grpcServer)
		gcancel()
		n.bgCancel()
		n.stopReconciler()
		if err := n.el.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("election shutdown: %w", err))
		}
		if err := n.tr.Close(); err != nil {
			errs = append(errs, fmt.Errorf("transport close: %w", err))
		}
		if err := n.httpServer.Shutdown(ctx); err != nil {
			n.httpServer.Close()
		}
		if n.metricsSrv != nil {
			_ = n.metricsSrv.Close()
		}
		n.gwConn.Close()
		n.wg.Wait()
		n.stopErr = errors.Join(errs...)
		n.log.Info("shut down")
	})
	return n.stopErr
}

// stopGRPC stops s gracefully, or abruptly once ctx ends.
func stopGRPC(ctx context.Context, s *grpc.Server) {
	done := make(chan struct{})
	go func() { s.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.Stop()
		<-done
	}
}

// Close stops the node at once, without handing off leadership or saying
// goodbye: to peers it looks like a crash (the tests of crash failover use
// it). Idempotent; it returns the first stop's result.
func (n *Node) Close() error {
	n.stopOnce.Do(func() {
		n.stopped.Store(true)
		var errs []error
		n.bgCancel()
		n.stopReconciler()
		n.health.Shutdown()
		n.coord.Close()
		n.grpcServer.Stop()
		if err := n.el.Close(); err != nil {
			errs = append(errs, fmt.Errorf("election close: %w", err))
		}
		if err := n.tr.Close(); err != nil {
			errs = append(errs, fmt.Errorf("transport close: %w", err))
		}
		n.httpServer.Close()
		if n.metricsSrv != nil {
			_ = n.metricsSrv.Close()
		}
		n.gwConn.Close()
		n.wg.Wait()
		n.stopErr = errors.Join(errs...)
	})
	return n.stopErr
}

// Run blocks until ctx ends, the node fails (a serve loop died, the join
// was refused) or the node left the cluster (Leave: see Left), then shuts
// the node down gracefully within Config.ShutdownTimeout. It returns the
// failure, if any, joined with the shutdown's error; nil after a clean stop
// and after a Leave.
func (n *Node) Run(ctx context.Context) error {
	var failure error
	select {
	case <-ctx.Done():
	case <-n.life.Left():
		n.log.Info("left the cluster: stopping")
	case failure = <-n.fatal:
	}
	sctx, cancel := context.WithTimeout(context.Background(), n.cfg.ShutdownTimeout)
	defer cancel()
	return errors.Join(failure, n.Shutdown(sctx))
}

// PeerAddr is the advertised peer address (the bound one when none was
// configured); with PeerAddr ":0" it names the port picked.
func (n *Node) PeerAddr() string { return string(n.tr.LocalAddr()) }

// ClientAddr is the bound client gRPC address.
func (n *Node) ClientAddr() string { return n.clientLn.Addr().String() }

// HTTPAddr is the bound HTTP address.
func (n *Node) HTTPAddr() string { return n.httpLn.Addr().String() }

// MetricsAddr is the bound metrics address (Config.MetricsAddr); "" without.
func (n *Node) MetricsAddr() string {
	if n.metricsLn == nil {
		return ""
	}
	return n.metricsLn.Addr().String()
}

// ID is the node's id.
func (n *Node) ID() string { return n.cfg.ID }

// Election is the node's raft node, for embedding applications (Apply,
// Watch, Transfer...). Do not Shutdown or Close it directly.
func (n *Node) Election() *election.Node { return n.el }

// Registry is the node's Prometheus registry (served on /metrics).
func (n *Node) Registry() *prometheus.Registry { return n.registry }

// stopReconciler ends the reconcile loop (Close and Shutdown wait for it).
func (n *Node) stopReconciler() {
	if n.recCancel != nil {
		n.recCancel()
	}
}
