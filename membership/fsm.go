package membership

import (
	"fmt"
	"io"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// Config configures an FSM. Nothing here changes what a command does to the
// state (that must be identical on every node); it only sizes local buffers.
type Config struct {
	// FeedCapacity is the number of recent change events kept for watchers
	// that resume from a revision. At least MaxBatch, so that one command's
	// events always fit. Each event costs ~100 bytes. Default 65536.
	FeedCapacity int
	// Logger receives rejected commands at debug level. nil: no logging.
	Logger hclog.Logger
}

// DefaultConfig returns the default FSM configuration.
func DefaultConfig() Config {
	return Config{FeedCapacity: 1 << 16}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.FeedCapacity < MaxBatch {
		return fmt.Errorf("%w: FeedCapacity %d below MaxBatch %d", ErrInvalidConfig, c.FeedCapacity, MaxBatch)
	}
	return nil
}

// FSM is the replicated membership state machine; it implements raft.FSM.
// Raft calls Apply, Snapshot and Restore from one goroutine; readers (Read,
// View, Changes, subscriptions) may run concurrently with it from any number
// of goroutines. The FSM starts no goroutine and needs no Close.
type FSM struct {
	mu     sync.RWMutex
	st     *State
	feed   *feed
	notify chan struct{} // closed and replaced after every apply and restore
	log    hclog.Logger
}

var _ raft.FSM = (*FSM)(nil)

// NewFSM returns an empty FSM at revision 0.
func NewFSM(cfg Config) (*FSM, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	lg := cfg.Logger
	if lg == nil {
		lg = hclog.NewNullLogger()
	}
	return &FSM{st: NewState(), feed: newFeed(cfg.FeedCapacity), notify: make(chan struct{}), log: lg}, nil
}

// Apply applies a committed raft log entry. Only raft.LogCommand entries carry
// commands; others return nil. It returns a *Result for an accepted command or
// an error (wrapping ErrInvalidCommand, ErrUnsupportedVersion,
// ErrUnknownMember, ErrInvalidTransition, ErrAddressInUse or ErrMemberBusy)
// for a rejected one; a rejected command changes nothing but the revision.
func (f *FSM) Apply(l *raft.Log) interface{} {
	if l.Type != raft.LogCommand {
		return nil
	}
	return f.ApplyCommand(l.Index, l.Data)
}

// ApplyCommand is Apply without the raft wrapper: it applies encoded command
// data at raft index `index`. Indexes must increase from call to call; tests
// and tools without raft use it directly.
func (f *FSM) ApplyCommand(index uint64, data []byte) any {
	cmd, err := DecodeCommand(data)
	f.mu.Lock()
	defer f.mu.Unlock()
	if index > f.st.revision {
		f.st.revision = index
	}
	defer f.wake()
	if err != nil {
		f.log.Debug("rejected membership command", "index", index, "error", err)
		return err
	}
	res, evs, err := f.st.apply(index, cmd)
	if err != nil {
		f.log.Debug("rejected membership command", "index", index, "error", err)
		return err
	}
	f.feed.push(evs)
	return res
}

// wake notifies waiters; called with f.mu held for writing.
func (f *FSM) wake() {
	close(f.notify)
	f.notify = make(chan struct{})
}

// Read calls fn with the current state under the FSM's read lock. fn must not
// keep the *State or call FSM methods that lock (Apply waits while fn runs:
// keep it short).
func (f *FSM) Read(fn func(*State)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fn(f.st)
}

// Revision is the raft index of the last applied command.
func (f *FSM) Revision() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.revision
}

// View returns a sorted deep copy of the whole state (O(n log n)).
func (f *FSM) View() View {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.View()
}

// Snapshot captures the state for raft: a copy taken under the read lock (it
// must be quick: Apply waits); the encoding happens later in Persist.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s := &fsmSnapshot{revision: f.st.revision, members: make([]Member, 0, len(f.st.members)), resources: make([]Resource, 0, len(f.st.res))}
	for _, m := range f.st.members {
		s.members = append(s.members, *m)
	}
	for i := range f.st.res {
		s.resources = append(s.resources, f.st.res[i].Resource)
	}
	return s, nil
}

// Restore replaces the whole state with the snapshot read from rc (and closes
// rc). A bad snapshot returns an error wrapping ErrInvalidSnapshot and keeps
// the current state. Watchers older than the snapshot get ErrCompacted.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	st, err := readSnapshot(rc)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st = st
	f.feed.reset(st.revision)
	f.wake()
	return nil
}
