package client

import (
	"time"

	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// ReadInfo says how fresh a read's answer is (Status, Leader, Members,
// Resources, Assignments, and the first state of a watch).
type ReadInfo struct {
	// Revision of the membership state the answer reflects (at least).
	Revision uint64
	// Consistent: the answer reflects every write acknowledged before the
	// read began. False for a Stale read.
	Consistent bool
	// KnownLeader: the answering node knew a leader (LeaderID).
	KnownLeader bool
	LeaderID    string
	// LastContact is how long ago the answering node last heard from the
	// leader (0 on the leader itself); negative when it never has.
	LastContact time.Duration
}

func readInfoFromPB(p *heartbeatpb.ReadInfo) ReadInfo {
	if p == nil {
		return ReadInfo{LastContact: -1}
	}
	lc := time.Duration(-1)
	if d := p.GetSinceLeaderContact(); d != nil {
		lc = d.AsDuration()
	}
	return ReadInfo{Revision: p.GetRevision(), Consistent: p.GetConsistent(), KnownLeader: p.GetKnownLeader(),
		LeaderID: p.GetLeaderNodeId(), LastContact: lc}
}

// ReadOption sets how a read is made.
type ReadOption func(*readOpts)

type readOpts struct {
	stale bool
	info  *ReadInfo
}

// Stale asks for a stale read: the answering node answers from its own
// state at once, without first catching up with the leader. Without it a
// read is consistent: it reflects every write acknowledged before it began,
// or fails with Unavailable (no leader, the node cannot catch up in time),
// and the client retries it elsewhere until ctx ends.
func Stale() ReadOption { return func(o *readOpts) { o.stale = true } }

// WithReadInfo stores how fresh the answer was in dst (like grpc.Header):
// for calls whose result has no room for it (Members).
func WithReadInfo(dst *ReadInfo) ReadOption { return func(o *readOpts) { o.info = dst } }

func readOptions(opts []ReadOption) readOpts {
	var o readOpts
	for _, f := range opts {
		f(&o)
	}
	return o
}

// consistency is the wire value of the options.
func (o readOpts) consistency() heartbeatpb.Consistency {
	if o.stale {
		return heartbeatpb.Consistency_CONSISTENCY_STALE
	}
	return heartbeatpb.Consistency_CONSISTENCY_CONSISTENT
}

// got records an answer's ReadInfo where WithReadInfo asked for it.
func (o readOpts) got(p *heartbeatpb.ReadInfo) ReadInfo {
	ri := readInfoFromPB(p)
	if o.info != nil {
		*o.info = ri
	}
	return ri
}
