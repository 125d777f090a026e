package membership

import (
	"context"
	"fmt"
	"sort"
)

// feed is a bounded ring of recent events, guarded by the FSM's lock.
type feed struct {
	buf   []Event
	start int // index of the oldest event
	n     int // number of events held
	// compacted is the highest revision some of whose events are no longer
	// held (dropped from the ring, or before a restored snapshot). A reader at
	// revision r can resume iff r >= compacted.
	compacted uint64
}

func newFeed(capacity int) *feed { return &feed{buf: make([]Event, capacity)} }

func (f *feed) at(i int) *Event { return &f.buf[(f.start+i)%len(f.buf)] }

func (f *feed) push(evs []Event) {
	for _, e := range evs {
		if f.n == len(f.buf) {
			old := f.at(0)
			if old.Revision > f.compacted {
				f.compacted = old.Revision
			}
			*old = Event{}
			f.start = (f.start + 1) % len(f.buf)
			f.n--
		}
		*f.at(f.n) = e
		f.n++
	}
}

func (f *feed) reset(compacted uint64) {
	clear(f.buf)
	f.start, f.n, f.compacted = 0, 0, compacted
}

// since returns copies of the events with revision > from, whole revisions
// only, stopping after the revision at which max events are reached.
func (f *feed) since(from uint64, max int) ([]Event, error) {
	if from < f.compacted {
		return nil, fmt.Errorf("%w: revision %d is older than %d", ErrCompacted, from, f.compacted)
	}
	i := sort.Search(f.n, func(i int) bool { return f.at(i).Revision > from })
	var out []Event
	for ; i < f.n; i++ {
		e := f.at(i)
		if len(out) >= max && e.Revision != out[len(out)-1].Revision {
			break
		}
		out = append(out, *e)
	}
	return out, nil
}

// DefaultChangesMax is the event count Subscription.Next aims for per call.
const DefaultChangesMax = 1024

// Changes returns the events after revision `from`, oldest first: at least all
// events of each revision it includes, and no more revisions once max events
// are reached (one large command may exceed max). An empty result means no
// change after `from` yet. ErrCompacted (wrapped) means the feed dropped some
// of them: list the state again (View) and resume from its Revision.
func (f *FSM) Changes(from uint64, max int) ([]Event, error) {
	if max <= 0 {
		max = DefaultChangesMax
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.feed.since(from, max)
}

// WaitRevision blocks until the FSM has applied revision rev (or a snapshot
// at or past it), or ctx ends (returning ctx.Err()).
func (f *FSM) WaitRevision(ctx context.Context, rev uint64) error {
	for {
		f.mu.RLock()
		cur, ch := f.st.revision, f.notify
		f.mu.RUnlock()
		if cur >= rev {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// Changed returns the current revision and a channel that is closed at the
// next apply or restore (a rejected command too: it moves the revision).
// Watchers select on it beside their other events; after it fires they read
// the state again and call Changed anew. It never blocks the FSM.
func (f *FSM) Changed() (uint64, <-chan struct{}) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.revision, f.notify
}

// WaitFor blocks until cond holds for the state, evaluating it now and after
// every apply or restore, or until ctx ends (returning ctx.Err()). cond runs
// under the FSM's read lock: keep it short, do not call FSM methods from it.
// Example: wait until a draining member owns nothing before MarkLeft.
func (f *FSM) WaitFor(ctx context.Context, cond func(*State) bool) error {
	for {
		f.mu.RLock()
		ok, ch := cond(f.st), f.notify
		f.mu.RUnlock()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// Subscription reads the change feed from a revision on, without missing or
// repeating an event. It holds no goroutine and no resource: drop it when done.
// It is not safe for concurrent use.
type Subscription struct {
	f   *FSM
	rev uint64
	max int
}

// Subscribe returns a subscription to the changes after revision `from`
// (typically a View's Revision). It fails later, in Next, with ErrCompacted
// if the feed no longer holds those changes.
func (f *FSM) Subscribe(from uint64) *Subscription {
	return &Subscription{f: f, rev: from, max: DefaultChangesMax}
}

// Revision is the revision up to which the subscriber has received events.
func (s *Subscription) Revision() uint64 { return s.rev }

// Next blocks until there are events after Revision() and returns them (whole
// revisions, oldest first), advancing Revision(). It returns ctx.Err() when
// ctx ends and a wrapped ErrCompacted when the subscriber fell behind the
// feed; it never blocks the FSM.
func (s *Subscription) Next(ctx context.Context) ([]Event, error) {
	for {
		s.f.mu.RLock()
		evs, err := s.f.feed.since(s.rev, s.max)
		ch := s.f.notify
		s.f.mu.RUnlock()
		if err != nil {
			return nil, err
		}
		if len(evs) > 0 {
			s.rev = evs[len(evs)-1].Revision
			return evs, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-ch:
		}
	}
}
