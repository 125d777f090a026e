package batch

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestCallersShareRounds: callers that wait together share one round; a
// caller that arrives while a round runs gets the NEXT round's answer (one
// that started after it arrived), never the running one's.
func TestCallersShareRounds(t *testing.T) {
	var rounds atomic.Int64
	release := make(chan struct{})
	started := make(chan struct{}, 16)
	b := New(context.Background(), func(context.Context) (int64, error) {
		n := rounds.Add(1)
		started <- struct{}{}
		<-release
		return n, nil
	})
	// First caller starts round 1 and blocks in it.
	first := make(chan int64, 1)
	go func() {
		v, _ := b.Do(context.Background())
		first <- v
	}()
	<-started
	// 50 callers arrive while round 1 runs: they must all get round 2.
	var wg sync.WaitGroup
	got := make(chan int64, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := b.Do(context.Background())
			if err != nil {
				t.Error(err)
			}
			got <- v
		}()
	}
	// Let them queue, then finish round 1 and round 2.
	deadline := time.Now().Add(10 * time.Second)
	for {
		b.mu.Lock()
		n := len(b.waiting)
		b.mu.Unlock()
		if n == 50 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d callers queued", n)
		}
		time.Sleep(time.Millisecond)
	}
	release <- struct{}{}
	if v := <-first; v != 1 {
		t.Fatalf("the first caller got round %d, want 1", v)
	}
	<-started
	release <- struct{}{}
	wg.Wait()
	close(got)
	for v := range got {
		if v != 2 {
			t.Fatalf("a caller that arrived during round 1 got round %d's answer, want round 2's", v)
		}
	}
	if n := rounds.Load(); n != 2 {
		t.Fatalf("%d rounds for 51 callers in two waves, want 2", n)
	}
}

// TestCallerContextEnds: a caller whose context ends stops waiting; the
// round still completes for the others, and errors reach every caller.
func TestCallerContextEnds(t *testing.T) {
	release := make(chan struct{})
	boom := errors.New("boom")
	b := New(context.Background(), func(context.Context) (int, error) {
		<-release
		return 0, boom
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := b.Do(ctx)
		done <- err
	}()
	other := make(chan error, 1)
	go func() {
		_, err := b.Do(context.Background())
		other <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Do after its context ended = %v", err)
	}
	close(release)
	if err := <-other; !errors.Is(err, boom) {
		t.Fatalf("the other caller got %v, want the round's error", err)
	}
}
