package node_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
	"github.com/heartbeat-sidecar/heartbeat/node"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// closedWithin reads conn until it is closed by the server and reports how
// long that took from start; it fails the test if the connection is still
// open after bound.
func closedWithin(t *testing.T, conn net.Conn, start time.Time, bound time.Duration) (time.Duration, string) {
	t.Helper()
	if err := conn.SetReadDeadline(start.Add(bound)); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(conn)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection still open %v after the start (read %q)", bound, got)
	}
	return time.Since(start), string(got)
}

// TestHTTPConnectionLimits: over real loopback sockets, the HTTP port cuts a
// request body that trickles in (slowloris) after HTTPReadTimeout, closes an
// idle keep-alive connection after HTTPIdleTimeout and refuses headers over
// HTTPMaxHeaderBytes with 431, while an SSE watch (a long response) outlives
// HTTPReadTimeout many times. Both timeouts were unbounded before (issue 13:
// both connections were still open after 40 s).
func TestHTTPConnectionLimits(t *testing.T) {
	const (
		readTimeout = 500 * time.Millisecond
		idleTimeout = 700 * time.Millisecond
		bound       = 6 * time.Second // generous: -race on a shared machine
	)
	c := testcluster.Start(t, 1, testcluster.Options{Wait: waitTimeout, Tweak: func(cfg *node.Config) {
		defaultDetector(cfg)
		cfg.HTTPReadTimeout = readTimeout
		cfg.HTTPIdleTimeout = idleTimeout
		cfg.HTTPMaxHeaderBytes = 4 << 10
		cfg.MetricsAddr = "127.0.0.1:0"
	}})
	n := c.Node("n1")
	addr := n.HTTPAddr()
	dialTo := func(t *testing.T, addr string) net.Conn {
		t.Helper()
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	dial := func(t *testing.T) net.Conn { t.Helper(); return dialTo(t, addr) }

	t.Run("slow body", func(t *testing.T) {
		conn := dial(t)
		start := time.Now()
		fmt.Fprintf(conn, "POST /v1/resources HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n[")
		// Trickle a byte every 100ms from a goroutine until the server
		// closes the connection (a write then fails) or the bound passes.
		done := make(chan struct{})
		go func() {
			defer close(done)
			for time.Since(start) < bound {
				if _, err := conn.Write([]byte(" ")); err != nil {
					return
				}
				time.Sleep(100 * time.Millisecond) // the slow client's pace, not a wait for a condition
			}
		}()
		took, resp := closedWithin(t, conn, start, bound)
		conn.Close()
		<-done
		t.Logf("slow body: closed after %v, answered %.60q", took.Round(time.Millisecond), resp)
		if !strings.HasPrefix(resp, "HTTP/1.1 400") {
			t.Errorf("slow body answered %.80q, want a 400 (never a 500)", resp)
		}
	})

	t.Run("idle keep-alive", func(t *testing.T) {
		for _, a := range []string{addr, n.MetricsAddr()} {
			conn := dialTo(t, a)
			fmt.Fprintf(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			start := time.Now()
			took, _ := closedWithin(t, conn, start, bound)
			t.Logf("%s: idle keep-alive closed after %v", a, took.Round(time.Millisecond))
			if took < idleTimeout/2 {
				t.Errorf("closed after %v: before the idle timeout %v", took, idleTimeout)
			}
		}
	})

	t.Run("headers too large", func(t *testing.T) {
		conn := dial(t)
		fmt.Fprintf(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", 64<<10))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("64 KiB header: %d, want 431", resp.StatusCode)
		}
	})

	t.Run("SSE outlives the read timeout", func(t *testing.T) {
		conn := dial(t)
		fmt.Fprintf(conn, "GET /v1/watch/leader HTTP/1.1\r\nHost: x\r\n\r\n")
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("watch: %d", resp.StatusCode)
		}
		// Read the stream for 5 read timeouts: it must neither end nor
		// fail (a read deadline left on the connection would end the
		// stream's context when it passes).
		if err := conn.SetReadDeadline(time.Now().Add(5 * readTimeout)); err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("watch ended within %v (%v): %q", 5*readTimeout, err, body)
		}
		if strings.Contains(string(body), "event: error") {
			t.Errorf("watch sent an error: %q", body)
		}
	})
}

// dialFrom dials the client port from a loopback source address of its own
// (127.0.0.2, ...): another client, as the per-client cap sees it.
func dialFrom(t *testing.T, src, addr string) *grpc.ClientConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return d.DialContext(ctx, "tcp", a) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// sseFrom opens GET path on the HTTP port from source address src and
// returns its status and, unless 200, its body; a 200's stream stays open
// until the test ends.
func sseFrom(t *testing.T, src, httpAddr, path string) (int, string) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	tr := &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	req, err := http.NewRequestWithContext(ctxT(t), http.MethodGet, "http://"+httpAddr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(body)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp.StatusCode, ""
}

// TestWatchLimits: the client port caps the streams open at once, per node
// (MaxWatches) and per client (MaxWatchesPerClient, by caller and address;
// the gateway's SSE watches count for the HTTP caller's address, not the
// gateway's): one more is ResourceExhausted over gRPC and 429 over HTTP, a
// closed one frees its place, and heartbeat_watches_open counts them.
func TestWatchLimits(t *testing.T) {
	c := testcluster.Start(t, 1, testcluster.Options{Wait: waitTimeout, Tweak: func(cfg *node.Config) {
		defaultDetector(cfg)
		cfg.MaxWatches, cfg.MaxWatchesPerClient = 6, 3
	}})
	n := c.Node("n1")
	ctx := ctxT(t)
	open := func(conn *grpc.ClientConn) (context.CancelFunc, error) {
		sctx, cancel := context.WithCancel(ctx)
		s, err := heartbeatpb.NewCoordinatorClient(conn).WatchLeader(sctx, &heartbeatpb.WatchLeaderRequest{})
		if err == nil {
			_, err = s.Recv()
		}
		if err != nil {
			cancel()
		}
		return cancel, err
	}
	openMetric := func() string {
		_, body := httpDo(t, http.MethodGet, "http://"+n.HTTPAddr()+"/metrics")
		for _, l := range strings.Split(body, "\n") {
			if strings.HasPrefix(l, "heartbeat_watches_open ") {
				return strings.TrimPrefix(l, "heartbeat_watches_open ")
			}
		}
		return "(none)"
	}

	a := dialFrom(t, "127.0.0.2", n.ClientAddr())
	var cancels []context.CancelFunc
	for i := range 3 {
		cancel, err := open(a)
		if err != nil {
			t.Fatalf("client A's watch %d: %v", i+1, err)
		}
		cancels = append(cancels, cancel)
	}
	_, err := open(a)
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "per client") {
		t.Fatalf("client A's 4th watch: %v, want ResourceExhausted per client", err)
	}
	// Over HTTP from A's address: the gateway's stream counts for A.
	if code, body := sseFrom(t, "127.0.0.2", n.HTTPAddr(), "/v1/watch/leader"); code != http.StatusTooManyRequests || !strings.Contains(body, "per client") {
		t.Fatalf("client A's SSE watch over its cap: %d %s, want 429 per client", code, body)
	}
	// Another client (another address) still has room, until the node is full.
	b := dialFrom(t, "127.0.0.3", n.ClientAddr())
	for i := range 2 {
		cancel, err := open(b)
		if err != nil {
			t.Fatalf("client B's watch %d: %v", i+1, err)
		}
		defer cancel()
	}
	// Over HTTP from a third address: the gateway's stream counts for it.
	code, body := sseFrom(t, "127.0.0.4", n.HTTPAddr(), "/v1/watch/leader")
	if code != http.StatusOK {
		t.Fatalf("SSE watch from C: %d %s", code, body)
	}
	if got := openMetric(); got != "6" {
		t.Errorf("heartbeat_watches_open = %s, want 6", got)
	}
	if _, err := open(b); status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "--max-watches)") {
		t.Errorf("7th watch on the node: %v, want ResourceExhausted (node)", err)
	}
	if code, body := sseFrom(t, "127.0.0.5", n.HTTPAddr(), "/v1/watch/members"); code != http.StatusTooManyRequests || !strings.Contains(body, "RESOURCE_EXHAUSTED") {
		t.Errorf("SSE watch on a full node: %d %s, want 429 RESOURCE_EXHAUSTED", code, body)
	}
	// A closed watch frees its place.
	cancels[0]()
	testwait.Eventually(t, waitTimeout, "a closed watch's place freed", func() (bool, string) {
		got := openMetric()
		return got == "5", "heartbeat_watches_open " + got
	})
	cancel, err := open(a)
	if err != nil {
		t.Fatalf("client A's watch after one closed: %v", err)
	}
	defer cancel()
	for _, c := range cancels[1:] {
		c()
	}
}

// TestWatchCost measures what an open watch costs the node: goroutines and
// memory (heap and stacks in use) per SSE watch and per gRPC watch (all on one connection), for each
// kind of watch. Every stream is read by a goroutine of the test (unread,
// a stream fills its flow-control window or socket and stalls or ends);
// those, and grpc-go's client stream watcher, are taken off the goroutine
// figures (the memory figures include the client's). It fails when a watch
// costs more goroutines than the bounds below. HEARTBEAT_WATCH_COST_N sets
// the watches per kind (the figures of README "Limits").
func TestWatchCost(t *testing.T) {
	perKind := 30
	if v := os.Getenv("HEARTBEAT_WATCH_COST_N"); v != "" {
		if _, err := fmt.Sscan(v, &perKind); err != nil {
			t.Fatal(err)
		}
	}
	c := testcluster.Start(t, 1, testcluster.Options{Wait: waitTimeout, Tweak: func(cfg *node.Config) {
		defaultDetector(cfg)
		cfg.MaxWatches, cfg.MaxWatchesPerClient = 2*perKind+10, 2*perKind+10
	}})
	n := c.Node("n1")
	measure := func() (int, uint64) {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return runtime.NumGoroutine(), ms.HeapInuse + ms.StackInuse
	}
	// Goroutines per watch, as measured (README "Limits"), with room for
	// noise: an SSE watch costs the HTTP connection's two (net/http's
	// serve loop and background read), the gateway's receiver, grpc-go's
	// client stream watcher and the server's stream handler; a members
	// watch one more (its producer). An assignments watch cost one more
	// before its close callback (context.AfterFunc) replaced a goroutine.
	bounds := map[string][2]float64{"leader": {5.5, 1.5}, "members": {6.5, 2.5}, "assignments": {5.5, 1.5}}
	for _, kind := range []string{"leader", "members", "assignments"} {
		t.Run(kind, func(t *testing.T) {
			// A leader watch sends a renewal every 50ms while this node
			// leads: many of them take CPU to open (1000 took over 20s).
			ctx, cancel := context.WithCancel(testcluster.ContextWithin(t, waitTimeout*time.Duration(1+perKind/100)))
			var wg sync.WaitGroup
			defer func() { cancel(); wg.Wait() }()
			// drain reads a stream's first message, then the rest from a
			// goroutine until the stream ends.
			drain := func(what string, recv func() error) {
				if err := recv(); err != nil {
					t.Fatalf("%s %s watch: %v", what, kind, err)
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					for recv() == nil {
					}
				}()
			}
			g0, h0 := measure()
			for range perKind {
				conn, err := net.Dial("tcp", n.HTTPAddr())
				if err != nil {
					t.Fatal(err)
				}
				context.AfterFunc(ctx, func() { conn.Close() }) // ends its reader
				fmt.Fprintf(conn, "GET /v1/watch/%s HTTP/1.1\r\nHost: x\r\n\r\n", kind)
				resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
				if err != nil || resp.StatusCode != http.StatusOK {
					t.Fatalf("SSE %s watch: %v %v", kind, resp, err)
				}
				buf := make([]byte, 4096)
				drain("SSE", func() error { _, err := resp.Body.Read(buf); return err })
			}
			g1, h1 := measure()
			cl := heartbeatpb.NewCoordinatorClient(dialClient(t, n.ClientAddr()))
			for range perKind {
				var recv func() error
				switch kind {
				case "leader":
					s, err := cl.WatchLeader(ctx, &heartbeatpb.WatchLeaderRequest{})
					if err != nil {
						t.Fatal(err)
					}
					recv = func() error { _, err := s.Recv(); return err }
				case "members":
					s, err := cl.WatchMembers(ctx, &heartbeatpb.WatchMembersRequest{})
					if err != nil {
						t.Fatal(err)
					}
					recv = func() error { _, err := s.Recv(); return err }
				default:
					s, err := cl.WatchAssignments(ctx, &heartbeatpb.WatchAssignmentsRequest{})
					if err != nil {
						t.Fatal(err)
					}
					recv = func() error { _, err := s.Recv(); return err }
				}
				drain("gRPC", recv)
			}
			g2, h2 := measure()
			per := func(d int) float64 { return float64(d) / float64(perKind) }
			kib := func(a, b uint64) float64 { return (float64(b) - float64(a)) / 1024 / float64(perKind) }
			sse, grpcG := per(g1-g0)-1, per(g2-g1)-2
			t.Logf("%d %s watches: SSE %.2f goroutines and %.1f KiB heap+stacks each; gRPC %.2f goroutines and %.1f KiB heap+stacks each",
				perKind, kind, sse, kib(h0, h1), grpcG, kib(h1, h2))
			if maxSSE, maxGRPC := bounds[kind][0], bounds[kind][1]; sse > maxSSE || grpcG > maxGRPC {
				t.Errorf("%.2f goroutines per SSE watch (at most %.1f), %.2f per gRPC watch (at most %.1f)", sse, maxSSE, grpcG, maxGRPC)
			}
		})
	}
}

// TestHoldFromVoters: the node's transport takes held streams from voters
// only (transport.Config.IsVoter, from the raft configuration): both voter
// followers of a 3-voter cluster hold one to the leader, a non-voter none
// (it never asks; were it refused as a voter, fast failover would be gone).
func TestHoldFromVoters(t *testing.T) {
	c := startCluster(t, 3, 1, testcluster.Options{})
	leader := c.Leader()
	for _, id := range []string{"n1", "n2", "n3"} {
		if id == leader.ID() {
			continue
		}
		n := c.Node(id)
		testwait.Eventually(t, waitTimeout, id+" holds a stream to the leader", func() (bool, string) {
			return node.Holding(n, leader.PeerAddr()), ""
		})
	}
	if node.Holding(c.Node("n4"), leader.PeerAddr()) {
		t.Error("the non-voter n4 holds a stream to the leader")
	}
}

// TestWatchFromAhead: a watch from a revision ahead of the node's (up to
// 2^64-1), consistent or stale, is OutOfRange at once over gRPC and 400
// over HTTP, never "start" and then silence.
func TestWatchFromAhead(t *testing.T) {
	c := startCluster(t, 1, 0, testcluster.Options{})
	n := c.Node("n1")
	cl := heartbeatpb.NewCoordinatorClient(dialClient(t, n.ClientAddr()))
	for _, rev := range []uint64{math.MaxUint64, 1 << 40} {
		for _, cons := range []heartbeatpb.Consistency{heartbeatpb.Consistency_CONSISTENCY_UNSPECIFIED, heartbeatpb.Consistency_CONSISTENCY_STALE} {
			s, err := cl.WatchAssignments(ctxT(t), &heartbeatpb.WatchAssignmentsRequest{FromRevision: rev, Consistency: cons})
			if err == nil {
				var ev *heartbeatpb.WatchAssignmentsResponse
				ev, err = s.Recv()
				if err == nil {
					t.Errorf("gRPC watch from %d (%v): first event %v, want OutOfRange", rev, cons, ev)
					continue
				}
			}
			if status.Code(err) != codes.OutOfRange {
				t.Errorf("gRPC watch from %d (%v): %v, want OutOfRange", rev, cons, err)
			}
		}
		for _, q := range []string{"", "&stale"} {
			code, body := httpDo(t, http.MethodGet, fmt.Sprintf("http://%s/v1/watch/assignments?from_revision=%d%s", n.HTTPAddr(), rev, q))
			if code != http.StatusBadRequest || !strings.Contains(body, "OUT_OF_RANGE") {
				t.Errorf("HTTP watch from %d%s: %d %s, want 400 OUT_OF_RANGE", rev, q, code, body)
			}
		}
	}
}

// h2Pinger is a bare HTTP/2 client (prior knowledge, plaintext) that sends
// PING frames and watches for the server's GOAWAY.
type h2Pinger struct {
	conn   net.Conn
	goaway chan string // the GOAWAY's debug data
}

func newH2Pinger(t *testing.T, addr string) *h2Pinger {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	p := &h2Pinger{conn: conn, goaway: make(chan string, 1)}
	// The preface, then an empty SETTINGS frame.
	if _, err := conn.Write(append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 0, 0, 0, 4, 0, 0, 0, 0, 0)); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { // reads frames until the connection closes
		defer close(done)
		hdr := make([]byte, 9)
		for {
			if _, err := io.ReadFull(conn, hdr); err != nil {
				return
			}
			payload := make([]byte, int(hdr[0])<<16|int(hdr[1])<<8|int(hdr[2]))
			if _, err := io.ReadFull(conn, payload); err != nil {
				return
			}
			if hdr[3] == 7 && len(payload) >= 8 { // GOAWAY
				select {
				case p.goaway <- string(payload[8:]):
				default:
				}
			}
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return p
}

// ping sends one PING frame.
func (p *h2Pinger) ping(t *testing.T, n byte) {
	t.Helper()
	if _, err := p.conn.Write([]byte{0, 0, 8, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, n}); err != nil {
		t.Logf("ping %d: %v", n, err) // the server may have closed it already
	}
}

// TestKeepaliveEnforcement: both gRPC ports send GOAWAY "too_many_pings" to
// a client that pings far more often than every 5s (ClientKeepaliveMinTime,
// transport.KeepaliveMinTime), and accept pings every 5.5s on a connection
// with no stream open (gRPC's default policy refuses those: without a
// stream it allows one ping per two hours). Heartbeat's own clients (the
// Go client, the gateway's connection, the transport's dials) send no
// keepalive pings at all, so they cannot trip it; every cluster test runs
// them under this policy.
func TestKeepaliveEnforcement(t *testing.T) {
	c := startCluster(t, 1, 0, testcluster.Options{})
	n := c.Node("n1")
	for _, port := range []struct{ name, addr string }{{"client", n.ClientAddr()}, {"peer", n.PeerAddr()}} {
		t.Run(port.name, func(t *testing.T) {
			t.Parallel()
			fast := newH2Pinger(t, port.addr)
			slow := newH2Pinger(t, port.addr)
			for i := range byte(10) {
				fast.ping(t, i)
			}
			select {
			case data := <-fast.goaway:
				if data != "too_many_pings" {
					t.Errorf("GOAWAY %q, want too_many_pings", data)
				}
			case <-time.After(10 * time.Second):
				t.Error("10 pings at once: no GOAWAY")
			}
			for i := range byte(4) {
				if i > 0 {
					time.Sleep(node.ClientKeepaliveMinTime + 500*time.Millisecond) // the client's ping period under test
				}
				slow.ping(t, i)
			}
			select {
			case data := <-slow.goaway:
				t.Errorf("pings every %v without a stream: GOAWAY %q", node.ClientKeepaliveMinTime+500*time.Millisecond, data)
			case <-time.After(time.Second):
			}
		})
	}
}
