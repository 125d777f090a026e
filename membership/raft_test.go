package membership

import (
	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"

	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// raftNode is one hashicorp/raft node over its in-memory transport with this
// package's FSM: the FSM's contract with real raft (Apply responses,
// snapshots, InstallSnapshot to a lagging node), without our gRPC stack.
type raftNode struct {
	id    string
	addr  raft.ServerAddress
	tr    *raft.InmemTransport
	fsm   *FSM
	raft  *raft.Raft
	snaps *raft.InmemSnapshotStore
}

func startRaftNode(t *testing.T, id string) *raftNode {
	t.Helper()
	addr, tr := raft.NewInmemTransport(raft.ServerAddress(id))
	fsm, err := NewFSM(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	conf := raft.DefaultConfig()
	conf.LocalID = raft.ServerID(id)
	// Lenient timeouts: with 100 ms, a loaded -race run lost leadership
	// between the commits and the reconciler step often enough to flake.
	conf.HeartbeatTimeout, conf.ElectionTimeout = 500*time.Millisecond, 500*time.Millisecond
	conf.LeaderLeaseTimeout, conf.CommitTimeout = 500*time.Millisecond, 5*time.Millisecond
	conf.SnapshotThreshold, conf.SnapshotInterval, conf.TrailingLogs = 1<<30, time.Hour, 2
	conf.Logger = hclog.NewNullLogger()
	store, snaps := raft.NewInmemStore(), raft.NewInmemSnapshotStore()
	r, err := raft.NewRaft(conf, fsm, store, store, snaps, tr)
	if err != nil {
		t.Fatal(err)
	}
	return &raftNode{id: id, addr: addr, tr: tr, fsm: fsm, raft: r, snaps: snaps}
}

// Apply implements Applier through raft.
func (n *raftNode) Apply(ctx context.Context, b []byte) (any, error) {
	timeout := time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	f := n.raft.Apply(b, timeout)
	if err := f.Error(); err != nil {
		return nil, err
	}
	return f.Response(), nil
}

func (n *raftNode) IsLeader() bool { return n.raft.State() == raft.Leader }

func TestFSMUnderRaft(t *testing.T) {
	var nodes []*raftNode
	defer func() {
		for _, n := range nodes {
			_ = n.raft.Shutdown().Error()
			_ = n.tr.Close()
		}
	}()
	connect := func(n *raftNode) {
		for _, o := range nodes {
			n.tr.Connect(o.addr, o.tr)
			o.tr.Connect(n.addr, n.tr)
		}
		nodes = append(nodes, n)
	}
	var cfg raft.Configuration
	for i := 1; i <= 3; i++ {
		n := startRaftNode(t, "n"+strconv.Itoa(i))
		connect(n)
		cfg.Servers = append(cfg.Servers, raft.Server{ID: raft.ServerID(n.id), Address: n.addr, Suffrage: raft.Voter})
	}
	if err := nodes[0].raft.BootstrapCluster(cfg).Error(); err != nil {
		t.Fatal(err)
	}
	var leader *raftNode
	testwait.Eventually(t, 20*time.Second, "a leader", func() (bool, string) {
		for _, n := range nodes {
			if n.IsLeader() {
				leader = n
				return true, ""
			}
		}
		return false, ""
	})
	ctx := context.Background()
	for _, n := range nodes {
		if _, err := Commit(ctx, leader, UpsertMemberCmd(MemberSpec{ID: n.id, PeerAddr: string(n.addr), Voter: true})); err != nil {
			t.Fatal(err)
		}
	}
	specs := make([]ResourceSpec, 5000)
	for i := range specs {
		specs[i] = ResourceSpec{ID: fmt.Sprintf("res-%05d", i)}
	}
	if res, err := Commit(ctx, leader, RegisterCmd(specs)); err != nil || res.Changed != 5000 {
		t.Fatalf("register through raft: %+v %v", res, err)
	}
	if _, err := Commit(ctx, leader, MarkDeadCmd("nobody")); err == nil {
		t.Fatal("rejection lost through raft")
	}

	// The leader's reconciler assigns through raft (every peer "answers").
	rcfg := DefaultReconcilerConfig()
	rcfg.SelfID = leader.id
	allAnswer := HeartbeatSourceFunc(func() map[string]time.Time {
		m := map[string]time.Time{}
		for _, n := range nodes {
			m[string(n.addr)] = time.Now()
		}
		return m
	})
	rec, err := NewReconciler(rcfg, leader.fsm, leader, leader, allAnswer)
	if err != nil {
		t.Fatal(err)
	}
	if err := rec.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if st := rec.Stats(); st.Moves != 5000 {
		t.Fatalf("reconciler through raft: %+v", st)
	}

	// Snapshot, write more, then a new node catches up by InstallSnapshot
	// (TrailingLogs=2: the early log is gone) and then by the log.
	if err := leader.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	if _, err := Commit(ctx, leader, RegisterCmd([]ResourceSpec{{ID: "after-snapshot"}})); err != nil {
		t.Fatal(err)
	}
	if err := rec.Step(ctx); err != nil {
		t.Fatal(err)
	}
	n4 := startRaftNode(t, "n4")
	connect(n4)
	if err := leader.raft.AddNonvoter(raft.ServerID(n4.id), n4.addr, 0, 5*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	want := leader.fsm.View()
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for _, n := range nodes {
		if err := n.fsm.WaitRevision(wctx, want.Revision); err != nil {
			t.Fatalf("%s did not reach revision %d: %v", n.id, want.Revision, err)
		}
		got := n.fsm.View()
		if got.Revision > want.Revision {
			t.Fatalf("%s applied past the leader's view (%d > %d): the test raced", n.id, got.Revision, want.Revision)
		}
		if err := CheckOneOwner(got); err != nil {
			t.Fatalf("%s: %v", n.id, err)
		}
		if fmt.Sprint(got.Resources) != fmt.Sprint(want.Resources) || fmt.Sprint(got.Members) != fmt.Sprint(want.Members) {
			t.Fatalf("%s's view differs from the leader's", n.id)
		}
	}
	if metas, _ := n4.snaps.List(); len(metas) == 0 {
		t.Fatal("the new node caught up without a snapshot: the test does not exercise Restore")
	}
	if ownerOf := func() string {
		var r Resource
		n4.fsm.Read(func(s *State) { r, _ = s.Resource("after-snapshot") })
		return r.Owner
	}(); ownerOf == "" {
		t.Fatal("resource registered after the snapshot is unowned on the new node")
	}
}
