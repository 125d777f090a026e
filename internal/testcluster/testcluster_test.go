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
