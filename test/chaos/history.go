package chaos

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"
)

// Role is a node's role as the recorder saw it.
type Role string

// Roles. RoleDown means the node refused the connection (process gone);
// RoleUnreachable means the request timed out (paused, partitioned from the
// host, or overloaded). Neither is reported by the node itself.
const (
	RoleLeader      Role = "leader"
	RoleFollower    Role = "follower"
	RoleCandidate   Role = "candidate"
	RoleShutdown    Role = "shutdown"
	RoleDown        Role = "down"
	RoleUnreachable Role = "unreachable"
)

// Source says where an observation came from.
type Source string

// Sources of observations.
const (
	SourceStatus Source = "status" // a poll of GET /v1/status
	SourceWatch  Source = "watch"  // a message on the WatchLeader stream
)

// Event is one observation of one node, run-length encoded: identical
// consecutive observations from the same node and source extend Until instead
// of adding an event. At and Until are host monotonic time since the History
// began, taken when the answer arrived.
type Event struct {
	At     time.Duration `json:"at"`
	Until  time.Duration `json:"until"`
	Node   string        `json:"node"`
	Source Source        `json:"source"`
	// Latency is the round trip of the first status poll of this event; the
	// node's state held at some instant in [At-Latency, At].
	Latency     time.Duration `json:"latency,omitempty"`
	Role        Role          `json:"role,omitempty"`
	Term        uint64        `json:"term,omitempty"`
	Leader      string        `json:"leader,omitempty"`
	Token       uint64        `json:"token,omitempty"`
	IsSelf      bool          `json:"is_self,omitempty"`
	CommitIndex uint64        `json:"commit_index,omitempty"`
	Err         string        `json:"err,omitempty"`
}

// same reports whether e and o describe the same state (times aside).
func (e Event) same(o Event) bool {
	return e.Node == o.Node && e.Source == o.Source && e.Role == o.Role && e.Term == o.Term &&
		e.Leader == o.Leader && e.Token == o.Token && e.IsSelf == o.IsSelf &&
		e.CommitIndex == o.CommitIndex && e.Err == o.Err
}

// Answered reports whether the node itself produced this observation (it is
// not a failed poll).
func (e Event) Answered() bool { return e.Role != RoleDown && e.Role != RoleUnreachable }

// Fault is one fault window opened by the suite.
type Fault struct {
	// Kind names the fault (kill, pause-long, partition-majority, ...).
	Kind string `json:"kind"`
	// Target is leader, follower, majority, all, ... (what was chosen).
	Target string `json:"target"`
	// Run numbers the repetitions of one Kind × Target, from 1.
	Run int `json:"run"`
	// Nodes are the nodes the fault was applied to.
	Nodes []string `json:"nodes"`
	// OldLeader, OldTerm and OldToken describe the leadership just before.
	OldLeader string `json:"old_leader,omitempty"`
	OldTerm   uint64 `json:"old_term,omitempty"`
	OldToken  uint64 `json:"old_token,omitempty"`
	// Start is just before the injection command ran; Injected just after it
	// returned; End when the suite began lifting the fault (healing,
	// unpausing, restarting); Settled when the cluster was seen stable again.
	Start    time.Duration `json:"start"`
	Injected time.Duration `json:"injected"`
	End      time.Duration `json:"end"`
	Settled  time.Duration `json:"settled"`
	// Restarted, for faults that restart nodes, is when every restarted
	// container ran again (docker start returned): failover after a restart
	// is measured from here, so the container runtime's start-up time (seconds
	// on a loaded machine) is not counted as Heartbeat's.
	Restarted time.Duration `json:"restarted,omitempty"`
	// Expect says what liveness the fault window must show: ExpectFailover,
	// ExpectStable or ExpectNothing.
	Expect Expect `json:"expect"`
	// Bound is the failover bound for ExpectFailover windows.
	Bound time.Duration `json:"bound,omitempty"`
	// Recovered is the raft commit index the suite must find again after the
	// fault (S4), 0 when not checked.
	Recovered uint64 `json:"recovered,omitempty"`
}

// Label is "kind/target#run".
func (f Fault) Label() string { return fmt.Sprintf("%s/%s#%d", f.Kind, f.Target, f.Run) }

// Expect is what a fault window must show, beyond the safety checks that
// apply everywhere.
type Expect string

// Expectations.
const (
	// ExpectFailover: every survivor names a new leader within Bound (L1).
	ExpectFailover Expect = "failover"
	// ExpectStable: no term change and no candidate anywhere (L2).
	ExpectStable Expect = "stable"
	// ExpectNothing: only the safety checks apply.
	ExpectNothing Expect = "none"
)

// History is everything observed during one run. It is safe for concurrent
// use; readers take a Snapshot.
type History struct {
	mu     sync.Mutex
	start  time.Time // monotonic reading at the start
	Began  time.Time // wall clock at the start (for the report)
	Nodes  []string
	events []Event
	last   map[string]int // node+source -> index of its latest event
	faults []Fault
	work   []Work  // application fns, in the order they started
	lin    []LinOp // the reads-and-writes workload's operations (linearizability)
}

// NewHistory starts a History now for the given nodes.
func NewHistory(nodes []string) *History {
	now := time.Now()
	return &History{start: now, Began: now, Nodes: append([]string(nil), nodes...), last: map[string]int{}}
}

// Since returns the History's clock: host monotonic time since it began.
func (h *History) Since() time.Duration { return time.Since(h.start) }

// Observe records e (e.At must be set by the caller with h.Since()). An
// observation identical to the node's previous one from the same source only
// extends that event's Until.
func (h *History) Observe(e Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if e.Until < e.At {
		e.Until = e.At
	}
	key := e.Node + "\x00" + string(e.Source)
	if i, ok := h.last[key]; ok && h.events[i].same(e) {
		if e.Until > h.events[i].Until {
			h.events[i].Until = e.Until
		}
		return
	}
	h.last[key] = len(h.events)
	h.events = append(h.events, e)
}

// AddLin records one finished operation of the reads-and-writes workload.
func (h *History) AddLin(op LinOp) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lin = append(h.lin, op)
}

// AddFault records a fault window and returns its index, for UpdateFault.
func (h *History) AddFault(f Fault) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.faults = append(h.faults, f)
	return len(h.faults) - 1
}

// UpdateFault applies fn to the fault at index i.
func (h *History) UpdateFault(i int, fn func(*Fault)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	fn(&h.faults[i])
}

// Snapshot is an immutable copy of a History: events sorted by At.
type Snapshot struct {
	Began  time.Time     `json:"began"`
	Length time.Duration `json:"length"`
	Nodes  []string      `json:"nodes"`
	Events []Event       `json:"events"`
	Faults []Fault       `json:"faults"`
	// Work is the application workload's runs (see Work), if it ran.
	Work []Work `json:"work,omitempty"`
	// Lin is the reads-and-writes workload's operations (see LinOp), if it
	// ran; CheckLinearizable reads them.
	Lin []LinOp `json:"lin,omitempty"`
}

// Snapshot copies the History.
func (h *History) Snapshot() Snapshot {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := Snapshot{
		Began:  h.Began,
		Length: time.Since(h.start),
		Nodes:  append([]string(nil), h.Nodes...),
		Events: append([]Event(nil), h.events...),
		Faults: append([]Fault(nil), h.faults...),
		Work:   append([]Work(nil), h.work...),
		Lin:    append([]LinOp(nil), h.lin...),
	}
	s.sort()
	return s
}

func (s *Snapshot) sort() {
	sort.SliceStable(s.Events, func(i, j int) bool { return s.Events[i].At < s.Events[j].At })
}

// NodeEvents returns node's events from source ("" for all), in time order.
func (s Snapshot) NodeEvents(node string, src Source) []Event {
	var out []Event
	for _, e := range s.Events {
		if e.Node == node && (src == "" || e.Source == src) {
			out = append(out, e)
		}
	}
	return out
}

// WriteJSON saves the snapshot to path.
func (s Snapshot) WriteJSON(path string) error {
	b, err := json.MarshalIndent(s, "", " ")
	if err != nil {
		return fmt.Errorf("chaos: encode history: %w", err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("chaos: write history: %w", err)
	}
	return nil
}

// ReadSnapshot loads a snapshot saved by WriteJSON.
func ReadSnapshot(path string) (Snapshot, error) {
	var s Snapshot
	b, err := os.ReadFile(path)
	if err != nil {
		return s, fmt.Errorf("chaos: read history: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("chaos: decode history %s: %w", path, err)
	}
	s.sort()
	return s, nil
}
