package transport

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/pki"
)

// Checks of incoming calls made before raft sees them: a peer port is reachable by
// anyone on the network, and raft trusts what its RPCs carry.

// Reasons of heartbeat_transport_rejected_total.
const (
	rejectTerm      = "term"
	rejectMalformed = "malformed"
	rejectConfirm   = "confirm"
	rejectIdentity  = "identity"
	rejectHold      = "hold"
)

// checkIdentity, with TLS, refuses a call whose node-id metadata names
// another node than the caller's certificate (the handshake already made
// sure the caller is a node of this cluster).
func (t *Transport) checkIdentity(ctx context.Context) error {
	if t.cfg.ServerTLS == nil {
		return nil
	}
	id, ok := pki.IdentityFromContext(ctx)
	if !ok || id.Kind != pki.KindNode {
		return t.reject(ctx, rejectIdentity, codes.PermissionDenied, "the caller presented no node certificate")
	}
	md, _ := metadata.FromIncomingContext(ctx)
	if ids := md.Get(MetadataNodeID); len(ids) > 0 && ids[0] != id.Name {
		return t.reject(ctx, rejectIdentity, codes.PermissionDenied,
			"the call says it comes from node %q, its certificate is node %q's", ids[0], id.Name)
	}
	return nil
}

// checkHeader, with TLS, refuses a raft RPC whose header names another node
// than the caller's certificate: raft believes the header's ID (votes,
// leader ids, TimeoutNow).
func (t *Transport) checkHeader(ctx context.Context, rpc string, h raft.RPCHeader) error {
	if t.cfg.ServerTLS == nil {
		return nil
	}
	id, ok := pki.IdentityFromContext(ctx)
	if !ok || string(h.ID) != id.Name {
		return t.reject(ctx, rejectIdentity, codes.PermissionDenied,
			"%s: the header names node %q, the caller's certificate %q", rpc, h.ID, id.Name)
	}
	if t.cfg.AddressOf != nil {
		if want, member := t.cfg.AddressOf(raft.ServerID(h.ID)); member && want != raft.ServerAddress(h.Addr) {
			return t.reject(ctx, rejectIdentity, codes.PermissionDenied,
				"%s: node %q gives address %q, its address in the configuration is %q", rpc, h.ID, h.Addr, want)
		}
	}
	return nil
}

// rejectLogEvery limits the warning about refused calls to one per reason and caller
// per interval.
const rejectLogEvery = time.Minute

// checkTerm refuses an incoming raft RPC whose term is above MaxTerm or more than
// Config.MaxTermAhead beyond the node's current term (see Config.MaxTermAhead): raft
// would adopt it, and a term near 2^64 wraps to 0 at the next election.
func (t *Transport) checkTerm(ctx context.Context, rpc string, term uint64) error {
	var cur uint64
	if t.cfg.CurrentTerm != nil {
		cur = t.cfg.CurrentTerm()
	}
	switch {
	case term > MaxTerm:
		return t.reject(ctx, rejectTerm, codes.InvalidArgument,
			"%s: term %d is above the highest accepted, %d", rpc, term, uint64(MaxTerm))
	case t.cfg.CurrentTerm != nil && term > cur && term-cur > t.cfg.MaxTermAhead:
		return t.reject(ctx, rejectTerm, codes.InvalidArgument,
			"%s: term %d is %d beyond this node's term %d (at most %d accepted)", rpc, term, term-cur, cur, t.cfg.MaxTermAhead)
	}
	return nil
}

// checkMalformed refuses a request the converters found out of range.
func (t *Transport) checkMalformed(ctx context.Context, rpc string, err error) error {
	if err == nil {
		return nil
	}
	return t.reject(ctx, rejectMalformed, codes.InvalidArgument, "%s: %v", rpc, err)
}

// checkConfirmTarget refuses a Confirm about an address that is not a server of the
// node's current raft configuration: Confirm dials its target, and an outsider must
// not make the node dial anywhere it likes.
func (t *Transport) checkConfirmTarget(ctx context.Context, target raft.ServerAddress) error {
	if t.cfg.IsMember == nil || t.cfg.IsMember(target) {
		return nil
	}
	return t.reject(ctx, rejectConfirm, codes.FailedPrecondition,
		"Confirm: %q is not a server of this node's raft configuration", target)
}

// reject counts a refused call, logs it (rate-limited per reason and caller) and
// returns the status error to answer it with.
func (t *Transport) reject(ctx context.Context, reason string, code codes.Code, format string, args ...any) error {
	t.metrics.rejected.WithLabelValues(reason).Inc()
	err := status.Errorf(code, format, args...)
	from := callerOf(ctx)
	if t.shouldWarn(reason + "\x00" + from) {
		t.logger.Warn("refused an incoming call (further ones from this caller for this reason are not logged for a while)",
			"reason", reason, "from", from, "error", err)
	}
	return err
}

// shouldWarn reports whether a warning under key is due (at most one per
// rejectLogEvery).
func (t *Transport) shouldWarn(key string) bool {
	t.warnMu.Lock()
	defer t.warnMu.Unlock()
	if t.warned == nil {
		t.warned = make(map[string]time.Time)
	}
	now := time.Now()
	if last, ok := t.warned[key]; ok && now.Sub(last) < rejectLogEvery {
		return false
	}
	if len(t.warned) > 1024 { // callers named by anyone: bound the map
		clear(t.warned)
	}
	t.warned[key] = now
	return true
}

// callerOf names the caller of an incoming call for logs: the node id it sent, and
// the address it called from.
func callerOf(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	id := "unknown node"
	if ids := md.Get(MetadataNodeID); len(ids) > 0 {
		id = fmt.Sprintf("node %q", ids[0])
	}
	return id
}
