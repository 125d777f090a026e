package node_test

import (
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/node"
)

// releaseWatch samples the resource views of some nodes every 5 ms and
// records, per resource, the longest time it was seen without an owner. A
// live member's resources are released before they move (the ownership-lease
// rule), so a drain or a leave may show them unowned for about one ownership
// lease; never longer, and never resources of another member.
type releaseWatch struct {
	stop, done chan struct{}
	mu         sync.Mutex
	longest    map[string]time.Duration
	samples    int
}

func watchReleases(nodes ...*node.Node) *releaseWatch {
	w := &releaseWatch{stop: make(chan struct{}), done: make(chan struct{}), longest: map[string]time.Duration{}}
	go func() {
		defer close(w.done)
		since := map[string]time.Time{} // "node/resource" -> unowned since
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			now := time.Now()
			w.mu.Lock()
			w.samples++
			for _, x := range nodes {
				for _, r := range x.Membership().View().Resources {
					key := x.ID() + "/" + r.ID
					if r.Owner != "" {
						delete(since, key)
						continue
					}
					if _, ok := since[key]; !ok {
						since[key] = now
					}
					if d := now.Sub(since[key]); d >= w.longest[r.ID] {
						w.longest[r.ID] = d
					}
				}
			}
			w.mu.Unlock()
		}
	}()
	return w
}

// check stops the watch and fails t if a resource outside allowed was ever
// unowned, or one was unowned longer than bound.
func (w *releaseWatch) check(t *testing.T, allowed map[string]bool, bound time.Duration) {
	t.Helper()
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.samples == 0 {
		t.Error("the release watch never sampled")
	}
	var ids []string
	for id := range w.longest {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var worst time.Duration
	for _, id := range ids {
		d := w.longest[id]
		worst = max(worst, d)
		switch {
		case !allowed[id]:
			t.Errorf("resource %s (not the leaving node's) was without an owner for %v", id, d)
		case d > bound:
			t.Errorf("resource %s was without an owner for %v, longer than %v", id, d, bound)
		}
	}
	t.Logf("%d resources released on the way, longest without an owner %v", len(ids), worst)
}

// ownedBy lists the resources member id owns in n's view.
func ownedBy(n *node.Node, id string) map[string]bool {
	out := map[string]bool{}
	for _, r := range n.Membership().View().Resources {
		if r.Owner == id {
			out[r.ID] = true
		}
	}
	return out
}
