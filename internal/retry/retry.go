package retry

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The ErrorInfo that marks a FailedPrecondition as "the leader moved". They
// repeat rpc/api's ErrorDomain and ReasonNotLeader (this package may not
// import the server); a test in rpc/api checks that they agree.
const (
	errorDomain     = "heartbeat"
	reasonNotLeader = "NOT_LEADER"
)

// ErrTemporary marks a condition of the caller's own making that passes by
// itself (wrap it with %w): for example "this node is not in the raft
// configuration yet" while its join commits.
var ErrTemporary = Mark(errors.New("temporary condition"), true)

// Retryable reports whether an operation that failed with err may succeed
// when simply tried again; see the package doc for the rule.
func Retryable(err error) bool {
	if err == nil {
		return false
	}
	var m interface{ Retryable() bool }
	if errors.As(err, &m) {
		return m.Retryable()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	s, ok := status.FromError(err)
	if !ok {
		return false
	}
	switch s.Code() {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	case codes.FailedPrecondition:
		for _, d := range s.Details() {
			if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == errorDomain {
				return info.GetReason() == reasonNotLeader
			}
		}
	}
	return false
}

// Mark returns err declared retryable (or not) for Retryable; errors.Is and
// errors.As still see err. Mark(nil, ...) is nil.
func Mark(err error, retryable bool) error {
	if err == nil {
		return nil
	}
	return &marked{err: err, retryable: retryable}
}

type marked struct {
	err       error
	retryable bool
}

func (m *marked) Error() string   { return m.err.Error() }
func (m *marked) Unwrap() error   { return m.err }
func (m *marked) Retryable() bool { return m.retryable }

// GRPCStatus gives a marked status error's status unchanged. Without it
// grpc's status.FromError finds the status through Unwrap and takes the
// whole error text as its message: a reply read "rpc error: code = ...
// desc = rpc error: code = ... desc = ...". Nil for an error without a
// status (FromError then reports Unknown, as before).
func (m *marked) GRPCStatus() *status.Status {
	if s, ok := status.FromError(m.err); ok {
		return s
	}
	return nil
}

// Policy paces the attempts of Do. The zero value is usable: Min 50ms, Max
// 1s, no per-attempt bound, no budget.
type Policy struct {
	// Min is the first pause between two attempts; each pause doubles up to
	// Max. Default 50ms.
	Min time.Duration
	// Max caps the pause. Default 1s (at least Min).
	Max time.Duration
	// Attempt bounds each attempt's context; 0: the caller's context only.
	Attempt time.Duration
	// Budget: no attempt starts more than Budget after the first; Do then
	// returns the last error as it is (a caller's answer, not a timeout).
	// 0: only the context bounds the retries.
	Budget time.Duration
	// Retryable replaces the rule for this call; nil: Retryable. A loop
	// that accepts one more condition wraps Retryable, never forks it.
	Retryable func(error) bool
	// OnRetry, when set, is told of each failed attempt that will be
	// retried (1-based), e.g. to log it.
	OnRetry func(attempt int, err error)
}

// withDefaults fills in the zero fields.
func (p Policy) withDefaults() Policy {
	if p.Min <= 0 {
		p.Min = 50 * time.Millisecond
	}
	if p.Max <= 0 {
		p.Max = max(time.Second, p.Min)
	}
	p.Max = max(p.Max, p.Min)
	if p.Retryable == nil {
		p.Retryable = Retryable
	}
	return p
}

// Do calls f until it returns nil or an error the policy does not retry
// (returned as it is), the budget is spent (the last error, as it is), or
// ctx ends: then the error wraps both ctx.Err() and the last attempt's
// error, so errors.Is sees the context's end and status.Code the last
// answer's code. A pause that would end after ctx's deadline is not
// started: Do gives up at once.
func Do(ctx context.Context, p Policy, f func(context.Context) error) error {
	p = p.withDefaults()
	b := NewBackoff(p.Min, p.Max)
	start := time.Now()
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		actx, cancel := ctx, context.CancelFunc(func() {})
		if p.Attempt > 0 {
			actx, cancel = context.WithTimeout(ctx, p.Attempt)
		}
		err := f(actx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return gaveUp(ctx, err)
		}
		if !p.Retryable(err) {
			return err
		}
		d := b.Next()
		if p.Budget > 0 && time.Since(start)+d > p.Budget {
			return err
		}
		if dl, ok := ctx.Deadline(); ok && time.Now().Add(d).After(dl) {
			// Nothing more can be tried in time: give up now.
			return fmt.Errorf("%w (last error: %w)", context.DeadlineExceeded, err)
		}
		if p.OnRetry != nil {
			p.OnRetry(attempt, err)
		}
		if !Sleep(ctx, d) {
			return gaveUp(ctx, err)
		}
	}
}

// gaveUp wraps the context's end and the last error.
func gaveUp(ctx context.Context, last error) error {
	if errors.Is(last, ctx.Err()) {
		return last
	}
	return fmt.Errorf("%w (last error: %w)", ctx.Err(), last)
}

// Backoff yields exponentially growing pauses with ±20% jitter. Not safe
// for concurrent use.
type Backoff struct {
	min, max, next time.Duration
}

// NewBackoff starts at min and doubles up to max.
func NewBackoff(min, max time.Duration) *Backoff {
	return &Backoff{min: min, max: max, next: min}
}

// Next returns the next pause (jittered) and doubles the one after it.
func (b *Backoff) Next() time.Duration {
	d := b.next
	if j := int64(d / 5); j > 0 {
		d += time.Duration(rand.Int64N(2*j+1) - j)
	}
	b.next = min(2*b.next, b.max)
	return d
}

// Reset starts over at min (after a success).
func (b *Backoff) Reset() { b.next = b.min }

// Sleep waits d or until ctx ends; false when ctx ended first.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
