package transport

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

func TestInstallSnapshot20MiB(t *testing.T) {
	a, b := newTestTransport(t, "a", func(c *Config) { c.SnapshotChunkSize = 256 << 10 }), newTestTransport(t, "b")
	data := make([]byte, 20<<20+12345)
	_, _ = rand.Read(data)
	want := sha256.Sum256(data)
	type result struct {
		sum [32]byte
		n   int64
		req *raft.InstallSnapshotRequest
	}
	got := make(chan result, 1)
	serve(t, b, func(rpc raft.RPC) {
		req := rpc.Command.(*raft.InstallSnapshotRequest)
		h := sha256.New()
		n, _ := io.Copy(h, rpc.Reader)
		var r result
		copy(r.sum[:], h.Sum(nil))
		r.n, r.req = n, req
		got <- r
		rpc.Respond(&raft.InstallSnapshotResponse{Term: req.Term, Success: n == req.Size}, nil)
	})
	req := &raft.InstallSnapshotRequest{RPCHeader: header(a), SnapshotVersion: 1, Term: 5, LastLogIndex: 100, LastLogTerm: 4,
		Configuration: []byte("conf"), ConfigurationIndex: 3, Size: int64(len(data))}
	var resp raft.InstallSnapshotResponse
	if err := a.InstallSnapshot("b", b.LocalAddr(), req, &resp, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.n != int64(len(data)) || r.sum != want {
		t.Fatalf("snapshot arrived with %d bytes (want %d), intact=%v", r.n, len(data), r.sum == want)
	}
	if r.req.LastLogIndex != 100 || string(r.req.Configuration) != "conf" {
		t.Fatalf("request arrived as %+v", r.req)
	}
	if !resp.Success || resp.Term != 5 {
		t.Fatalf("resp = %+v", resp)
	}
}

// TestInstallSnapshotAnsweredEarly: raft answers before reading all the data (an
// error); the handler must not hang on the rest of the stream, and the sender gets
// the error.
func TestInstallSnapshotAnsweredEarly(t *testing.T) {
	a := newTestTransport(t, "a", func(c *Config) { c.SnapshotChunkSize = 64 << 10 })
	b := newTestTransport(t, "b")
	serve(t, b, func(rpc raft.RPC) {
		buf := make([]byte, 1024)
		_, _ = io.ReadFull(rpc.Reader, buf)
		rpc.Respond(nil, errors.New("snapshot refused"))
	})
	data := make([]byte, 8<<20)
	req := &raft.InstallSnapshotRequest{Term: 1, Size: int64(len(data))}
	err := a.InstallSnapshot("b", b.LocalAddr(), req, &raft.InstallSnapshotResponse{}, bytes.NewReader(data))
	if !errors.Is(err, ErrRemote) || !strings.Contains(err.Error(), "snapshot refused") {
		t.Fatalf("InstallSnapshot = %v, want ErrRemote with the refusal", err)
	}
}

// TestInstallSnapshotShortData: fewer bytes than Size reach raft as an early EOF, and
// more than Size are cut at Size.
func TestInstallSnapshotShortData(t *testing.T) {
	a, b := newTestTransport(t, "a"), newTestTransport(t, "b")
	got := make(chan int64, 1)
	serve(t, b, func(rpc raft.RPC) {
		req := rpc.Command.(*raft.InstallSnapshotRequest)
		n, _ := io.Copy(io.Discard, rpc.Reader)
		got <- n
		rpc.Respond(&raft.InstallSnapshotResponse{Term: req.Term, Success: n == req.Size}, nil)
	})
	req := &raft.InstallSnapshotRequest{Term: 1, Size: 1000}
	var resp raft.InstallSnapshotResponse
	if err := a.InstallSnapshot("b", b.LocalAddr(), req, &resp, bytes.NewReader(make([]byte, 600))); err != nil {
		t.Fatal(err)
	}
	if n := <-got; n != 600 || resp.Success {
		t.Fatalf("raft read %d bytes, success %v; want 600, false", n, resp.Success)
	}
	// And more bytes than Size are cut at Size.
	if err := a.InstallSnapshot("b", b.LocalAddr(), req, &resp, bytes.NewReader(make([]byte, 5000))); err != nil {
		t.Fatal(err)
	}
	if n := <-got; n != 1000 || !resp.Success {
		t.Fatalf("raft read %d bytes, success %v; want 1000, true", n, resp.Success)
	}
}
