package membership

import (
	"fmt"
	"math"
	"time"
)

// DetectorConfig tunes the phi-accrual failure detector. See doc.go for the
// detection-time / false-positive trade-off.
type DetectorConfig struct {
	// WindowSize is the number of recent inter-arrival intervals kept per
	// peer. Larger: steadier estimates, slower to adapt. Default 100.
	WindowSize int
	// MinStdDev floors the standard deviation of the intervals, so a peer
	// with perfectly regular heartbeats is not suspected after a few
	// milliseconds of jitter. Larger: fewer false suspicions, slower
	// detection. Default 25 ms.
	MinStdDev time.Duration
	// AcceptablePause is added to the mean interval: a pause this long costs
	// no phi at all. Default 0 (MinTimeout already gives a floor).
	AcceptablePause time.Duration
	// FirstHeartbeatEstimate is the interval assumed before a peer has any
	// history (a fresh leader, a peer that just came back). Set it near the
	// real reply interval: a peer whose replies are much further apart than
	// the dead threshold computed from it never builds a history. Default
	// 100 ms.
	FirstHeartbeatEstimate time.Duration
	// MinTimeout: a peer is never suspected before this long without a
	// reply, whatever phi says. Default 150 ms.
	MinTimeout time.Duration
	// MinDeadTimeout: a peer is never declared dead before this long without
	// a reply. A pause (GC, busy core, brief partition) shorter than it never
	// kills a member. Default 300 ms.
	MinDeadTimeout time.Duration
	// SuspectPhi: phi at or above it makes a peer suspect. Default 8 (about
	// one false suspicion in 10^8 intervals if intervals were normal).
	SuspectPhi float64
	// DeadPhi: phi at or above it (and MinDeadTimeout elapsed) makes a peer
	// dead. Default 16.
	DeadPhi float64
}

// DefaultDetectorConfig returns the default detector tuning, meant for raft
// heartbeats every ~10-100 ms observed by a 50 ms reconciler tick.
func DefaultDetectorConfig() DetectorConfig {
	return DetectorConfig{
		WindowSize:             100,
		MinStdDev:              25 * time.Millisecond,
		FirstHeartbeatEstimate: 100 * time.Millisecond,
		MinTimeout:             150 * time.Millisecond,
		MinDeadTimeout:         300 * time.Millisecond,
		SuspectPhi:             8,
		DeadPhi:                16,
	}
}

// Validate checks the configuration.
func (c DetectorConfig) Validate() error {
	switch {
	case c.WindowSize < 2:
		return fmt.Errorf("%w: WindowSize %d < 2", ErrInvalidConfig, c.WindowSize)
	case c.MinStdDev <= 0:
		return fmt.Errorf("%w: MinStdDev must be positive", ErrInvalidConfig)
	case c.AcceptablePause < 0:
		return fmt.Errorf("%w: AcceptablePause < 0", ErrInvalidConfig)
	case c.FirstHeartbeatEstimate <= 0:
		return fmt.Errorf("%w: FirstHeartbeatEstimate must be positive", ErrInvalidConfig)
	case c.MinTimeout <= 0 || c.MinDeadTimeout < c.MinTimeout:
		return fmt.Errorf("%w: want 0 < MinTimeout (%v) <= MinDeadTimeout (%v)", ErrInvalidConfig, c.MinTimeout, c.MinDeadTimeout)
	case !(c.SuspectPhi > 0) || c.DeadPhi < c.SuspectPhi:
		return fmt.Errorf("%w: want 0 < SuspectPhi (%v) <= DeadPhi (%v)", ErrInvalidConfig, c.SuspectPhi, c.DeadPhi)
	}
	return nil
}

// Verdict is the detector's opinion of a peer.
type Verdict uint8

// Verdicts.
const (
	VerdictUnknown Verdict = iota // never seen
	VerdictAlive
	VerdictSuspect
	VerdictDead
)

// String names the verdict.
func (v Verdict) String() string {
	return [...]string{"unknown", "alive", "suspect", "dead"}[min(int(v), 3)]
}

type peerHistory struct {
	intervals []float64 // ring of seconds
	next      int
	n         int
	sum, sq   float64
	last      time.Time // latest arrival (or seed), moved by Forgive
	lastReply time.Time // latest real reply as observed; zero if none
}

func (p *peerHistory) add(x float64) {
	if p.n == len(p.intervals) {
		old := p.intervals[p.next]
		p.sum -= old
		p.sq -= old * old
	} else {
		p.n++
	}
	p.intervals[p.next] = x
	p.next = (p.next + 1) % len(p.intervals)
	p.sum += x
	p.sq += x * x
}

// Detector is a phi-accrual failure detector over named peers (Hayashibara et
// al., as in Cassandra and Akka). It is pure: every method takes the time, so
// tests drive it with a fake clock. Not safe for concurrent use; the
// Reconciler owns one.
type Detector struct {
	cfg   DetectorConfig
	peers map[string]*peerHistory
}

// NewDetector returns a detector with no peers.
func NewDetector(cfg DetectorConfig) (*Detector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Detector{cfg: cfg, peers: make(map[string]*peerHistory)}, nil
}

func (d *Detector) fresh(t time.Time) *peerHistory {
	p := &peerHistory{intervals: make([]float64, d.cfg.WindowSize), last: t}
	d.bootstrap(p)
	return p
}

// bootstrap seeds a history with two samples around FirstHeartbeatEstimate.
func (d *Detector) bootstrap(p *peerHistory) {
	p.n, p.next, p.sum, p.sq = 0, 0, 0, 0
	est := d.cfg.FirstHeartbeatEstimate.Seconds()
	p.add(est * 0.75)
	p.add(est * 1.25)
}

// Seed starts the clock for a peer not heard from yet, as if it had answered
// at t. It does nothing for a known peer.
func (d *Detector) Seed(peer string, t time.Time) {
	if _, ok := d.peers[peer]; !ok {
		d.peers[peer] = d.fresh(t)
	}
}

// Observe records a reply from peer that arrived at t. Replies not newer than
// the last one are ignored (false is returned). A gap long enough for a dead
// verdict resets the peer's history (to FirstHeartbeatEstimate) instead of
// becoming a sample, so one outage does not slow the next detection.
func (d *Detector) Observe(peer string, t time.Time) bool {
	p, ok := d.peers[peer]
	if !ok {
		p = d.fresh(t)
		p.lastReply = t
		d.peers[peer] = p
		return true
	}
	if !t.After(p.last) {
		if t.After(p.lastReply) {
			p.lastReply = t // within a forgiven gap: not a sample, still a reply
		}
		return false
	}
	if d.verdict(p, t) == VerdictDead {
		d.bootstrap(p) // an outage is not an interval: start afresh
	} else {
		p.add(t.Sub(p.last).Seconds())
	}
	p.last, p.lastReply = t, t
	return true
}

// LastReply is the arrival time of the latest real reply observed from peer
// (not a Seed, not moved by Forgive); false if there was none.
func (d *Detector) LastReply(peer string) (time.Time, bool) {
	p, ok := d.peers[peer]
	if !ok || p.lastReply.IsZero() {
		return time.Time{}, false
	}
	return p.lastReply, true
}

// Phi is the suspicion level of peer at now: -log10 of the probability that
// a live peer stays silent this long, given its interval history (normal
// distribution, logistic approximation). 0 for an unknown peer.
func (d *Detector) Phi(peer string, now time.Time) float64 {
	p, ok := d.peers[peer]
	if !ok {
		return 0
	}
	return d.phi(p, now)
}

func (d *Detector) phi(p *peerHistory, now time.Time) float64 {
	elapsed := now.Sub(p.last).Seconds()
	if elapsed <= 0 {
		return 0
	}
	n := float64(p.n)
	mean := p.sum / n
	variance := p.sq/n - mean*mean
	std := math.Max(math.Sqrt(math.Max(variance, 0)), d.cfg.MinStdDev.Seconds())
	mean += d.cfg.AcceptablePause.Seconds()
	y := (elapsed - mean) / std
	k := y * (1.5976 + 0.070566*y*y)
	if y > 0 {
		// -log10(e/(1+e)) with e = exp(-k), computed without underflow.
		return (k + math.Log1p(math.Exp(-k))) / math.Ln10
	}
	e := math.Exp(-k)
	return -math.Log10(1 - 1/(1+e))
}

// Verdict classifies peer at now: alive before MinTimeout of silence; dead at
// phi >= DeadPhi once MinDeadTimeout has passed; suspect at phi >=
// SuspectPhi; alive otherwise. VerdictUnknown for a peer never seeded or seen.
func (d *Detector) Verdict(peer string, now time.Time) Verdict {
	p, ok := d.peers[peer]
	if !ok {
		return VerdictUnknown
	}
	return d.verdict(p, now)
}

func (d *Detector) verdict(p *peerHistory, now time.Time) Verdict {
	elapsed := now.Sub(p.last)
	if elapsed < d.cfg.MinTimeout {
		return VerdictAlive
	}
	phi := d.phi(p, now)
	switch {
	case phi >= d.cfg.DeadPhi && elapsed >= d.cfg.MinDeadTimeout:
		return VerdictDead
	case phi >= d.cfg.SuspectPhi:
		return VerdictSuspect
	}
	return VerdictAlive
}

// Forgive moves every peer's last reply forward by gap: time during which the
// observer itself was stalled (a long GC pause, SIGSTOP, a starved core)
// must not count as the peers' silence.
func (d *Detector) Forgive(gap time.Duration) {
	for _, p := range d.peers {
		p.last = p.last.Add(gap)
	}
}

// Forget drops a peer's history.
func (d *Detector) Forget(peer string) { delete(d.peers, peer) }

// Reset drops every peer's history (on gaining leadership).
func (d *Detector) Reset() { clear(d.peers) }

// Peers returns the number of peers tracked.
func (d *Detector) Peers() int { return len(d.peers) }
