package api_test

import (
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
	leaderpolicy "github.com/heartbeat-sidecar/heartbeat/leadership"
	"github.com/heartbeat-sidecar/heartbeat/membership"
	"github.com/heartbeat-sidecar/heartbeat/rpc/api"
	"github.com/heartbeat-sidecar/heartbeat/rpc/transport"
)

// TestMain runs the tests of rpc/api (external, package api_test, so that
// they can run clusters from internal/testcluster, which imports node and
// so this package; internals come from export_test.go) and checks that
// none leaves a goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitTimeout bounds the waits and calls of these tests.
const waitTimeout = 20 * time.Second

// nopFSM applies nothing.
type nopFSM struct{}

func (nopFSM) Apply(*raft.Log) any                 { return nil }
func (nopFSM) Snapshot() (raft.FSMSnapshot, error) { return nopSnap{}, nil }
func (nopFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

type nopSnap struct{}

func (nopSnap) Persist(s raft.SnapshotSink) error { return s.Close() }
func (nopSnap) Release()                          {}

// member is one node of a test cluster (testcluster.ElectionCluster): the
// election behind an ElectionRef, and the ClusterAdmin server registered
// on its transport.
type member struct {
	id    string
	tr    *transport.Transport
	el    *election.Node
	ref   *api.ElectionRef
	admin *api.Admin
}

const testCluster = "api-test"

// newAdmin returns member id with its Admin (serving before its election
// exists: the ref is empty until the cluster starts it).
func newAdmin(t *testing.T, id string) *member {
	t.Helper()
	return newAdminWith(t, id, func(*api.AdminConfig) {})
}

// newAdminWith is newAdmin with tweak applied to the Admin's config.
func newAdminWith(t *testing.T, id string, tweak func(*api.AdminConfig)) *member {
	t.Helper()
	m := &member{id: id, ref: &api.ElectionRef{}}
	acfg := api.DefaultAdminConfig()
	acfg.ID, acfg.ClusterID, acfg.Election = id, testCluster, m.ref
	tweak(&acfg)
	admin, err := api.NewAdmin(acfg)
	if err != nil {
		t.Fatal(err)
	}
	m.admin = admin
	return m
}

func (m *member) addr() string { return string(m.tr.LocalAddr()) }

// startAdmins starts a test cluster of len(ms) election nodes, ms[i] on node
// i, each with its Admin registered on its transport; opts adds to the
// shared settings (testCluster, lenient timings, the Admins). The
// election of a member not started (opts.NoStart) is set by start.
func startAdmins(t *testing.T, ms []*member, opts testcluster.ElectionOptions) *testcluster.ElectionCluster {
	t.Helper()
	byID := map[string]*member{}
	for _, m := range ms {
		byID[m.id] = m
	}
	opts.ClusterID = testCluster
	// Lenient timing for a shared machine under -race: no false elections
	// in the middle of a check.
	opts.Heartbeat = 1500 * time.Millisecond
	opts.Register = func(id string, s *grpc.Server) { byID[id].admin.Register(s) }
	c := testcluster.StartElections(t, len(ms), opts)
	for i, m := range ms {
		m.tr = c.Node(i).Transport
		if n := c.Node(i).Node; n != nil {
			m.el = n
			m.ref.Set(n)
		}
	}
	return c
}

// start starts member i's election (one started with opts.NoStart).
func (m *member) start(c *testcluster.ElectionCluster, i int) {
	m.el = c.Start(i)
	m.ref.Set(m.el)
}

// newCluster starts n members bootstrapped together and waits for a leader.
func newCluster(t *testing.T, n int) []*member {
	t.Helper()
	return newClusterWith(t, n, func(string) raft.FSM { return nopFSM{} })
}

// newClusterWith is newCluster with a state machine per member id.
func newClusterWith(t *testing.T, n int, fsmFor func(id string) raft.FSM) []*member {
	t.Helper()
	var ms []*member
	for i := 0; i < n; i++ {
		ms = append(ms, newAdmin(t, fmt.Sprintf("n%d", i+1)))
	}
	// Each member's election vetoes transfer targets by its membership
	// state, as node wires it (leadership.CanLead); a state machine of
	// another kind leaves raft alone to decide.
	var fsms sync.Map // id -> raft.FSM
	record := func(id string) raft.FSM {
		f := fsmFor(id)
		fsms.Store(id, f)
		return f
	}
	canLead := func(self string) func(string) error {
		return func(target string) error {
			f, _ := fsms.Load(self)
			if mf, ok := f.(*membership.FSM); ok {
				return leaderpolicy.CanLead(mf)(target)
			}
			return fmt.Errorf("%w: no membership state", election.ErrUnknownMember)
		}
	}
	c := startAdmins(t, ms, testcluster.ElectionOptions{FSM: record, Tweak: func(cfg *election.Config) { cfg.CanLead = canLead(cfg.ID) }})
	c.WaitLeader(waitTimeout)
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
	return api.OutgoingContext(ctx, "tester", testCluster)
}
