package retry_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/internal/retry"
	"github.com/heartbeat-sidecar/heartbeat/rpc/api"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// withReason builds a status error carrying an ErrorInfo the way rpc/api
// does (its constants: the rule must agree with the server's reasons).
func withReason(code codes.Code, domain, reason string) error {
	s, err := status.New(code, "x").WithDetails(&errdetails.ErrorInfo{Domain: domain, Reason: reason})
	if err != nil {
		panic(err)
	}
	return s.Err()
}

// TestRetryable is the rule, case by case.
func TestRetryable(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"plain error", errors.New("boom"), false},
		{"net error (not a project marker)", &net.OpError{Op: "dial", Err: errors.New("refused")}, false},
		{"context canceled", context.Canceled, false},
		{"an attempt's own deadline", context.DeadlineExceeded, true},
		{"wrapped deadline", fmt.Errorf("commit: %w", context.DeadlineExceeded), true},

		{"election.ErrNotLeader", election.ErrNotLeader, true},
		{"election.NotLeaderError", fmt.Errorf("apply: %w", &election.NotLeaderError{LeaderID: "n2", LeaderAddr: "a"}), true},
		{"election.ErrNoLeader", fmt.Errorf("x: %w", election.ErrNoLeader), true},
		{"election.ErrTransferInProgress", fmt.Errorf("%w: raft", election.ErrTransferInProgress), true},
		{"election.ErrShutdown", election.ErrShutdown, false},
		{"election.ErrLeadershipLost (outcome unknown)", fmt.Errorf("commit: %w", election.ErrLeadershipLost), false},
		{"election.ErrUnknownMember", fmt.Errorf("%w: n9", election.ErrUnknownMember), false},
		{"election.ErrNotVoter", election.ErrNotVoter, false},
		{"election.ErrIDInUse", election.ErrIDInUse, false},
		{"election.ErrClusterMismatch", election.ErrClusterMismatch, false},
		{"retry.ErrTemporary", fmt.Errorf("not in the configuration yet: %w", retry.ErrTemporary), true},
		{"marked false beats the code", retry.Mark(status.Error(codes.Unavailable, "closed"), false), false},
		{"marked true", retry.Mark(errors.New("x"), true), true},

		{"Unavailable", status.Error(codes.Unavailable, "no leader"), true},
		{"Unavailable NO_LEADER", withReason(codes.Unavailable, api.ErrorDomain, api.ReasonNoLeader), true},
		{"DeadlineExceeded", status.Error(codes.DeadlineExceeded, "slow"), true},
		{"FailedPrecondition NOT_LEADER", withReason(codes.FailedPrecondition, api.ErrorDomain, api.ReasonNotLeader), true},
		{"wrapped NOT_LEADER", fmt.Errorf("join via a: %w", withReason(codes.FailedPrecondition, api.ErrorDomain, api.ReasonNotLeader)), true},
		{"FailedPrecondition WRONG_CLUSTER", withReason(codes.FailedPrecondition, api.ErrorDomain, api.ReasonWrongCluster), false},
		{"FailedPrecondition NOT_LEADER of another domain", withReason(codes.FailedPrecondition, "other", api.ReasonNotLeader), false},
		{"FailedPrecondition bare", status.Error(codes.FailedPrecondition, "draining"), false},
		{"InvalidArgument", status.Error(codes.InvalidArgument, "bad id"), false},
		{"NotFound", status.Error(codes.NotFound, "no such member"), false},
		{"AlreadyExists", status.Error(codes.AlreadyExists, "id in use"), false},
		{"PermissionDenied", status.Error(codes.PermissionDenied, "no"), false},
		{"Unimplemented", status.Error(codes.Unimplemented, "no"), false},
		{"Internal", status.Error(codes.Internal, "bug"), false},
		{"ResourceExhausted", status.Error(codes.ResourceExhausted, "too big"), false},
		{"Canceled status", status.Error(codes.Canceled, "gone"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := retry.Retryable(tc.err); got != tc.want {
				t.Errorf("Retryable(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

// TestMarkKeepsStatus: a marked status error is the same status, message
// and details included, not "rpc error: ... desc = rpc error: ...".
func TestMarkKeepsStatus(t *testing.T) {
	in := withReason(codes.Unavailable, api.ErrorDomain, api.ReasonNoLeader)
	for _, retryable := range []bool{false, true} {
		s, ok := status.FromError(retry.Mark(in, retryable))
		if !ok || s.Code() != codes.Unavailable || s.Message() != "x" || len(s.Details()) != 1 {
			t.Errorf("Mark(%v, %v): status %v (ok %v), want the same status", in, retryable, s, ok)
		}
	}
	plain := retry.Mark(errors.New("boom"), false)
	if s, ok := status.FromError(plain); ok || s.Code() != codes.Unknown || s.Message() != "boom" {
		t.Errorf("Mark(plain error): status %v (ok %v), want Unknown \"boom\", not ok", s, ok)
	}
}

// TestDo: what Do returns, and how many attempts it makes, for each way a
// retry loop ends.
func TestDo(t *testing.T) {
	unavailable := status.Error(codes.Unavailable, "no leader")
	refused := status.Error(codes.InvalidArgument, "bad")
	fast := retry.Policy{Min: time.Millisecond, Max: 2 * time.Millisecond}
	for _, tc := range []struct {
		name     string
		policy   retry.Policy
		timeout  time.Duration
		fails    []error // the attempts' errors in turn; then nil
		always   error   // every attempt fails so (fails unused)
		attempts int     // exact count; -1: at least 2
		check    func(t *testing.T, err error)
	}{
		{name: "first attempt succeeds", policy: fast, attempts: 1,
			check: func(t *testing.T, err error) { noErr(t, err) }},
		{name: "retryable then success", policy: fast, fails: []error{unavailable, election.ErrNoLeader}, attempts: 3,
			check: func(t *testing.T, err error) { noErr(t, err) }},
		{name: "refusal returned at once", policy: fast, fails: []error{refused}, attempts: 1,
			check: func(t *testing.T, err error) {
				if status.Code(err) != codes.InvalidArgument || !errors.Is(err, refused) {
					t.Errorf("err %v, want the refusal as it is", err)
				}
			}},
		{name: "context ends: both errors seen", policy: fast, timeout: 50 * time.Millisecond, always: unavailable, attempts: -1,
			check: func(t *testing.T, err error) {
				if !errors.Is(err, context.DeadlineExceeded) || status.Code(err) != codes.Unavailable {
					t.Errorf("err %v: want DeadlineExceeded wrapping the last Unavailable", err)
				}
			}},
		{name: "budget spent: last error as it is", policy: retry.Policy{Min: 5 * time.Millisecond, Max: 5 * time.Millisecond, Budget: 30 * time.Millisecond},
			always: unavailable, attempts: -1,
			check: func(t *testing.T, err error) {
				if err != unavailable {
					t.Errorf("err %v, want the last answer unwrapped", err)
				}
			}},
		{name: "pause past the deadline is not started", policy: retry.Policy{Min: time.Hour}, timeout: time.Second, always: unavailable, attempts: 1,
			check: func(t *testing.T, err error) {
				if !errors.Is(err, context.DeadlineExceeded) || status.Code(err) != codes.Unavailable {
					t.Errorf("err %v", err)
				}
			}},
		{name: "own rule widens the shared one", attempts: 2, fails: []error{errors.New("plain")},
			policy: retry.Policy{Min: time.Millisecond, Retryable: func(err error) bool { return err.Error() == "plain" || retry.Retryable(err) }},
			check:  func(t *testing.T, err error) { noErr(t, err) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if tc.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.timeout)
				defer cancel()
			}
			start := time.Now()
			n := 0
			err := retry.Do(ctx, tc.policy, func(context.Context) error {
				n++
				if tc.always != nil {
					return tc.always
				}
				if n <= len(tc.fails) {
					return tc.fails[n-1]
				}
				return nil
			})
			tc.check(t, err)
			switch {
			case tc.attempts == -1 && n < 2:
				t.Errorf("%d attempts, want several", n)
			case tc.attempts > 0 && n != tc.attempts:
				t.Errorf("%d attempts, want %d", n, tc.attempts)
			}
			if time.Since(start) > 5*time.Second {
				t.Errorf("took %v", time.Since(start))
			}
		})
	}
}

// TestDoAttemptBound: each attempt gets its own deadline; its expiry is
// retried while the caller's context lives.
func TestDoAttemptBound(t *testing.T) {
	n := 0
	err := retry.Do(context.Background(), retry.Policy{Min: time.Millisecond, Attempt: 10 * time.Millisecond}, func(ctx context.Context) error {
		n++
		if n < 3 {
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	})
	if err != nil || n != 3 {
		t.Fatalf("err %v after %d attempts, want nil after 3", err, n)
	}
}

// TestBackoff: pauses double from Min to Max within ±20%, and Reset starts
// over.
func TestBackoff(t *testing.T) {
	b := retry.NewBackoff(100*time.Millisecond, 400*time.Millisecond)
	for i, want := range []time.Duration{100, 200, 400, 400} {
		want *= time.Millisecond
		if d := b.Next(); d < want*8/10 || d > want*12/10 {
			t.Errorf("pause %d: %v, want %v ±20%%", i, d, want)
		}
	}
	b.Reset()
	if d := b.Next(); d > 120*time.Millisecond {
		t.Errorf("after Reset: %v", d)
	}
}

func noErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Errorf("err %v, want nil", err)
	}
}
