package node_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
	"github.com/heartbeat-sidecar/heartbeat/node"
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
