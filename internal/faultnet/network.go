package faultnet

import (
	"errors"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Sentinel errors of calls that a fault stopped. They are wrapped with the link.
var (
	// ErrLinkDown: the request never reached the target (cut, isolated or dropped); the
	// call failed when its deadline passed.
	ErrLinkDown = errors.New("faultnet: request lost")
	// ErrReplyLost: the request was delivered and handled but its reply was lost (the
	// reverse direction is cut or dropped); the call failed when its deadline passed.
	ErrReplyLost = errors.New("faultnet: reply lost")
	// ErrDeadline: delays pushed the call past its deadline.
	ErrDeadline = errors.New("faultnet: deadline exceeded under delay")
)

// link is one direction between two addresses.
type link struct{ from, to raft.ServerAddress }

// Network holds the faults applied to every transport it wraps: per directed pair of
// addresses a cut, a delay and a drop probability, plus isolated addresses (cut both
// ways from everyone). Faults act on the sender's side: wrap every node's transport
// with the same Network. Safe for concurrent use; changes apply to calls that start
// afterwards (and to held streams, see Transport.Hold).
type Network struct {
	mu       sync.Mutex
	cuts     map[link]bool
	isolated map[raft.ServerAddress]bool
	delays   map[link]time.Duration
	drops    map[link]float64
	rng      *rand.Rand
}

// New returns a Network without faults.
func New() *Network {
	return &Network{
		cuts:     make(map[link]bool),
		isolated: make(map[raft.ServerAddress]bool),
		delays:   make(map[link]time.Duration),
		drops:    make(map[link]float64),
		rng:      rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x9e3779b97f4a7c15)),
	}
}

// Cut makes requests from → to vanish: such a call blocks until its deadline and
// fails with ErrLinkDown. The reverse direction is untouched: a call to → from is
// delivered, and its reply lost (ErrReplyLost).
func (n *Network) Cut(from, to raft.ServerAddress) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cuts[link{from, to}] = true
}

// Isolate cuts addr off from everyone, both directions.
func (n *Network) Isolate(addr raft.ServerAddress) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.isolated[addr] = true
}

// Heal removes every fault that involves addr: its isolation, and cuts, delays and
// drops from or to it.
func (n *Network) Heal(addr raft.ServerAddress) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.isolated, addr)
	for l := range n.cuts {
		if l.from == addr || l.to == addr {
			delete(n.cuts, l)
		}
	}
	for l := range n.delays {
		if l.from == addr || l.to == addr {
			delete(n.delays, l)
		}
	}
	for l := range n.drops {
		if l.from == addr || l.to == addr {
			delete(n.drops, l)
		}
	}
}

// HealAll removes every fault.
func (n *Network) HealAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.isolated)
	clear(n.cuts)
	clear(n.delays)
	clear(n.drops)
}

// Delay holds every message from → to for d before it goes on (requests from → to and
// replies to calls made by to). 0 removes the delay. A delay that pushes a call past
// its deadline fails it with ErrDeadline.
func (n *Network) Delay(from, to raft.ServerAddress, d time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if d <= 0 {
		delete(n.delays, link{from, to})
		return
	}
	n.delays[link{from, to}] = d
}

// Drop loses each message from → to with probability p (0 removes it, 1 is like Cut
// for requests and replies, but held streams stay up). A lost message behaves like a
// cut one: the call blocks until its deadline.
func (n *Network) Drop(from, to raft.ServerAddress, p float64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if p <= 0 {
		delete(n.drops, link{from, to})
		return
	}
	n.drops[link{from, to}] = min(p, 1)
}

func (n *Network) cutLocked(from, to raft.ServerAddress) bool {
	return n.cuts[link{from, to}] || n.isolated[from] || n.isolated[to]
}

// down reports whether a connection between a and b would fail: either direction cut.
func (n *Network) down(a, b raft.ServerAddress) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cutLocked(a, b) || n.cutLocked(b, a)
}

// fate decides what happens to one message from → to: lost (cut, or dropped by
// chance), and otherwise how long it is delayed.
func (n *Network) fate(from, to raft.ServerAddress) (lost bool, delay time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	l := link{from, to}
	if n.cutLocked(from, to) {
		return true, 0
	}
	if p := n.drops[l]; p > 0 && n.rng.Float64() < p {
		return true, 0
	}
	return false, n.delays[l]
}
