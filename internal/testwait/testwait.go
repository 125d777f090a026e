package testwait

import (
	"testing"
	"time"
)

// Interval is how often Eventually asks its condition again.
const Interval = 10 * time.Millisecond

// Eventually calls cond every Interval until it reports true or timeout has
// passed since the call; then it fails the test (t.Fatalf, so only from the
// test's goroutine) with what and cond's last explanation. cond runs at
// least once, even with a timeout of zero or less. The explanation is free
// text for the failure message ("n2 knows no leader"); it may be empty.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() (ok bool, why string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if !time.Now().Before(deadline) {
			if why != "" {
				why = ": " + why
			}
			t.Fatalf("timed out after %v waiting for %s%s", timeout, what, why)
			return
		}
		time.Sleep(Interval)
	}
}
