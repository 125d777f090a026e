package election

import (
	"testing"
	"time"
)

// TestLearnerReady: a learner is promoted only when it answered in the
// leader's term within the live window and is within PromoteMaxLag of the
// leader's last index; a voter counts as live by the same answer.
func TestLearnerReady(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	const (
		term   = 5
		last   = 1000
		window = time.Second
	)
	ack := func(agoMs int, tm, lastLog uint64) Ack {
		at := now.Add(-time.Duration(agoMs) * time.Millisecond)
		return Ack{SentAt: at.Add(-time.Millisecond), RepliedAt: at, Term: tm, LastLog: lastLog}
	}
	for _, tc := range []struct {
		name        string
		a           Ack
		ok          bool
		live, ready bool
	}{
		{"no ack at all (a ghost)", Ack{}, false, false, false},
		{"fresh and caught up", ack(10, term, last), true, true, true},
		{"fresh, lag at the limit", ack(10, term, last-PromoteMaxLag), true, true, true},
		{"fresh, lag past the limit", ack(10, term, last-PromoteMaxLag-1), true, true, false},
		{"fresh, empty log (a new node)", ack(10, term, 0), true, true, false},
		{"answer older than the window", ack(1001, term, last), true, false, false},
		{"answer of another term", ack(10, term-1, last), true, false, false},
		{"ack without a reply time", Ack{SentAt: now, Term: term, LastLog: last}, true, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := answered(tc.a, tc.ok, term, now, window); got != tc.live {
				t.Errorf("answered = %v, want %v", got, tc.live)
			}
			if got := learnerReady(tc.a, tc.ok, term, last, now, window); got != tc.ready {
				t.Errorf("learnerReady = %v, want %v", got, tc.ready)
			}
		})
	}
}
