package transport

import (
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the transport's Prometheus collectors.
type metrics struct {
	heartbeatRTT      *prometheus.HistogramVec
	rpcErrors         *prometheus.CounterVec
	snapshotBytesSent prometheus.Counter
	rejected          *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		heartbeatRTT: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "heartbeat",
			Subsystem: "transport",
			Name:      "heartbeat_rtt_seconds",
			Help:      "Round trip time of raft heartbeats acknowledged by a peer.",
			Buckets:   prometheus.ExponentialBuckets(50e-6, 2, 16), // 50µs .. ~1.6s
		}, []string{"peer"}),
		rpcErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "heartbeat",
			Subsystem: "transport",
			Name:      "rpc_errors_total",
			Help:      "Outgoing raft RPCs that failed, by rpc and peer address.",
		}, []string{"rpc", "peer"}),
		snapshotBytesSent: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "heartbeat",
			Subsystem: "transport",
			Name:      "snapshot_sent_bytes_total",
			Help:      "Snapshot bytes sent to peers with InstallSnapshot.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "heartbeat",
			Subsystem: "transport",
			Name:      "rejected_total",
			Help: "Incoming calls refused before raft saw them, by reason: term (beyond MaxTermAhead or MaxTerm), " +
				"malformed (a field out of range), confirm (Confirm naming a non-member).",
		}, []string{"reason"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.heartbeatRTT, m.rpcErrors, m.snapshotBytesSent, m.rejected} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("transport: register metrics: %w", err)
			}
		}
	}
	return m, nil
}

// Ack is what the transport knows about the latest acknowledged AppendEntries or
// heartbeat to one peer: one whose response came back with resp.Term == req.Term.
type Ack struct {
	// SentAt is when the request was sent (taken before it left this node).
	SentAt time.Time
	// RepliedAt is when its response arrived.
	RepliedAt time.Time
	// Term is the term of the request (and of the response).
	Term uint64
	// RTT is RepliedAt - SentAt.
	RTT time.Duration
	// LastLog is the peer's last log index as its response gave it (taken
	// before it appended the request's entries): how far it has caught up.
	LastLog uint64
}

// ackTable records the latest Ack per peer address. Safe for concurrent use.
type ackTable struct {
	mu   sync.Mutex
	acks map[raft.ServerAddress]Ack
}

// record notes an acknowledged request to target if it was sent no earlier than the
// one recorded (pipelined responses and heartbeats may complete out of send order).
func (a *ackTable) record(target raft.ServerAddress, sentAt, repliedAt time.Time, term, lastLog uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.acks == nil {
		a.acks = make(map[raft.ServerAddress]Ack)
	}
	if prev, ok := a.acks[target]; ok && sentAt.Before(prev.SentAt) {
		return
	}
	a.acks[target] = Ack{SentAt: sentAt, RepliedAt: repliedAt, Term: term, RTT: repliedAt.Sub(sentAt), LastLog: lastLog}
}

// snapshot returns a copy of the table.
func (a *ackTable) snapshot() map[raft.ServerAddress]Ack {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[raft.ServerAddress]Ack, len(a.acks))
	for k, v := range a.acks {
		out[k] = v
	}
	return out
}
