package transport

import (
	"bytes"
	"encoding/gob"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/heartbeat-sidecar/heartbeat/internal/testport"
	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
)

// listFSM keeps every applied command; its snapshot is the whole list.
type listFSM struct {
	mu       sync.Mutex
	entries  [][]byte
	restores int
}

func (f *listFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries = append(f.entries, l.Data)
	return len(f.entries)
}

func (f *listFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &listSnapshot{entries: append([][]byte(nil), f.entries...)}, nil
}

func (f *listFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var entries [][]byte
	if err := gob.NewDecoder(rc).Decode(&entries); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries = entries
	f.restores++
	return nil
}

// state returns the number of distinct commands applied and of snapshot restores.
// Distinct: an Apply that failed with ErrLeadershipLost may still have committed, and
// the test's retry then commits the same command again.
func (f *listFSM) state() (n, restores int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	seen := make(map[string]struct{}, len(f.entries))
	for _, e := range f.entries {
		seen[string(e)] = struct{}{}
	}
	return len(seen), f.restores
}

type listSnapshot struct{ entries [][]byte }

func (s *listSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := gob.NewEncoder(sink).Encode(s.entries); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *listSnapshot) Release() {}

// raftNode is one member of an in-process raft cluster over our transport.
type raftNode struct {
	id     raft.ServerID
	addr   raft.ServerAddress
	tr     *Transport
	fsm    *listFSM
	logs   *raft.InmemStore
	snaps  *raft.InmemSnapshotStore
	raft   *raft.Raft
	closed bool
}

func raftConfig(id raft.ServerID) *raft.Config {
	c := raft.DefaultConfig()
	c.LocalID = id
	c.HeartbeatTimeout = 300 * time.Millisecond
	c.ElectionTimeout = 300 * time.Millisecond
	c.LeaderLeaseTimeout = 150 * time.Millisecond
	c.CommitTimeout = 5 * time.Millisecond
	c.SnapshotThreshold = 32
	c.TrailingLogs = 8
	c.SnapshotInterval = time.Hour // snapshots are taken by the test
	c.Logger = hclog.New(&hclog.LoggerOptions{Name: string(id), Level: hclog.Error})
	return c
}

// start starts n's raft over a fresh transport bound to n.addr ("" picks a port).
func (n *raftNode) start(t *testing.T) {
	t.Helper()
	if n.addr == "" {
		n.addr = raft.ServerAddress(testport.Addr(t)) // reserved: restarts bind it again
	}
	bind := string(n.addr)
	n.tr = newTestTransport(t, string(n.id), func(c *Config) {
		c.BindAddr = bind
		c.HeartbeatTimeout = 250 * time.Millisecond
		c.SnapshotChunkSize = 64 << 10
	})
	n.addr = n.tr.LocalAddr()
	r, err := raft.NewRaft(raftConfig(n.id), n.fsm, n.logs, n.logs, n.snaps, n.tr)
	if err != nil {
		t.Fatalf("NewRaft %s: %v", n.id, err)
	}
	n.raft = r
	n.closed = false
}

func (n *raftNode) stop(t *testing.T) {
	t.Helper()
	if n.closed {
		return
	}
	n.closed = true
	if err := n.raft.Shutdown().Error(); err != nil {
		t.Errorf("shutdown %s: %v", n.id, err)
	}
	_ = n.tr.Close()
}

func leaderOf(nodes []*raftNode) *raftNode {
	for _, n := range nodes {
		if !n.closed && n.raft.State() == raft.Leader {
			return n
		}
	}
	return nil
}

func TestRaftClusterOverTransport(t *testing.T) {
	nodes := make([]*raftNode, 3)
	for i := range nodes {
		nodes[i] = &raftNode{id: raft.ServerID(fmt.Sprintf("n%d", i+1)), fsm: &listFSM{},
			logs: raft.NewInmemStore(), snaps: raft.NewInmemSnapshotStore()}
		nodes[i].start(t)
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			n.stop(t)
		}
	})
	var servers []raft.Server
	for _, n := range nodes {
		servers = append(servers, raft.Server{ID: n.id, Address: n.addr, Suffrage: raft.Voter})
	}
	if err := nodes[0].raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		t.Fatal(err)
	}
	var leader *raftNode
	testwait.Eventually(t, 15*time.Second, "a leader", func() (bool, string) { leader = leaderOf(nodes); return leader != nil, "" })

	apply := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			data := bytes.Repeat([]byte{byte(i)}, 4<<10) // 4 KiB per entry
			var err error
			for try := 0; try < 50; try++ {
				l := leaderOf(nodes)
				if l == nil {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				if err = l.raft.Apply(data, 5*time.Second).Error(); err == nil {
					break
				}
			}
			if err != nil {
				t.Fatalf("apply %d: %v", i, err)
			}
		}
	}
	apply(0, 100)
	for _, n := range nodes {
		testwait.Eventually(t, 15*time.Second, fmt.Sprintf("100 entries on %s", n.id), func() (bool, string) {
			got, _ := n.fsm.state()
			return got == 100, ""
		})
	}
	// The transport recorded acknowledgments from both followers.
	leader = leaderOf(nodes)
	if leader == nil {
		t.Fatal("no leader after applying")
	}
	acks := leader.tr.Acks()
	for _, n := range nodes {
		if n == leader {
			continue
		}
		ack, ok := acks[n.addr]
		if !ok || ack.Term == 0 || !ack.SentAt.Before(ack.RepliedAt) && !ack.SentAt.Equal(ack.RepliedAt) {
			t.Fatalf("leader's ack for %s = %+v (present %v)", n.id, ack, ok)
		}
	}

	// Put one follower behind: stop it, move on past a snapshot and log compaction,
	// restart it on the same address: it must catch up through InstallSnapshot.
	var behind *raftNode
	for _, n := range nodes {
		if n != leader {
			behind = n
			break
		}
	}
	behind.stop(t)
	apply(100, 200)
	leader = leaderOf(nodes)
	if leader == nil {
		t.Fatal("lost the leader while a follower was down")
	}
	if err := leader.raft.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	apply(200, 210)
	behind.start(t)
	testwait.Eventually(t, 20*time.Second, "the restarted follower to catch up", func() (bool, string) {
		got, _ := behind.fsm.state()
		return got == 210, ""
	})
	if _, restores := behind.fsm.state(); restores == 0 {
		t.Fatal("the follower caught up without installing a snapshot")
	}
	for _, n := range nodes {
		testwait.Eventually(t, 15*time.Second, fmt.Sprintf("210 entries on %s", n.id), func() (bool, string) {
			got, _ := n.fsm.state()
			return got == 210, ""
		})
	}
}
