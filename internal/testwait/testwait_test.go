package testwait

import (
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeTB records Fatalf instead of ending the test, to see Eventually fail.
type fakeTB struct {
	testing.TB
	fatal string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Fatalf(format string, args ...any) { f.fatal = fmt.Sprintf(format, args...) }

func TestEventually(t *testing.T) {
	tests := []struct {
		name      string
		timeout   time.Duration
		holdsAt   int    // the call on which cond first holds; 0: never
		why       string // cond's explanation while it does not hold
		wantCalls int    // exact number of calls; 0: at least two
		wantFatal string // "": must not fail
	}{
		{name: "holds on the third call", timeout: time.Second, holdsAt: 3, why: "not yet", wantCalls: 3},
		{name: "holds at once", timeout: time.Second, holdsAt: 1, wantCalls: 1},
		{name: "zero timeout still asks once", timeout: 0, holdsAt: 1, wantCalls: 1},
		{name: "never holds", timeout: 200 * time.Millisecond, why: "still no",
			wantFatal: "timed out after 200ms waiting for the condition: still no"},
		{name: "never holds, no explanation", timeout: 50 * time.Millisecond,
			wantFatal: "timed out after 50ms waiting for the condition"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeTB{TB: t}
			calls := 0
			start := time.Now()
			Eventually(f, tt.timeout, "the condition", func() (bool, string) {
				calls++
				return calls == tt.holdsAt, tt.why
			})
			took := time.Since(start)
			if f.fatal != tt.wantFatal {
				t.Errorf("failure %q; want %q", f.fatal, tt.wantFatal)
			}
			if tt.wantCalls > 0 && calls != tt.wantCalls {
				t.Errorf("cond called %d times; want %d (it returns once cond holds)", calls, tt.wantCalls)
			}
			if tt.wantFatal != "" {
				if took < tt.timeout {
					t.Errorf("gave up after %v; want the whole %v", took, tt.timeout)
				}
				if calls < 2 {
					t.Errorf("cond called %d times in %v; want it asked again every %v", calls, tt.timeout, Interval)
				}
			}
		})
	}
}
