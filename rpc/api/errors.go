package api

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/election"
)

// Reasons carried in a google.rpc.ErrorInfo detail (domain ErrorDomain) of
// the status errors that share a code but call for different handling: a
// joining node retries NotLeader and NoLeader, and gives up on WrongCluster.
// Read them with ReasonOf.
const (
	ErrorDomain        = "heartbeat"
	ReasonNotLeader    = "NOT_LEADER"    // FailedPrecondition; metadata leader_id, leader_address
	ReasonNoLeader     = "NO_LEADER"     // Unavailable
	ReasonWrongCluster = "WRONG_CLUSTER" // FailedPrecondition
	// ReasonTooLarge: a request or the command made of it is over a size
	// or item limit (--max-request-bytes, membership.MaxBatch,
	// membership.MaxCommandBytes); ResourceExhausted, HTTP 413.
	ReasonTooLarge = "TOO_LARGE"
	// ReasonQuotaExceeded: the state is at its quota (--quota-bytes,
	// --max-resources); ResourceExhausted, HTTP 507. Metadata "kind":
	// "bytes" or "resources".
	ReasonQuotaExceeded = "QUOTA_EXCEEDED"
)

// ReasonOf returns the ErrorInfo reason of a status error from these servers,
// or "" when it has none.
func ReasonOf(err error) string {
	s, ok := status.FromError(err)
	if !ok {
		return ""
	}
	for _, d := range s.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == ErrorDomain {
			return info.GetReason()
		}
	}
	return ""
}

// statusWithReason builds a status error carrying an ErrorInfo detail.
func statusWithReason(code codes.Code, reason string, md map[string]string, format string, args ...any) error {
	s := status.New(code, fmt.Sprintf(format, args...))
	if ds, err := s.WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain, Metadata: md}); err == nil {
		s = ds
	}
	return s.Err()
}

// notLeaderStatus is the FailedPrecondition answer of a node that cannot
// serve a leader-only call and will not forward it; it names the leader.
func notLeaderStatus(leaderID, leaderAddr string) error {
	return statusWithReason(codes.FailedPrecondition, ReasonNotLeader,
		map[string]string{"leader_id": leaderID, "leader_address": leaderAddr},
		"not the leader: leader is %s at %s", leaderID, leaderAddr)
}

// noLeaderStatus is the Unavailable answer when no leader is known.
func noLeaderStatus(what string) error {
	return statusWithReason(codes.Unavailable, ReasonNoLeader, nil, "%s: not the leader and %v; retry later", what, election.ErrNoLeader)
}

// toStatus turns an error from the election into a gRPC status error with
// the matching code. A status error passes through.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var nle *election.NotLeaderError
	if errors.As(err, &nle) && nle.LeaderAddr != "" {
		return notLeaderStatus(nle.LeaderID, nle.LeaderAddr)
	}
	return status.Error(codeOf(err), err.Error())
}

// codeOf maps an error to its gRPC code.
func codeOf(err error) codes.Code {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, election.ErrNoLeader), errors.Is(err, election.ErrShutdown), errors.Is(err, ErrClosed),
		errors.Is(err, election.ErrLeadershipLost):
		return codes.Unavailable
	case errors.Is(err, election.ErrNotLeader), errors.Is(err, election.ErrClusterMismatch),
		errors.Is(err, election.ErrNotVoter), errors.Is(err, election.ErrTransferInProgress),
		errors.Is(err, election.ErrQuorumAtRisk):
		return codes.FailedPrecondition
	case errors.Is(err, election.ErrIDInUse), errors.Is(err, election.ErrAddressInUse):
		return codes.AlreadyExists
	case errors.Is(err, election.ErrUnknownMember):
		return codes.NotFound
	case errors.Is(err, election.ErrInvalidConfig):
		return codes.InvalidArgument
	}
	return codes.Internal
}
