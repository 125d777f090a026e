// Package retry is the project's one retry helper and its one rule for what
// is worth retrying.
//
// The rule, Retryable, answers the same for an error wherever it is seen —
// in-process (a sentinel of package election) or across gRPC (a status
// error): an operation is retried when it did not run because of a passing
// condition of the cluster, never when the request itself was refused:
//
//   - an error that declares itself with a Retryable() bool method (the
//     project's sentinels do: election.ErrNotLeader and ErrNoLeader say
//     true, election.ErrShutdown and ErrUnknownMember say false) is taken
//     at its word;
//   - gRPC codes.Unavailable (nothing was served: no leader, a node going
//     away, a connection that could not be made) and codes.DeadlineExceeded
//     (the attempt ran out of its own time) are retryable;
//   - codes.FailedPrecondition is retryable only with the NOT_LEADER reason
//     (an ErrorInfo of domain "heartbeat", see rpc/api.ReasonNotLeader):
//     the leader moved; every other precondition stays false until someone
//     changes the state;
//   - context.DeadlineExceeded is retryable (an attempt's own bound), while
//     context.Canceled is not; whether the caller's own context ended is
//     not part of the rule — Do checks the context before every attempt;
//   - anything else is not.
//
// Do runs an operation under that rule with exponential backoff and jitter
// (Policy), bounded by the caller's context (and, optionally, a budget after
// which no new attempt starts). Loops that must decide more than "again or
// not" (the Go client's leader following, a join that tries several
// addresses in turn) keep their own loop and ask Retryable and Backoff.
//
// The package imports only gRPC, so the Go client (package client), which
// must not import the server's packages, shares the rule.
package retry
