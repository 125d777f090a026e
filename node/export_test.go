package node

import (
	"time"

	"github.com/hashicorp/raft"

	"github.com/heartbeat-sidecar/heartbeat/lifecycle"
)

// Exports of internals for the external tests (package node_test), which
// run clusters from internal/testcluster and so cannot be internal tests:
// testcluster imports node.

// NumOwned is the number of resources member id owns in n's view.
func NumOwned(n *Node, id string) int { return n.numOwned(id) }

// Stopped reports whether n has been closed or shut down.
func Stopped(n *Node) bool { return n.stopped.Load() }

// Leaving reports whether n's leave has begun.
func Leaving(n *Node) bool { return n.life.Leaving() }

// DataDir is n's configured data dir.
func DataDir(n *Node) string { return n.cfg.DataDir }

// LastContact is when the leader n last heard from the peer at addr.
func LastContact(n *Node, addr string) time.Time { return n.lastContact(addr) }

// LeftPath is the path of the left marker in dataDir.
func LeftPath(dataDir string) string { return lifecycle.MarkerPath(dataDir) }

// LeftPhase reads the left marker in dataDir: its phase, whether there is
// one, and any error reading it.
func LeftPhase(dataDir string) (string, bool, error) {
	m, found, err := lifecycle.ReadMarker(dataDir)
	return m.Phase, found, err
}

// PhaseRejoining is the left marker's phase while a node rejoins.
const PhaseRejoining = lifecycle.PhaseRejoining

// Holding reports whether n holds a stream to the peer at addr (fast
// crash failover).
func Holding(n *Node, addr string) bool {
	h, ok := n.tr.(interface{ Holding(raft.ServerAddress) bool })
	return ok && h.Holding(raft.ServerAddress(addr))
}
