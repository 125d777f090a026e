package testcluster

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestContextEndsWithTest(t *testing.T) {
	var ctx interface{ Err() error }
	t.Run("inner", func(t *testing.T) {
		c := ContextWithin(t, time.Minute)
		if c.Err() != nil {
			t.Fatalf("fresh context: %v", c.Err())
		}
		ctx = c
	})
	if ctx.Err() == nil {
		t.Error("context still live after its test ended")
	}
}

func TestFreeAddrs(t *testing.T) {
	addrs := FreeAddrs(t, 3)
	if len(addrs) != 3 || addrs[0] == addrs[1] || addrs[1] == addrs[2] || addrs[0] == addrs[2] {
		t.Fatalf("FreeAddrs = %v; want 3 distinct", addrs)
	}
	for _, a := range addrs {
		if !strings.HasPrefix(a, "127.0.0.1:") {
			t.Errorf("%s is not a loopback address", a)
		}
		ln, err := net.Listen("tcp", a) // released: free to listen on
		if err != nil {
			t.Fatalf("listen on %s: %v", a, err)
		}
		ln.Close()
	}
}

// TestWriterQuietAfterTest: a write after the test ended is dropped, not
// passed to t.Log (which would panic).
func TestWriterQuietAfterTest(t *testing.T) {
	var w *Writer
	t.Run("inner", func(t *testing.T) {
		w = NewWriter(t)
		if n, err := w.Write([]byte("during the test\n")); n != 16 || err != nil {
			t.Errorf("Write = %d, %v", n, err)
		}
	})
	if n, err := w.Write([]byte("late\n")); n != 5 || err != nil {
		t.Errorf("late Write = %d, %v", n, err)
	}
}

func TestSyncBuffer(t *testing.T) {
	var b SyncBuffer
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 100; j++ {
				fmt.Fprint(&b, "x")
				_ = b.String()
			}
		}()
	}
	wg.Wait()
	if got := len(b.String()); got != 400 {
		t.Errorf("%d bytes; want 400", got)
	}
}

// TestCluster: three voters elect one leader; a killed follower restarts
// on the same client address (FixedClientAddrs) from its data, and the
// cluster is ready again; Endpoints puts the given node first.
func TestCluster(t *testing.T) {
	c := Start(t, 3, Options{FixedClientAddrs: true, FaultNet: true})
	if c.Net() == nil {
		t.Fatal("no fault network with FaultNet")
	}
	leader := c.Leader()
	fs := c.Followers()
	if len(fs) != 2 || slices.Contains(fs, leader) {
		t.Fatalf("followers %v of leader %s", fs, leader.ID())
	}
	ids := func() []string {
		var out []string
		for _, n := range c.Live() {
			out = append(out, n.ID())
		}
		return out
	}
	if got := ids(); !slices.Equal(got, []string{"n1", "n2", "n3"}) {
		t.Fatalf("Live = %v", got)
	}
	eps := c.Endpoints("n2")
	if len(eps) != 3 || eps[0] != c.Node("n2").ClientAddr() || eps[1] != c.Node("n1").ClientAddr() {
		t.Errorf("Endpoints(n2) = %v", eps)
	}

	f := fs[0]
	addr := f.ClientAddr()
	c.Kill(f.ID())
	if got := ids(); len(got) != 2 || slices.Contains(got, f.ID()) {
		t.Fatalf("Live after killing %s = %v", f.ID(), got)
	}
	if c.Leader() != leader {
		t.Errorf("leadership moved when a follower died")
	}
	again := c.Restart(f.ID())
	if again.ClientAddr() != addr {
		t.Errorf("restarted %s on %s; want its reserved %s", f.ID(), again.ClientAddr(), addr)
	}
	c.Ready()
	if len(c.Live()) != 3 {
		t.Errorf("Live after restart = %v", ids())
	}
}

// TestClusterNewAndStartConfig: New starts nothing; StartNode starts the
// initial nodes in the test's order; Follower skips the ids it is told; a
// node started from Config joins and is one of the cluster's nodes.
func TestClusterNewAndStartConfig(t *testing.T) {
	c := New(t, 2, Options{})
	if got := len(c.Live()); got != 0 {
		t.Fatalf("New started %d nodes; want none", got)
	}
	c.StartNode("n1")
	c.StartNode("n2")
	c.Ready()
	leader := c.Leader()
	f := c.Follower()
	if f == leader {
		t.Fatalf("Follower returned the leader %s", f.ID())
	}
	cfg := c.Config("n3", FreeAddrs(t, 1)[0])
	cfg.Join = []string{f.PeerAddr()}
	n3 := c.StartConfig("n3", cfg)
	c.WaitMembers()
	if got := len(c.Live()); got != 3 {
		t.Fatalf("Live after StartConfig: %d nodes; want 3", got)
	}
	if got := c.Follower(f.ID()); got == f || got == leader {
		t.Fatalf("Follower(%s) = %s (leader %s)", f.ID(), got.ID(), leader.ID())
	}
	// f (n1 or n2) is still the follower with the lowest id.
	if got := c.Follower(); got != f || got == n3 {
		t.Errorf("Follower() = %s; want the lowest id, %s", got.ID(), f.ID())
	}
	v := c.WaitSettled(0)
	if len(v.Members) != 3 {
		t.Errorf("settled view has %d members; want 3", len(v.Members))
	}
}

// TestElectionCluster: election nodes elect one leader that every member
// names; the LogFSM gets what the leader applies; Isolate takes the leader
// out (the majority elects another, with a higher fencing token) and Heal
// brings it back; a killed node restarts from its data with its log; a
// Hook refuses redials and breaks a running Hold on demand.
func TestElectionCluster(t *testing.T) {
	c := StartElections(t, 3, ElectionOptions{FastFailover: true})
	li := c.WaitLeader(15 * time.Second)
	old := c.Node(li).Node.Leadership()
	if _, err := c.Node(li).Node.Apply(ContextWithin(t, 5*time.Second), []byte("a")); err != nil {
		t.Fatal(err)
	}
	applied := func(i int) func() (bool, string) {
		return func() (bool, string) {
			got := c.Node(i).FSM.(*LogFSM).Entries()
			return slices.Equal(got, []string{"a"}), fmt.Sprint(got)
		}
	}
	for _, i := range c.Alive() {
		testwait.Eventually(t, 10*time.Second, c.Node(i).ID+" applied the entry", applied(i))
	}
	if got := c.Metric(li, "heartbeat_raft_state"); got == 0 {
		t.Errorf("raft_state gauge of the leader is 0")
	}

	c.Isolate(li)
	testwait.Eventually(t, 15*time.Second, "another leader", func() (bool, string) {
		ni := c.Leader()
		return ni >= 0 && ni != li, c.Describe()
	})
	c.Heal(li)
	ni := c.WaitLeader(15 * time.Second)
	if l := c.Node(ni).Node.Leadership(); l.FencingToken <= old.FencingToken {
		t.Errorf("leader after the heal %+v, not above %+v", l, old)
	}

	f := (ni + 1) % 3
	c.Kill(f)
	if slices.Contains(c.Alive(), f) {
		t.Fatalf("Alive after Kill(%d) = %v", f, c.Alive())
	}
	c.Restart(f)
	c.WaitLeader(15 * time.Second)
	testwait.Eventually(t, 10*time.Second, "the restarted node's log", applied(f))

	h := c.Node(f).Hook
	h.SetRefuse(true)
	if err := h.Reachable(ContextWithin(t, time.Second), c.Node(ni).Addr); err == nil {
		t.Error("Reachable with SetRefuse(true) succeeded")
	}
	h.SetRefuse(false)
	if err := h.Reachable(ContextWithin(t, 5*time.Second), c.Node(ni).Addr); err != nil {
		t.Errorf("Reachable after SetRefuse(false): %v", err)
	}
	// The follower holds a stream to the leader (fast failover): BreakHold
	// finds it running and breaks it.
	testwait.Eventually(t, 10*time.Second, "a running Hold to break", func() (bool, string) {
		return h.BreakHold(), "no Hold running"
	})
}
