package transport

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/internal/testport"
	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
	"github.com/heartbeat-sidecar/heartbeat/proto/raftpb"
)

// startHold runs a.Hold(ctx, target) in the background and waits until the stream has
// opened. The returned channel yields Hold's result.
func startHold(t *testing.T, ctx context.Context, a *Transport, target raft.ServerAddress) <-chan error {
	t.Helper()
	res := make(chan error, 1)
	go func() { res <- a.Hold(ctx, target) }()
	testwait.Eventually(t, 5*time.Second, "held stream to open", func() (bool, string) { return a.Holding(target), "" })
	return res
}

func holdResult(t *testing.T, res <-chan error) error {
	t.Helper()
	select {
	case err := <-res:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("Hold did not return")
		return nil
	}
}

func TestHoldPeerClosed(t *testing.T) {
	a, b := newTestTransport(t, "a"), newTestTransport(t, "b")
	res := startHold(t, t.Context(), a, b.LocalAddr())
	select {
	case err := <-res:
		t.Fatalf("Hold returned while the peer lives: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	start := time.Now()
	_ = b.Close()
	err := holdResult(t, res)
	if !errors.Is(err, ErrPeerClosed) {
		t.Fatalf("Hold = %v, want ErrPeerClosed", err)
	}
	t.Logf("held stream broke %v after Close", time.Since(start))
	if !a.held.isBroken(b.LocalAddr()) {
		t.Fatal("broken held stream not remembered")
	}
}

// TestHoldPeerProcessGone breaks the TCP connection under a held stream the way a
// killed process does (the peer's sockets close), by serving the peer through a proxy
// that is then shut.
func TestHoldPeerProcessGone(t *testing.T) {
	a, b := newTestTransport(t, "a"), newTestTransport(t, "b")
	proxy := newProxy(t, string(b.LocalAddr()))
	res := startHold(t, t.Context(), a, raft.ServerAddress(proxy.addr()))
	proxy.close()
	if err := holdResult(t, res); !errors.Is(err, ErrPeerClosed) {
		t.Fatalf("Hold = %v, want ErrPeerClosed", err)
	}
}

func TestHoldGoodbye(t *testing.T) {
	a, b := newTestTransport(t, "a"), newTestTransport(t, "b")
	res := startHold(t, t.Context(), a, b.LocalAddr())
	b.Goodbye()
	if err := holdResult(t, res); !errors.Is(err, ErrGoodbye) {
		t.Fatalf("Hold = %v, want ErrGoodbye", err)
	}
	if a.held.isBroken(b.LocalAddr()) {
		t.Fatal("a goodbye was remembered as a broken stream")
	}
	// A stream opened after the goodbye gets it at once.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := a.Hold(ctx, b.LocalAddr()); !errors.Is(err, ErrGoodbye) {
		t.Fatalf("Hold after Goodbye = %v, want ErrGoodbye", err)
	}
	// Goodbye then Close: still a goodbye, not a crash.
	c := newTestTransport(t, "c")
	res = startHold(t, t.Context(), a, c.LocalAddr())
	c.Goodbye()
	_ = c.Close()
	if err := holdResult(t, res); !errors.Is(err, ErrGoodbye) {
		t.Fatalf("Hold after Goodbye+Close = %v, want ErrGoodbye", err)
	}
}

func TestHoldContextCancel(t *testing.T) {
	a, b := newTestTransport(t, "a"), newTestTransport(t, "b")
	ctx, cancel := context.WithCancel(t.Context())
	res := startHold(t, ctx, a, b.LocalAddr())
	cancel()
	if err := holdResult(t, res); err != nil {
		t.Fatalf("Hold = %v, want nil after ctx cancel", err)
	}
	if a.held.isBroken(b.LocalAddr()) {
		t.Fatal("a canceled hold was remembered as broken")
	}
}

func TestHoldFailsBeforeOpen(t *testing.T) {
	a := newTestTransport(t, "a")
	dead := deadAddr(t)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	err := a.Hold(ctx, dead)
	if err == nil || errors.Is(err, ErrPeerClosed) {
		t.Fatalf("Hold to a dead address = %v, want a dial error (not ErrPeerClosed)", err)
	}
}

func TestHoldEndsOnOwnClose(t *testing.T) {
	a, b := newTestTransport(t, "a"), newTestTransport(t, "b")
	res := startHold(t, t.Context(), a, b.LocalAddr())
	_ = a.Close()
	if err := holdResult(t, res); !errors.Is(err, ErrTransportShutdown) {
		t.Fatalf("Hold = %v, want ErrTransportShutdown", err)
	}
}

func TestReachable(t *testing.T) {
	a, b := newTestTransport(t, "a"), newTestTransport(t, "b")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if err := a.Reachable(ctx, b.LocalAddr()); err != nil {
		t.Fatalf("Reachable(live) = %v", err)
	}
	if err := a.Reachable(ctx, deadAddr(t)); err == nil {
		t.Fatal("Reachable(dead) = nil")
	}
}

func TestConfirmLost(t *testing.T) {
	a, c := newTestTransport(t, "a"), newTestTransport(t, "c")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()

	t.Run("leader alive and held", func(t *testing.T) {
		b := newTestTransport(t, "b")
		hctx, hcancel := context.WithCancel(t.Context())
		res := startHold(t, hctx, c, b.LocalAddr())
		lost, err := a.ConfirmLost(ctx, c.LocalAddr(), b.LocalAddr())
		if err != nil || lost {
			t.Fatalf("ConfirmLost = %v, %v; want false", lost, err)
		}
		hcancel()
		<-res
	})
	t.Run("held stream broke", func(t *testing.T) {
		b := newTestTransport(t, "b")
		res := startHold(t, t.Context(), c, b.LocalAddr())
		addr := b.LocalAddr()
		_ = b.Close()
		if err := holdResult(t, res); !errors.Is(err, ErrPeerClosed) {
			t.Fatalf("Hold = %v", err)
		}
		// Something else listens there now: only the broken stream says lost.
		lis, err := net.Listen("tcp", string(addr))
		if err != nil {
			t.Fatal(err)
		}
		defer lis.Close()
		lost, err := a.ConfirmLost(ctx, c.LocalAddr(), addr)
		if err != nil || !lost {
			t.Fatalf("ConfirmLost = %v, %v; want true (held stream broke)", lost, err)
		}
	})
	t.Run("never held, unreachable", func(t *testing.T) {
		lost, err := a.ConfirmLost(ctx, c.LocalAddr(), deadAddr(t))
		if err != nil || !lost {
			t.Fatalf("ConfirmLost = %v, %v; want true (dial fails)", lost, err)
		}
	})
	t.Run("never held, reachable", func(t *testing.T) {
		b := newTestTransport(t, "b")
		lost, err := a.ConfirmLost(ctx, c.LocalAddr(), b.LocalAddr())
		if err != nil || lost {
			t.Fatalf("ConfirmLost = %v, %v; want false", lost, err)
		}
	})
	t.Run("via unreachable", func(t *testing.T) {
		if _, err := a.ConfirmLost(ctx, deadAddr(t), c.LocalAddr()); err == nil {
			t.Fatal("ConfirmLost via a dead member succeeded")
		}
	})
}

func TestTimeoutNowSelf(t *testing.T) {
	a := newTestTransport(t, "a")
	got := make(chan *raft.TimeoutNowRequest, 1)
	serve(t, a, func(rpc raft.RPC) {
		req, ok := rpc.Command.(*raft.TimeoutNowRequest)
		if !ok {
			rpc.Respond(nil, errUnexpected)
			return
		}
		got <- req
		rpc.Respond(&raft.TimeoutNowResponse{}, nil)
	})
	if err := a.TimeoutNowSelf(t.Context()); err != nil {
		t.Fatal(err)
	}
	req := <-got
	if req.ProtocolVersion != raft.ProtocolVersionMax || string(req.ID) != "a" || string(req.Addr) != string(a.LocalAddr()) {
		t.Fatalf("TimeoutNow request = %+v", req)
	}
}

func TestTimeoutNowSelfRespectsContext(t *testing.T) {
	a := newTestTransport(t, "a") // nobody reads Consumer
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if err := a.TimeoutNowSelf(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("TimeoutNowSelf = %v, want DeadlineExceeded", err)
	}
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) raft.ServerAddress {
	t.Helper()
	// Reserved for the test and never bound: nothing else can listen there.
	return raft.ServerAddress(testport.Addr(t))
}

// TestHoldOnlyVotersOnePerNode: with a real gRPC client on the peer port, a
// Hold naming no node, an unknown node or a non-voter is refused; a voter
// holds at most one stream: each newer Hold of the same node ends the
// older one (codes.Aborted), so 200 Holds over one connection leave one
// open (issue 13: 5,000 Holds on one connection kept 5,074 goroutines).
func TestHoldOnlyVotersOnePerNode(t *testing.T) {
	voters := map[raft.ServerID]bool{"v1": true, "v2": true}
	b := newTestTransport(t, "b", func(cfg *Config) {
		cfg.IsVoter = func(id raft.ServerID) bool { return voters[id] }
	})
	conn, err := grpc.NewClient(string(b.LocalAddr()), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rc := raftpb.NewRaftTransportClient(conn)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, MetadataCluster, "test-cluster")
	hold := func(id string) (grpc.ServerStreamingClient[raftpb.HoldEvent], error) {
		s, err := rc.Hold(ctx, &raftpb.HoldRequest{FollowerId: id})
		if err == nil {
			_, err = s.Recv()
		}
		return s, err
	}
	for id, want := range map[string]codes.Code{"": codes.InvalidArgument, "stranger": codes.FailedPrecondition, "nonvoter": codes.FailedPrecondition} {
		if _, err := hold(id); status.Code(err) != want {
			t.Errorf("Hold of %q: %v, want %v", id, err, want)
		}
	}
	if got := b.holders.count(); got != 0 {
		t.Errorf("%d held streams served after refusals, want 0", got)
	}

	var last grpc.ServerStreamingClient[raftpb.HoldEvent]
	for i := range 200 {
		s, err := hold("v1")
		if err != nil {
			t.Fatalf("voter's Hold %d: %v", i, err)
		}
		if last != nil {
			if _, err := last.Recv(); status.Code(err) != codes.Aborted {
				t.Fatalf("the replaced Hold ended with %v, want Aborted", err)
			}
		}
		last = s
	}
	if _, err := hold("v2"); err != nil {
		t.Fatalf("another voter's Hold: %v", err)
	}
	if got := b.holders.count(); got != 2 {
		t.Errorf("%d held streams served, want 2 (one per voter)", got)
	}
}
