package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
	"github.com/heartbeat-sidecar/heartbeat/proto/raftpb"
)

// echoHeartbeats answers every heartbeat of tr with its own term.
func echoHeartbeats(tr *Transport) {
	tr.SetHeartbeatHandler(func(rpc raft.RPC) {
		req := rpc.Command.(*raft.AppendEntriesRequest)
		rpc.Respond(&raft.AppendEntriesResponse{Term: req.Term, Success: true}, nil)
	})
}

func heartbeatReq(from *Transport, term uint64) *raft.AppendEntriesRequest {
	return &raft.AppendEntriesRequest{RPCHeader: header(from), Term: term, Leader: []byte(from.LocalAddr())}
}

func TestHeartbeatsShareOneStream(t *testing.T) {
	a, b := newTestTransport(t, "a"), newTestTransport(t, "b")
	echoHeartbeats(b)
	for term := uint64(1); term <= 50; term++ {
		var resp raft.AppendEntriesResponse
		if err := a.AppendEntries("b", b.LocalAddr(), heartbeatReq(a, term), &resp); err != nil {
			t.Fatalf("heartbeat %d: %v", term, err)
		}
		if resp.Term != term || !resp.Success {
			t.Fatalf("heartbeat %d: resp = %+v", term, resp)
		}
		if ack := a.Acks()[b.LocalAddr()]; ack.Term != term {
			t.Fatalf("heartbeat %d: ack = %+v", term, ack)
		}
	}
	if n := b.hbStreams.Load(); n != 1 {
		t.Fatalf("50 heartbeats used %d streams, want 1", n)
	}
}

// TestHeartbeatTimeoutTearsDownStream: an answer that comes after HeartbeatTimeout is
// never taken for the next heartbeat's; the next heartbeat runs on a new stream.
func TestHeartbeatTimeoutTearsDownStream(t *testing.T) {
	const timeout = 200 * time.Millisecond
	a := newTestTransport(t, "a", func(c *Config) { c.HeartbeatTimeout = timeout })
	b := newTestTransport(t, "b")
	release := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	b.SetHeartbeatHandler(func(rpc raft.RPC) {
		req := rpc.Command.(*raft.AppendEntriesRequest)
		if req.Term != 1 {
			rpc.Respond(&raft.AppendEntriesResponse{Term: req.Term, Success: true}, nil)
			return
		}
		wg.Add(1)
		go func() { // a slow raft: answers term 1 late
			defer wg.Done()
			<-release
			rpc.Respond(&raft.AppendEntriesResponse{Term: 1, Success: true}, nil)
		}()
	})
	start := time.Now()
	var resp raft.AppendEntriesResponse
	err := a.AppendEntries("b", b.LocalAddr(), heartbeatReq(a, 1), &resp)
	took := time.Since(start)
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("unanswered heartbeat = %v, want DeadlineExceeded", err)
	}
	if took < timeout || took > timeout+3*time.Second {
		t.Fatalf("unanswered heartbeat failed after %v, HeartbeatTimeout is %v", took, timeout)
	}
	if _, ok := a.Acks()[b.LocalAddr()]; ok {
		t.Fatal("an unanswered heartbeat was recorded as acknowledged")
	}
	close(release) // the late answer to term 1 now goes out on the dead stream, if at all
	for term := uint64(2); term <= 4; term++ {
		resp = raft.AppendEntriesResponse{}
		if err := a.AppendEntries("b", b.LocalAddr(), heartbeatReq(a, term), &resp); err != nil {
			t.Fatalf("heartbeat %d: %v", term, err)
		}
		if resp.Term != term {
			t.Fatalf("heartbeat %d got the answer of term %d", term, resp.Term)
		}
	}
	if n := b.hbStreams.Load(); n != 2 {
		t.Fatalf("heartbeat streams opened = %d, want 2 (one torn down by the timeout)", n)
	}
}

func TestHeartbeatStreamReopensAfterPeerRestart(t *testing.T) {
	a, b := newTestTransport(t, "a"), newTestTransport(t, "b")
	echoHeartbeats(b)
	addr := b.LocalAddr()
	beat := func(term uint64) error {
		var resp raft.AppendEntriesResponse
		if err := a.AppendEntries("b", addr, heartbeatReq(a, term), &resp); err != nil {
			return err
		}
		if resp.Term != term {
			return fmt.Errorf("heartbeat %d answered with term %d", term, resp.Term)
		}
		return nil
	}
	if err := beat(1); err != nil {
		t.Fatal(err)
	}
	_ = b.Close()
	if err := beat(2); err == nil {
		t.Fatal("heartbeat to a closed peer succeeded")
	}
	b2 := newTestTransport(t, "b", func(c *Config) { c.BindAddr = string(addr) })
	echoHeartbeats(b2)
	term := uint64(3)
	testwait.Eventually(t, 5*time.Second, "heartbeats to the restarted peer", func() (bool, string) {
		term++
		return beat(term) == nil, ""
	})
	if err := beat(term + 1); err != nil {
		t.Fatalf("heartbeat after recovery: %v", err)
	}
}

func TestHeartbeatConcurrentCallers(t *testing.T) {
	a, b := newTestTransport(t, "a"), newTestTransport(t, "b")
	echoHeartbeats(b)
	const callers, beats = 4, 25
	errs := make(chan error, callers)
	var wg sync.WaitGroup
	for g := 0; g < callers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < beats; i++ {
				term := uint64(1000*(g+1) + i)
				var resp raft.AppendEntriesResponse
				if err := a.AppendEntries("b", b.LocalAddr(), heartbeatReq(a, term), &resp); err != nil {
					errs <- err
					return
				}
				if resp.Term != term {
					errs <- fmt.Errorf("heartbeat %d got the answer of %d", term, resp.Term)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestHeartbeatWrongClusterRejected(t *testing.T) {
	a := newTestTransport(t, "a", func(c *Config) { c.ClusterID = "other-cluster" })
	b := newTestTransport(t, "b")
	echoHeartbeats(b)
	for i := 0; i < 2; i++ { // and again on a reopened stream
		err := a.AppendEntries("b", b.LocalAddr(), heartbeatReq(a, 1), &raft.AppendEntriesResponse{})
		if !errors.Is(err, ErrWrongCluster) {
			t.Fatalf("heartbeat from another cluster = %v, want ErrWrongCluster", err)
		}
	}
}

// unaryOnlyServer serves the unary Heartbeat RPC only, like a node from before the
// heartbeat stream.
type unaryOnlyServer struct {
	raftpb.UnimplementedRaftTransportServer
}

func (unaryOnlyServer) Heartbeat(_ context.Context, p *raftpb.AppendEntriesRequest) (*raftpb.AppendEntriesResponse, error) {
	return &raftpb.AppendEntriesResponse{Term: p.Term, Success: true}, nil
}

func TestHeartbeatFallsBackToUnary(t *testing.T) {
	a := newTestTransport(t, "a")
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	raftpb.RegisterRaftTransportServer(srv, unaryOnlyServer{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() { srv.Stop(); <-done })
	addr := raft.ServerAddress(lis.Addr().String())
	for term := uint64(1); term <= 3; term++ {
		var resp raft.AppendEntriesResponse
		if err := a.AppendEntries("old", addr, heartbeatReq(a, term), &resp); err != nil {
			t.Fatalf("heartbeat %d to an old peer: %v", term, err)
		}
		if resp.Term != term || !resp.Success {
			t.Fatalf("heartbeat %d: resp = %+v", term, resp)
		}
	}
	if ack := a.Acks()[addr]; ack.Term != 3 {
		t.Fatalf("ack = %+v, want term 3", ack)
	}
}

// TestReusedMessagesCarryNothingOver: the messages a heartbeat stream reuses are fully
// overwritten, so nothing of one request or answer shows in the next.
func TestReusedMessagesCarryNothingOver(t *testing.T) {
	var req raftpb.AppendEntriesRequest
	var hdr raftpb.RPCHeader
	full := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: 3, ID: []byte("x"), Addr: []byte("y")},
		Term: 5, Leader: []byte("l"), PrevLogEntry: 9, PrevLogTerm: 4, LeaderCommitIndex: 8,
		Entries: []*raft.Log{{Index: 10, Term: 5, Data: []byte("d")}}}
	appendReqIntoProto(full, &req, &hdr)
	hb := &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: 3, ID: []byte("a")}, Term: 6, Leader: []byte("a")}
	appendReqIntoProto(hb, &req, &hdr)
	got := must(appendReqFromProto(wire(t, &req)))(t)
	if !IsHeartbeat(got) || got.Term != 6 || string(got.ID) != "a" || len(got.Addr) != 0 || string(got.Leader) != "a" {
		t.Fatalf("reused request = %+v, want the heartbeat alone", got)
	}

	var out raftpb.AppendEntriesResponse
	var outHdr raftpb.RPCHeader
	appendResultInto(raft.RPCResponse{Error: errors.New("boom")}, &out, &outHdr)
	if out.Error != "boom" {
		t.Fatalf("error answer = %+v", &out)
	}
	appendResultInto(raft.RPCResponse{Response: &raft.AppendEntriesResponse{Term: 6, Success: true}}, &out, &outHdr)
	var resp raft.AppendEntriesResponse
	appendRespFromProto(wire(t, &out), &resp)
	if w := wire(t, &out); w.Error != "" || resp.Term != 6 || !resp.Success {
		t.Fatalf("reused answer = %+v (error %q), want term 6, success, no error", resp, w.Error)
	}
}
