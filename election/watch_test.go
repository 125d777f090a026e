package election

import (
	"testing"
	"time"
)

func view(term uint64, leader string) Leadership {
	return Leadership{State: "follower", Term: term, LeaderID: leader, FencingToken: term}
}

func TestWatcherGetsCurrentThenChanges(t *testing.T) {
	h := newHub()
	cur := view(1, "a")
	h.refresh(func() Leadership { return cur })
	w := h.subscribe(func() Leadership { return cur })
	defer w.Close()
	if got := recv(t, w); got != cur {
		t.Fatalf("first view = %+v, want current %+v", got, cur)
	}
	next := view(2, "b")
	h.refresh(func() Leadership { return next })
	if got := recv(t, w); got != next {
		t.Fatalf("second view = %+v, want %+v", got, next)
	}
	// A refresh that changes only LeaseUntil is not an event.
	renewed := next
	renewed.LeaseUntil = time.Now()
	h.refresh(func() Leadership { return renewed })
	select {
	case l := <-w.C():
		t.Fatalf("unexpected event on lease renewal: %+v", l)
	default:
	}
}

func TestSlowWatcherNeverBlocks(t *testing.T) {
	h := newHub()
	slow := h.subscribe(func() Leadership { return view(0, "") })
	fast := h.subscribe(func() Leadership { return view(0, "") })
	defer slow.Close()
	defer fast.Close()
	recv(t, fast)

	const n = 1000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := uint64(1); i <= n; i++ {
			h.refresh(func() Leadership { return view(i, "x") })
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("publisher blocked on a watcher that does not read")
	}
	if got := recv(t, slow); got.Term != n {
		t.Fatalf("slow watcher got term %d, want the latest %d", got.Term, n)
	}
	// Initial view plus n-1 intermediate views were replaced unread.
	if got := slow.Dropped(); got != n {
		t.Fatalf("Dropped = %d, want %d", got, n)
	}
	if got := recv(t, fast); got.Term != n {
		t.Fatalf("fast watcher got term %d, want %d", got.Term, n)
	}
}

func TestWatcherClose(t *testing.T) {
	h := newHub()
	w := h.subscribe(func() Leadership { return view(1, "a") })
	w.Close()
	w.Close() // idempotent
	if _, ok := <-drain(w); ok {
		t.Fatal("channel not closed after Close")
	}
	h.refresh(func() Leadership { return view(2, "b") }) // must not panic on a closed watcher

	w2 := h.subscribe(func() Leadership { return view(2, "b") })
	final := Leadership{State: "shutdown", Term: 2}
	h.close(final)
	if got := recv(t, w2); got != final {
		t.Fatalf("final view = %+v, want %+v", got, final)
	}
	if _, ok := <-w2.C(); ok {
		t.Fatal("channel not closed when hub closed")
	}
	w3 := h.subscribe(func() Leadership { return final })
	if _, ok := <-w3.C(); ok {
		t.Fatal("watcher made after close is not closed")
	}
	w2.Close()
}

// drain reads and discards a buffered value, returning the channel.
func drain(w *Watcher) <-chan Leadership {
	select {
	case _, ok := <-w.C():
		if !ok {
			return w.C()
		}
	default:
	}
	return w.C()
}

func recv(t *testing.T, w *Watcher) Leadership {
	t.Helper()
	select {
	case l, ok := <-w.C():
		if !ok {
			t.Fatal("watcher channel closed")
		}
		return l
	case <-time.After(5 * time.Second):
		t.Fatal("no view within 5s")
	}
	return Leadership{}
}
