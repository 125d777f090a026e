package election

import (
	"context"
	"time"

	"github.com/hashicorp/raft"
)

// Transport is what the node needs from the peer transport: a complete
// raft.Transport with pre-vote, plus the crash-detection calls of the held
// stream (see rpc/transport). It is declared here so that election imports no
// transport implementation; *transport.Transport and the faultnet wrapper
// satisfy it.
//
// The node never calls Close: raft would close a transport that implements
// raft.WithClose when it shuts down, so the node hands raft a view of the
// transport without Close. The transport's owner closes it after the node.
type Transport interface {
	raft.Transport
	raft.WithPreVote
	raft.WithClose

	// Hold opens a held stream to target and blocks until it breaks or ctx
	// ends: nil when ctx ended, the transport's goodbye error when target
	// left gracefully, its peer-closed error when the stream broke, any other
	// error when the stream could not be opened.
	Hold(ctx context.Context, target raft.ServerAddress) error
	// Reachable dials a fresh connection to target within ctx; nil only if
	// a live server answered on it (a dying process's listener can still
	// accept a TCP connection).
	Reachable(ctx context.Context, target raft.ServerAddress) error
	// ConfirmLost asks member via whether it has lost target too.
	ConfirmLost(ctx context.Context, via, target raft.ServerAddress) (bool, error)
	// TimeoutNowSelf hands this node's own raft a TimeoutNow: it stands for
	// election at once, skipping pre-vote.
	TimeoutNowSelf(ctx context.Context) error
	// Goodbye tells every peer holding a stream to this node that it is
	// leaving gracefully.
	Goodbye()
	// LastTimeoutNow returns when this node last received a TimeoutNow (a
	// hand-off from the leader, or its own fast failover); zero if never. A
	// leader elected soon after one holds off its claim (see claimHoldoff).
	LastTimeoutNow() time.Time
}

// Ack is the part of the transport's per-peer acknowledgement record that the
// node needs: the send time of the latest AppendEntries or heartbeat to the
// peer whose reply carried the request's term, and that term (the lease);
// when that reply came back and the peer's last log index it gave (whether
// the peer answers and has caught up: learner promotion and the quorum
// guard of configuration changes, promote.go).
//
// The transport declares its own Ack type; Config.Acks converts (election
// cannot name the transport's type without importing it).
type Ack struct {
	SentAt    time.Time
	RepliedAt time.Time
	Term      uint64
	LastLog   uint64
}

// raftTransport is the view of the Transport given to raft: everything raft
// uses (including pre-vote) but not Close, so that raft.Shutdown leaves the
// transport open for its owner to close.
//
// It is also the storage alarm's election guard: while mayStand says no, it
// answers this node's own vote and pre-vote requests itself with a refusal
// in the request's term and sends nothing, so raft never wins a pre-vote and
// never raises its term on its own (see "Storage faults" in doc.go).
type raftTransport struct {
	raft.Transport
	raft.WithPreVote
	mayStand func() bool // nil: always
}

// RequestVote implements raft.Transport; refused locally while the node
// may not stand.
func (t raftTransport) RequestVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	if t.mayStand != nil && !t.mayStand() {
		*resp = raft.RequestVoteResponse{RPCHeader: args.RPCHeader, Term: args.Term, Granted: false}
		return nil
	}
	return t.Transport.RequestVote(id, target, args, resp)
}

// RequestPreVote implements raft.WithPreVote; refused locally while the
// node may not stand.
func (t raftTransport) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	if t.mayStand != nil && !t.mayStand() {
		*resp = raft.RequestPreVoteResponse{RPCHeader: args.RPCHeader, Term: args.Term, Granted: false}
		return nil
	}
	return t.WithPreVote.RequestPreVote(id, target, args, resp)
}

var (
	_ raft.Transport   = raftTransport{}
	_ raft.WithPreVote = raftTransport{}
)
