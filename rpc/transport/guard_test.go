package transport

import (
	"bytes"
	"context"
	"errors"
	"math"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestTermBeyondBoundRefused: every raft RPC that carries a term is refused,
// before raft sees it, when its term is above MaxTerm or more than
// MaxTermAhead beyond the receiver's term, and counted; a term within the
// bound goes through.
func TestTermBeyondBoundRefused(t *testing.T) {
	const cur = 5
	b := newTestTransport(t, "b", func(c *Config) { c.CurrentTerm = func() uint64 { return cur } })
	var seen atomic.Int64
	serve(t, b, func(rpc raft.RPC) { seen.Add(1); echoHandler(rpc) })
	a := newTestTransport(t, "a")

	calls := map[string]func(term uint64) error{
		"AppendEntries": func(term uint64) error {
			req := &raft.AppendEntriesRequest{RPCHeader: header(a), Term: term, PrevLogEntry: 1, PrevLogTerm: 1, LeaderCommitIndex: 1,
				Entries: []*raft.Log{{Index: 2, Term: term}}}
			return a.AppendEntries("b", b.LocalAddr(), req, &raft.AppendEntriesResponse{})
		},
		"Heartbeat (stream)": func(term uint64) error {
			req := &raft.AppendEntriesRequest{RPCHeader: header(a), Term: term, Leader: []byte(a.LocalAddr())}
			return a.AppendEntries("b", b.LocalAddr(), req, &raft.AppendEntriesResponse{})
		},
		"AppendEntriesPipeline": func(term uint64) error {
			p, err := a.AppendEntriesPipeline("b", b.LocalAddr())
			if err != nil {
				return err
			}
			defer p.Close()
			req := &raft.AppendEntriesRequest{RPCHeader: header(a), Term: term, PrevLogEntry: 1, PrevLogTerm: 1, LeaderCommitIndex: 1}
			f, err := p.AppendEntries(req, &raft.AppendEntriesResponse{})
			if err != nil {
				return err
			}
			select {
			case done := <-p.Consumer():
				return done.Error()
			case <-time.After(10 * time.Second):
				return f.Error()
			}
		},
		"RequestVote": func(term uint64) error {
			req := &raft.RequestVoteRequest{RPCHeader: header(a), Term: term, Candidate: []byte("a")}
			return a.RequestVote("b", b.LocalAddr(), req, &raft.RequestVoteResponse{})
		},
		"RequestPreVote": func(term uint64) error {
			req := &raft.RequestPreVoteRequest{RPCHeader: header(a), Term: term}
			return a.RequestPreVote("b", b.LocalAddr(), req, &raft.RequestPreVoteResponse{})
		},
		"InstallSnapshot": func(term uint64) error {
			req := &raft.InstallSnapshotRequest{RPCHeader: header(a), SnapshotVersion: 1, Term: term, Size: 0}
			return a.InstallSnapshot("b", b.LocalAddr(), req, &raft.InstallSnapshotResponse{}, bytes.NewReader(nil))
		},
	}
	rejected := func() float64 { return counterValue(t, b.metrics.rejected.WithLabelValues(rejectTerm)) }
	for name, call := range calls {
		for _, term := range []uint64{math.MaxUint64, cur + 1<<21, MaxTerm + 1} {
			before, seenBefore := rejected(), seen.Load()
			err := call(term)
			if err == nil {
				t.Errorf("%s with term %d: accepted", name, term)
			} else if !isCode(err, codes.InvalidArgument) {
				t.Errorf("%s with term %d: %v, want InvalidArgument", name, term, err)
			}
			if got := rejected(); got != before+1 {
				t.Errorf("%s with term %d: rejected_total{reason=term} %v -> %v, want one more", name, term, before, got)
			}
			if seen.Load() != seenBefore {
				t.Errorf("%s with term %d: raft saw the request", name, term)
			}
		}
		if name == "InstallSnapshot" {
			continue // the echo handler answers no snapshot; the refusal above is what counts
		}
		if err := call(cur + 1000); err != nil {
			t.Errorf("%s with a term within the bound: %v", name, err)
		}
	}
}

// TestConfirmOnlyMembers: Confirm about an address that is not in the
// receiver's raft configuration is refused without dialing it (a listener
// there records no connection); about a member it dials.
func TestConfirmOnlyMembers(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	outsider := raft.ServerAddress(lis.Addr().String())
	var member atomic.Bool // whether c counts the listener's address as a member
	c := newTestTransport(t, "c", func(cfg *Config) {
		cfg.IsMember = func(addr raft.ServerAddress) bool { return addr == outsider && member.Load() }
	})
	a := newTestTransport(t, "a")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	// dialed reports whether a connection to the listener is pending: the
	// kernel completes a dialed connection before Confirm answers, so one
	// is in the backlog by now if Confirm dialed.
	dialed := func() bool {
		_ = lis.(*net.TCPListener).SetDeadline(time.Now().Add(200 * time.Millisecond))
		conn, err := lis.Accept()
		if err != nil {
			return false
		}
		conn.Close()
		return true
	}

	_, err = a.ConfirmLost(ctx, c.LocalAddr(), outsider)
	if !isCode(err, codes.FailedPrecondition) {
		t.Fatalf("Confirm about a non-member: %v, want FailedPrecondition", err)
	}
	if dialed() {
		t.Fatal("Confirm about a non-member dialed it")
	}
	if got := counterValue(t, c.metrics.rejected.WithLabelValues(rejectConfirm)); got != 1 {
		t.Errorf("rejected_total{reason=confirm} = %v, want 1", got)
	}

	member.Store(true)
	lost, err := a.ConfirmLost(ctx, c.LocalAddr(), outsider)
	if err != nil || !lost {
		t.Fatalf("Confirm about a member that answers no HTTP/2: %v, %v; want lost", lost, err)
	}
	if !dialed() {
		t.Fatal("Confirm about a member did not dial it (the recorder would miss a dial)")
	}
}

// isCode reports whether err carries code anywhere in its chain.
func isCode(err error, code codes.Code) bool {
	for ; err != nil; err = errors.Unwrap(err) {
		if s, ok := status.FromError(err); ok && s.Code() == code {
			return true
		}
	}
	return false
}

// counterValue reads a counter.
func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
