package node

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/apphealth"
	"github.com/heartbeat-sidecar/heartbeat/leadership"
	"github.com/heartbeat-sidecar/heartbeat/lifecycle"
	"github.com/heartbeat-sidecar/heartbeat/membership"
	mpb "github.com/heartbeat-sidecar/heartbeat/proto/membershippb"
)

// Membership is the node's replicated membership state; nil when Config.FSM
// replaced it with another state machine. Read it (View, Read, Subscribe);
// never Apply to it directly.
func (n *Node) Membership() *membership.FSM { return n.mfsm }

// Reconciler is the node's reconcile loop (it acts only while this node
// leads); nil without the membership state.
func (n *Node) Reconciler() *membership.Reconciler { return n.rec }

// Commit commits a membership command through the leader (forwarded when
// this node follows) and returns its result; errors are gRPC status errors
// (see api.Coordinator.Commit).
func (n *Node) Commit(ctx context.Context, cmd *mpb.Command) (*membership.Result, error) {
	if n.mfsm == nil {
		return nil, status.Error(codes.Unimplemented, "node runs without the membership state")
	}
	return n.coord.Commit(ctx, cmd)
}

// Leave makes this node leave the cluster for good: see
// lifecycle.Local.Leave for the steps and errors. Once it has, Left closes
// and Run returns nil after a graceful Shutdown.
func (n *Node) Leave(ctx context.Context) (moved int, err error) { return n.life.Leave(ctx) }

// Left is closed once Leave has taken this node out of the cluster; Run
// then shuts the node down and returns nil. An application that does not
// use Run selects on it and calls Shutdown itself.
func (n *Node) Left() <-chan struct{} { return n.life.Left() }

// setupLifecycle builds the node's membership lifecycle (package
// lifecycle) over the election, the membership state and ClusterAdmin.
func (n *Node) setupLifecycle(rejoin bool) error {
	lc := lifecycle.DefaultConfig()
	lc.ID, lc.ClusterID, lc.DataDir = n.cfg.ID, n.cfg.ClusterID, n.cfg.DataDir
	lc.PeerAddr = n.PeerAddr()
	lc.ClientAddr, lc.HTTPAddr = n.advertised(n.ClientAddr()), n.advertised(n.HTTPAddr())
	lc.LeaderPriority = n.cfg.LeaderPriority
	lc.Join, lc.Voter, lc.Rejoin = n.cfg.Join, n.cfg.Voter, rejoin
	if n.cfg.JoinRetryMax > 0 {
		lc.JoinRetryMax = n.cfg.JoinRetryMax
	}
	if n.cfg.DrainTimeout > 0 {
		lc.DrainTimeout = n.cfg.DrainTimeout
	}
	lc.Logger = n.log
	lc.DialOptions = n.dialOptions()
	var (
		state  lifecycle.State
		commit lifecycle.Committer
	)
	if n.mfsm != nil {
		state, commit = n.mfsm, n
	}
	life, err := lifecycle.New(lc, n.el, state, commit, n.admin, n.fail, n.stopped.Load)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.life = life
	return nil
}

// newAppHealth builds the application-health watcher (package apphealth).
func (n *Node) newAppHealth() (*apphealth.Watcher, error) {
	ac := apphealth.DefaultConfig()
	ac.SelfID, ac.URL = n.cfg.ID, n.cfg.AppHealthURL
	ac.OwnAddrs = []string{n.cfg.PeerAddr, n.cfg.AdvertisePeerAddr, n.cfg.ClientAddr, n.cfg.HTTPAddr}
	if n.cfg.AppHealthInterval > 0 {
		ac.Interval = n.cfg.AppHealthInterval
	}
	ac.Logger = n.log
	w, err := apphealth.New(ac, selfRecord{n}, n.el)
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	return w, nil
}

// selfRecord gives the application-health watcher this node's record and
// writes (apphealth.Member).
type selfRecord struct{ n *Node }

func (s selfRecord) SelfMember() (membership.Member, bool) { return s.n.life.Self() }

func (s selfRecord) Commit(ctx context.Context, cmd *mpb.Command) (*membership.Result, error) {
	return s.n.Commit(ctx, cmd)
}

// setupMembership builds the reconciler over the election and transport,
// and the leader-priority loop (ackFresh: the election's heartbeat
// timeout).
func (n *Node) setupMembership(ackFresh time.Duration) error {
	rc := n.cfg.Reconciler
	rc.SelfID = n.cfg.ID
	if rc.Logger == nil {
		rc.Logger = n.log.Named("reconciler")
	}
	rc.Grants, rc.OwnershipLease = grantSource{n}, n.el.OwnershipLeaseDuration()
	leader := membership.LeaderFunc(func() bool { return n.el.Leadership().IsLeader })
	hb := membership.HeartbeatSourceFunc(n.lastReplies)
	rec, err := membership.NewReconciler(rc, n.mfsm, n.el, leader, hb)
	if err != nil {
		return fmt.Errorf("node: reconciler: %w", err)
	}
	n.rec = rec

	pc := leadership.DefaultConfig()
	pc.SelfID, pc.AckFresh = n.cfg.ID, ackFresh
	if n.cfg.PriorityHoldoff > 0 {
		pc.Holdoff = n.cfg.PriorityHoldoff
	}
	pc.Logger, pc.Registerer = n.log, n.registry
	if n.prio, err = leadership.NewPriority(pc, n.el, n.mfsm, n.peerReplies, n.life.Leaving); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	return nil
}

// grantSource gives the reconciler the ownership grants this node sent as
// leader (membership.Grants).
type grantSource struct{ n *Node }

func (g grantSource) LastGrants() map[string]time.Time {
	src := g.n.tr.Grants()
	out := make(map[string]time.Time, len(src))
	for addr, t := range src {
		out[string(addr)] = t
	}
	return out
}

func (g grantSource) SelfGranted() time.Time { return g.n.el.SelfGrantedAt() }

func (g grantSource) HoldGrants(addrs []string) (release func()) {
	peers := make([]raft.ServerAddress, len(addrs))
	for i, a := range addrs {
		peers[i] = raft.ServerAddress(a)
	}
	return g.n.tr.HoldGrants(peers)
}

// lastReplies converts the transport's acks for the failure detector.
func (n *Node) lastReplies() map[string]time.Time {
	acks := n.tr.Acks()
	out := make(map[string]time.Time, len(acks))
	for addr, a := range acks {
		out[string(addr)] = a.RepliedAt
	}
	return out
}

// peerReplies converts the transport's acks for the leader-priority loop.
func (n *Node) peerReplies() map[string]leadership.Reply {
	acks := n.tr.Acks()
	out := make(map[string]leadership.Reply, len(acks))
	for addr, a := range acks {
		out[string(addr)] = leadership.Reply{Term: a.Term, RepliedAt: a.RepliedAt}
	}
	return out
}

// startMembership starts the reconciler, the leader-priority loop, the
// self-registration and the application-health watcher, all owned by the
// node's WaitGroup and ended by bgCancel (the reconciler by recCancel, which
// Shutdown calls later so that a draining leader still moves its own
// resources).
func (n *Node) startMembership() {
	rctx, cancel := context.WithCancel(context.Background())
	n.recCancel = cancel
	n.wg.Add(4)
	// The reconciler and the priority loop act only on the leader: each
	// sleeps on a leadership watch while this node follows.
	recWatch := n.el.Watch()
	go func() { defer n.wg.Done(); defer recWatch.Close(); _ = membership.RunGated(rctx, n.rec, recWatch.C()) }()
	go func() { defer n.wg.Done(); n.prio.Run(n.bgCtx) }()
	go func() { defer n.wg.Done(); n.life.Register(n.bgCtx) }()
	go func() { defer n.wg.Done(); n.app.Run(n.bgCtx) }()
}

// advertised turns a bound wildcard address into one other nodes can dial,
// using the host of the advertised peer address.
func (n *Node) advertised(bound string) string {
	host, port, err := net.SplitHostPort(bound)
	if err != nil {
		return bound
	}
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		return bound
	}
	phost, _, err := net.SplitHostPort(n.PeerAddr())
	if err != nil {
		return bound
	}
	return net.JoinHostPort(phost, port)
}

// selfMember returns this node's member record.
func (n *Node) selfMember() (membership.Member, bool) { return n.life.Self() }

// numOwned is the number of resources id owns.
func (n *Node) numOwned(id string) int { return n.life.NumOwned(id) }
