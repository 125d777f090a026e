package transport

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// rawListener is a TCP listener on loopback whose accepted connections get serve
// (nil: connections are never accepted and sit in the kernel's backlog, as they do
// while a killed process's descriptors are torn down).
func rawListener(t *testing.T, serve func(net.Conn)) raft.ServerAddress {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	if serve != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := lis.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
				wg.Add(1)
				go func() {
					defer wg.Done()
					serve(c)
				}()
			}
		}()
	}
	t.Cleanup(func() {
		_ = lis.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return raft.ServerAddress(lis.Addr().String())
}

// drain reads c until it fails (the peer or cleanup closed it).
func drain(c net.Conn) {
	buf := make([]byte, 512)
	for {
		if _, err := c.Read(buf); err != nil {
			return
		}
	}
}

func TestReachableNeedsALiveServer(t *testing.T) {
	a, b := newTestTransport(t, "a"), newTestTransport(t, "b")
	proxy := newProxy(t, string(b.LocalAddr()))
	cases := []struct {
		name       string
		addr       raft.ServerAddress
		reachable  bool
		notServing bool // the dial worked but nothing answered: ErrNotServing
		// either: the reset may come before connect returns (a dial error) or after.
		either bool
	}{
		{name: "live transport", addr: b.LocalAddr(), reachable: true},
		{name: "live transport behind a proxy", addr: raft.ServerAddress(proxy.addr()), reachable: true},
		{name: "nothing listens", addr: deadAddr(t)},
		{name: "listener that never accepts (backlog only)", addr: rawListener(t, nil), notServing: true},
		{name: "accepts and never speaks", addr: rawListener(t, drain), notServing: true},
		{name: "accepts then closes", addr: rawListener(t, func(c net.Conn) { _ = c.Close() }), notServing: true},
		{name: "accepts then resets", addr: rawListener(t, func(c net.Conn) {
			_ = c.(*net.TCPConn).SetLinger(0)
			_ = c.Close()
		}), either: true},
		{name: "speaks HTTP/1.1", addr: rawListener(t, func(c net.Conn) {
			_, _ = c.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"))
			drain(c)
		}), notServing: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// A live server answers within milliseconds; the generous bound is for the
			// shared machine. The dead ones must fail by ctx's end, not hang.
			timeout := 300 * time.Millisecond
			if tc.reachable {
				timeout = 5 * time.Second
			}
			ctx, cancel := context.WithTimeout(t.Context(), timeout)
			defer cancel()
			start := time.Now()
			err := a.Reachable(ctx, tc.addr)
			took := time.Since(start)
			if tc.reachable {
				if err != nil {
					t.Fatalf("Reachable = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Reachable = nil, want an error")
			}
			if got := errors.Is(err, ErrNotServing); got != tc.notServing && !tc.either {
				t.Fatalf("Reachable = %v; errors.Is(ErrNotServing) = %v, want %v", err, got, tc.notServing)
			}
			if took > timeout+2*time.Second {
				t.Fatalf("Reachable took %v with a %v ctx", took, timeout)
			}
		})
	}
}

func TestReachableHonoursCancel(t *testing.T) {
	a := newTestTransport(t, "a")
	silent := rawListener(t, drain)
	ctx, cancel := context.WithCancel(t.Context()) // no deadline: only the cancel ends it
	res := make(chan error, 1)
	go func() { res <- a.Reachable(ctx, silent) }()
	select {
	case err := <-res:
		t.Fatalf("Reachable returned before the cancel: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	cancel()
	select {
	case err := <-res:
		if !errors.Is(err, ErrNotServing) || !errors.Is(err, context.Canceled) {
			t.Fatalf("Reachable = %v, want ErrNotServing and context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Reachable did not return after cancel")
	}
}

// TestConfirmLostSilentListener: a member asked to confirm sees a port that accepts but
// where nothing answers as lost (its 50 ms probe needs a live server).
func TestConfirmLostSilentListener(t *testing.T) {
	a, c := newTestTransport(t, "a"), newTestTransport(t, "c")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for _, addr := range []raft.ServerAddress{rawListener(t, nil), rawListener(t, drain)} {
		lost, err := a.ConfirmLost(ctx, c.LocalAddr(), addr)
		if err != nil || !lost {
			t.Fatalf("ConfirmLost(%s) = %v, %v; want true", addr, lost, err)
		}
	}
}
