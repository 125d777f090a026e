package transport

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/hashicorp/raft"

	"github.com/heartbeat-sidecar/heartbeat/proto/raftpb"
)

// Conversions between hashicorp/raft's request and response structs and their protobuf
// mirrors. Byte slices are shared, not copied: a converted message must not be modified
// while the other side is still in use.
//
// The conversions of incoming requests (xReqFromProto) never wrap a value: a field that
// does not fit raft's type (a log type above 255, a protocol or snapshot version beyond
// int, a negative snapshot size) is an error, and so is a request that breaks raft's
// own order of terms (an entry, a previous entry or a last log entry with a term above
// the request's), which only a forged request can carry. Terms themselves are checked
// against the node's term by the server (see Transport.checkTerm).

// errMalformed is wrapped by the conversion errors of incoming requests.
var errMalformed = errors.New("malformed request")

// knownFields lists, per raft struct, the fields the converters below carry. The tests
// compare it with raft's structs by reflection, so a raft upgrade that adds a field
// fails them until the proto and these converters carry it.
var knownFields = map[string][]string{
	"RPCHeader":               {"ProtocolVersion", "ID", "Addr"},
	"Log":                     {"Index", "Term", "Type", "Data", "Extensions", "AppendedAt"},
	"AppendEntriesRequest":    {"RPCHeader", "Term", "Leader", "PrevLogEntry", "PrevLogTerm", "Entries", "LeaderCommitIndex"},
	"AppendEntriesResponse":   {"RPCHeader", "Term", "LastLog", "Success", "NoRetryBackoff"},
	"RequestVoteRequest":      {"RPCHeader", "Term", "Candidate", "LastLogIndex", "LastLogTerm", "LeadershipTransfer"},
	"RequestVoteResponse":     {"RPCHeader", "Term", "Peers", "Granted"},
	"RequestPreVoteRequest":   {"RPCHeader", "Term", "LastLogIndex", "LastLogTerm"},
	"RequestPreVoteResponse":  {"RPCHeader", "Term", "Granted"},
	"TimeoutNowRequest":       {"RPCHeader"},
	"TimeoutNowResponse":      {"RPCHeader"},
	"InstallSnapshotRequest":  {"RPCHeader", "SnapshotVersion", "Term", "Leader", "LastLogIndex", "LastLogTerm", "Peers", "Configuration", "ConfigurationIndex", "Size"},
	"InstallSnapshotResponse": {"RPCHeader", "Term", "Success"},
}

func headerToProto(h raft.RPCHeader) *raftpb.RPCHeader {
	return &raftpb.RPCHeader{ProtocolVersion: int64(h.ProtocolVersion), Id: h.ID, Addr: h.Addr}
}

// headerIntoProto overwrites every field of p with h's.
func headerIntoProto(h raft.RPCHeader, p *raftpb.RPCHeader) {
	p.ProtocolVersion = int64(h.ProtocolVersion)
	p.Id = h.ID
	p.Addr = h.Addr
}

func headerFromProto(h *raftpb.RPCHeader) raft.RPCHeader {
	if h == nil {
		return raft.RPCHeader{}
	}
	return raft.RPCHeader{ProtocolVersion: raft.ProtocolVersion(h.ProtocolVersion), ID: h.Id, Addr: h.Addr}
}

// checkedHeaderFromProto is headerFromProto for an incoming request: a protocol
// version that does not fit raft's type is an error.
func checkedHeaderFromProto(h *raftpb.RPCHeader) (raft.RPCHeader, error) {
	if v := h.GetProtocolVersion(); !fitsInt(v) {
		return raft.RPCHeader{}, fmt.Errorf("%w: protocol version %d out of range", errMalformed, v)
	}
	return headerFromProto(h), nil
}

// fitsInt reports whether v converts to int unchanged (always on 64-bit platforms).
func fitsInt(v int64) bool { return int64(int(v)) == v }

// checkTermOrder refuses a term (of an entry, of the previous or last log entry)
// above the request's own term.
func checkTermOrder(what string, got, term uint64) error {
	if got > term {
		return fmt.Errorf("%w: %s term %d is above the request's term %d", errMalformed, what, got, term)
	}
	return nil
}

func logToProto(l *raft.Log) *raftpb.Log {
	p := &raftpb.Log{Index: l.Index, Term: l.Term, Type: uint32(l.Type), Data: l.Data, Extensions: l.Extensions}
	if !l.AppendedAt.IsZero() {
		p.AppendedAtSet = true
		p.AppendedAtUnixNano = l.AppendedAt.UnixNano()
	}
	return p
}

func logFromProto(p *raftpb.Log) (*raft.Log, error) {
	if p.Type > math.MaxUint8 {
		return nil, fmt.Errorf("%w: log type %d out of range", errMalformed, p.Type)
	}
	l := &raft.Log{Index: p.Index, Term: p.Term, Type: raft.LogType(p.Type), Data: p.Data, Extensions: p.Extensions}
	if p.AppendedAtSet {
		l.AppendedAt = time.Unix(0, p.AppendedAtUnixNano)
	}
	return l, nil
}

func appendReqToProto(r *raft.AppendEntriesRequest) *raftpb.AppendEntriesRequest {
	p := &raftpb.AppendEntriesRequest{}
	appendReqIntoProto(r, p, &raftpb.RPCHeader{})
	return p
}

// appendReqIntoProto overwrites every field of p (and of hdr, which becomes p's
// header) with r's, so one message can be reused for request after request.
func appendReqIntoProto(r *raft.AppendEntriesRequest, p *raftpb.AppendEntriesRequest, hdr *raftpb.RPCHeader) {
	headerIntoProto(r.RPCHeader, hdr)
	p.Header = hdr
	p.Term = r.Term
	p.Leader = r.Leader
	p.PrevLogEntry = r.PrevLogEntry
	p.PrevLogTerm = r.PrevLogTerm
	p.LeaderCommitIndex = r.LeaderCommitIndex
	p.Entries = nil
	if len(r.Entries) > 0 {
		p.Entries = make([]*raftpb.Log, len(r.Entries))
		for i, e := range r.Entries {
			p.Entries[i] = logToProto(e)
		}
	}
}

func appendReqFromProto(p *raftpb.AppendEntriesRequest) (*raft.AppendEntriesRequest, error) {
	hdr, err := checkedHeaderFromProto(p.Header)
	if err != nil {
		return nil, err
	}
	if err := checkTermOrder("previous entry", p.PrevLogTerm, p.Term); err != nil {
		return nil, err
	}
	r := &raft.AppendEntriesRequest{
		RPCHeader:         hdr,
		Term:              p.Term,
		Leader:            p.Leader,
		PrevLogEntry:      p.PrevLogEntry,
		PrevLogTerm:       p.PrevLogTerm,
		LeaderCommitIndex: p.LeaderCommitIndex,
	}
	if len(p.Entries) > 0 {
		r.Entries = make([]*raft.Log, len(p.Entries))
		for i, e := range p.Entries {
			if err := checkTermOrder("entry", e.Term, p.Term); err != nil {
				return nil, err
			}
			if r.Entries[i], err = logFromProto(e); err != nil {
				return nil, err
			}
		}
	}
	return r, nil
}

func appendRespToProto(r *raft.AppendEntriesResponse) *raftpb.AppendEntriesResponse {
	p := &raftpb.AppendEntriesResponse{}
	appendRespIntoProto(r, p, &raftpb.RPCHeader{})
	return p
}

// appendRespIntoProto overwrites every field of p (and of hdr, which becomes p's
// header) with r's; p.Error is cleared.
func appendRespIntoProto(r *raft.AppendEntriesResponse, p *raftpb.AppendEntriesResponse, hdr *raftpb.RPCHeader) {
	headerIntoProto(r.RPCHeader, hdr)
	p.Header = hdr
	p.Term = r.Term
	p.LastLog = r.LastLog
	p.Success = r.Success
	p.NoRetryBackoff = r.NoRetryBackoff
	p.Error = ""
}

func appendRespFromProto(p *raftpb.AppendEntriesResponse, r *raft.AppendEntriesResponse) {
	*r = raft.AppendEntriesResponse{
		RPCHeader:      headerFromProto(p.Header),
		Term:           p.Term,
		LastLog:        p.LastLog,
		Success:        p.Success,
		NoRetryBackoff: p.NoRetryBackoff,
	}
}

func voteReqToProto(r *raft.RequestVoteRequest) *raftpb.RequestVoteRequest {
	return &raftpb.RequestVoteRequest{
		Header:             headerToProto(r.RPCHeader),
		Term:               r.Term,
		Candidate:          r.Candidate,
		LastLogIndex:       r.LastLogIndex,
		LastLogTerm:        r.LastLogTerm,
		LeadershipTransfer: r.LeadershipTransfer,
	}
}

func voteReqFromProto(p *raftpb.RequestVoteRequest) (*raft.RequestVoteRequest, error) {
	hdr, err := checkedHeaderFromProto(p.Header)
	if err != nil {
		return nil, err
	}
	if err := checkTermOrder("last log", p.LastLogTerm, p.Term); err != nil {
		return nil, err
	}
	return &raft.RequestVoteRequest{
		RPCHeader:          hdr,
		Term:               p.Term,
		Candidate:          p.Candidate,
		LastLogIndex:       p.LastLogIndex,
		LastLogTerm:        p.LastLogTerm,
		LeadershipTransfer: p.LeadershipTransfer,
	}, nil
}

func voteRespToProto(r *raft.RequestVoteResponse) *raftpb.RequestVoteResponse {
	return &raftpb.RequestVoteResponse{Header: headerToProto(r.RPCHeader), Term: r.Term, Peers: r.Peers, Granted: r.Granted}
}

func voteRespFromProto(p *raftpb.RequestVoteResponse, r *raft.RequestVoteResponse) {
	*r = raft.RequestVoteResponse{RPCHeader: headerFromProto(p.Header), Term: p.Term, Peers: p.Peers, Granted: p.Granted}
}

func preVoteReqToProto(r *raft.RequestPreVoteRequest) *raftpb.RequestPreVoteRequest {
	return &raftpb.RequestPreVoteRequest{
		Header:       headerToProto(r.RPCHeader),
		Term:         r.Term,
		LastLogIndex: r.LastLogIndex,
		LastLogTerm:  r.LastLogTerm,
	}
}

func preVoteReqFromProto(p *raftpb.RequestPreVoteRequest) (*raft.RequestPreVoteRequest, error) {
	hdr, err := checkedHeaderFromProto(p.Header)
	if err != nil {
		return nil, err
	}
	if err := checkTermOrder("last log", p.LastLogTerm, p.Term); err != nil {
		return nil, err
	}
	return &raft.RequestPreVoteRequest{
		RPCHeader:    hdr,
		Term:         p.Term,
		LastLogIndex: p.LastLogIndex,
		LastLogTerm:  p.LastLogTerm,
	}, nil
}

func preVoteRespToProto(r *raft.RequestPreVoteResponse) *raftpb.RequestPreVoteResponse {
	return &raftpb.RequestPreVoteResponse{Header: headerToProto(r.RPCHeader), Term: r.Term, Granted: r.Granted}
}

func preVoteRespFromProto(p *raftpb.RequestPreVoteResponse, r *raft.RequestPreVoteResponse) {
	*r = raft.RequestPreVoteResponse{RPCHeader: headerFromProto(p.Header), Term: p.Term, Granted: p.Granted}
}

func timeoutNowReqToProto(r *raft.TimeoutNowRequest) *raftpb.TimeoutNowRequest {
	return &raftpb.TimeoutNowRequest{Header: headerToProto(r.RPCHeader)}
}

func timeoutNowReqFromProto(p *raftpb.TimeoutNowRequest) (*raft.TimeoutNowRequest, error) {
	hdr, err := checkedHeaderFromProto(p.Header)
	if err != nil {
		return nil, err
	}
	return &raft.TimeoutNowRequest{RPCHeader: hdr}, nil
}

func timeoutNowRespToProto(r *raft.TimeoutNowResponse) *raftpb.TimeoutNowResponse {
	return &raftpb.TimeoutNowResponse{Header: headerToProto(r.RPCHeader)}
}

func timeoutNowRespFromProto(p *raftpb.TimeoutNowResponse, r *raft.TimeoutNowResponse) {
	*r = raft.TimeoutNowResponse{RPCHeader: headerFromProto(p.Header)}
}

func snapReqToProto(r *raft.InstallSnapshotRequest) *raftpb.InstallSnapshotRequest {
	return &raftpb.InstallSnapshotRequest{
		Header:             headerToProto(r.RPCHeader),
		SnapshotVersion:    int64(r.SnapshotVersion),
		Term:               r.Term,
		Leader:             r.Leader,
		LastLogIndex:       r.LastLogIndex,
		LastLogTerm:        r.LastLogTerm,
		Peers:              r.Peers,
		Configuration:      r.Configuration,
		ConfigurationIndex: r.ConfigurationIndex,
		Size:               r.Size,
	}
}

func snapReqFromProto(p *raftpb.InstallSnapshotRequest) (*raft.InstallSnapshotRequest, error) {
	hdr, err := checkedHeaderFromProto(p.Header)
	switch {
	case err != nil:
		return nil, err
	case !fitsInt(p.SnapshotVersion):
		return nil, fmt.Errorf("%w: snapshot version %d out of range", errMalformed, p.SnapshotVersion)
	case p.Size < 0:
		return nil, fmt.Errorf("%w: negative snapshot size %d", errMalformed, p.Size)
	}
	if err := checkTermOrder("last log", p.LastLogTerm, p.Term); err != nil {
		return nil, err
	}
	return &raft.InstallSnapshotRequest{
		RPCHeader:          hdr,
		SnapshotVersion:    raft.SnapshotVersion(p.SnapshotVersion),
		Term:               p.Term,
		Leader:             p.Leader,
		LastLogIndex:       p.LastLogIndex,
		LastLogTerm:        p.LastLogTerm,
		Peers:              p.Peers,
		Configuration:      p.Configuration,
		ConfigurationIndex: p.ConfigurationIndex,
		Size:               p.Size,
	}, nil
}

func snapRespToProto(r *raft.InstallSnapshotResponse) *raftpb.InstallSnapshotResponse {
	return &raftpb.InstallSnapshotResponse{Header: headerToProto(r.RPCHeader), Term: r.Term, Success: r.Success}
}

func snapRespFromProto(p *raftpb.InstallSnapshotResponse, r *raft.InstallSnapshotResponse) {
	*r = raft.InstallSnapshotResponse{RPCHeader: headerFromProto(p.Header), Term: p.Term, Success: p.Success}
}

// IsHeartbeat reports whether req is one of raft's heartbeats, by the rule raft's own
// NetworkTransport uses: a term and a leader address, and nothing else (no entries, no
// previous entry, no commit index). Heartbeats take the fast path.
func IsHeartbeat(req *raft.AppendEntriesRequest) bool {
	leaderAddr := req.Addr
	if len(leaderAddr) == 0 {
		leaderAddr = req.Leader
	}
	return req.Term != 0 && leaderAddr != nil &&
		req.PrevLogEntry == 0 && req.PrevLogTerm == 0 &&
		len(req.Entries) == 0 && req.LeaderCommitIndex == 0
}
