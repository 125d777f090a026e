package api

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/heartbeat-sidecar/heartbeat/election"
	leaderpolicy "github.com/heartbeat-sidecar/heartbeat/leadership"
	"github.com/heartbeat-sidecar/heartbeat/membership"
	"github.com/heartbeat-sidecar/heartbeat/rpc/transport"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const waitTimeout = 20 * time.Second

// waitFor polls cond every 20ms until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	var why string
	for time.Now().Before(deadline) {
		var ok bool
		if ok, why = cond(); ok {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s: %s", what, why)
}

// nopFSM applies nothing.
type nopFSM struct{}

func (nopFSM) Apply(*raft.Log) any                 { return nil }
func (nopFSM) Snapshot() (raft.FSMSnapshot, error) { return nopSnap{}, nil }
func (nopFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

type nopSnap struct{}

func (nopSnap) Persist(s raft.SnapshotSink) error { return s.Close() }
func (nopSnap) Release()                          {}

// member is one node of a test cluster: transport with the ClusterAdmin
// server registered on it, and the election behind an ElectionRef.
type member struct {
	id    string
	tr    *transport.Transport
	el    *election.Node
	ref   *ElectionRef
	admin *Admin
}

const testCluster = "api-test"

// newMember opens a transport on a free port with an Admin registered.
func newMember(t *testing.T, id string) *member {
	t.Helper()
	m := &member{id: id, ref: &ElectionRef{}}
	acfg := DefaultAdminConfig()
	acfg.ID, acfg.ClusterID, acfg.Election = id, testCluster, m.ref
	admin, err := NewAdmin(acfg)
	if err != nil {
		t.Fatal(err)
	}
	m.admin = admin
	tcfg := transport.DefaultConfig()
	tcfg.ID, tcfg.BindAddr, tcfg.ClusterID = raft.ServerID(id), "127.0.0.1:0", testCluster
	tcfg.Register = func(s *grpc.Server) { admin.Register(s) }
	tcfg.Logger = hclog.NewNullLogger()
	if m.tr, err = transport.New(tcfg); err != nil {
		t.Fatal(err)
	}
	return m
}

// start builds the member's election with the given bootstrap list.
func (m *member) start(t *testing.T, dir string, peers []election.Peer) {
	t.Helper()
	m.startWith(t, dir, peers, nopFSM{})
}

// startWith is start with a state machine.
func (m *member) startWith(t *testing.T, dir string, peers []election.Peer, fsm raft.FSM) {
	t.Helper()
	ec := election.DefaultConfig()
	ec.ID, ec.ClusterID, ec.DataDir, ec.Bootstrap = m.id, testCluster, filepath.Join(dir, m.id), peers
	ec.Acks = func() map[raft.ServerAddress]election.Ack {
		out := map[raft.ServerAddress]election.Ack{}
		for a, ack := range m.tr.Acks() {
			out[a] = election.Ack{SentAt: ack.SentAt, Term: ack.Term}
		}
		return out
	}
	ec.ErrPeerClosed, ec.ErrGoodbye = transport.ErrPeerClosed, transport.ErrGoodbye
	// Lenient timing for a shared machine under -race: no false elections
	// in the middle of a check.
	ec.HeartbeatTimeout, ec.ElectionTimeout, ec.LeaseDuration = 1500*time.Millisecond, 1500*time.Millisecond, 1200*time.Millisecond
	ec.Logger = hclog.NewNullLogger()
	if mf, ok := fsm.(*membership.FSM); ok {
		ec.CanLead = leaderpolicy.CanLead(mf) // as node wires it
	}
	el, err := election.New(ec, m.tr, fsm)
	if err != nil {
		t.Fatal(err)
	}
	m.el = el
	m.ref.Set(el)
}

func (m *member) close() {
	if m.el != nil {
		m.el.Close()
	}
	m.tr.Close()
}

func (m *member) addr() string { return string(m.tr.LocalAddr()) }

// newCluster starts n members bootstrapped together and waits for a leader.
func newCluster(t *testing.T, n int) []*member {
	t.Helper()
	return newClusterWith(t, n, func(string) raft.FSM { return nopFSM{} })
}

// newClusterWith is newCluster with a state machine per member id.
func newClusterWith(t *testing.T, n int, fsmFor func(id string) raft.FSM) []*member {
	t.Helper()
	dir := t.TempDir()
	var ms []*member
	var peers []election.Peer
	for i := 0; i < n; i++ {
		m := newMember(t, fmt.Sprintf("n%d", i+1))
		ms = append(ms, m)
		peers = append(peers, election.Peer{ID: m.id, Address: m.addr(), Voter: true})
	}
	t.Cleanup(func() {
		for _, m := range ms {
			m.close()
		}
	})
	for _, m := range ms {
		m.startWith(t, dir, peers, fsmFor(m.id))
	}
	waitFor(t, "a leader known to all", func() (bool, string) {
		var seen string
		for _, m := range ms {
			l := m.el.Leadership()
			if l.LeaderID == "" || (seen != "" && l.LeaderID != seen) {
				return false, fmt.Sprintf("%s sees %q", m.id, l.LeaderID)
			}
			seen = l.LeaderID
		}
		return leaderOfCluster(ms).el.Leadership().IsLeader, "lease not yet valid"
	})
	return ms
}

func leaderOfCluster(ms []*member) *member {
	for _, m := range ms {
		if m.el.Leadership().LeaderID == m.id {
			return m
		}
	}
	return ms[0]
}

func followerOf(ms []*member) *member {
	for _, m := range ms {
		if m.el.Leadership().LeaderID != m.id {
			return m
		}
	}
	panic("no follower")
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return OutgoingContext(ctx, "tester", testCluster)
}
