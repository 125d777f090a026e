package gateway

import (
	"encoding/json"
	"net/http"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// StatusClientClosed is the HTTP status of a call the client abandoned
// (gRPC Canceled), as nginx logs it; the client never sees it.
const StatusClientClosed = 499

// httpStatus is the one table from gRPC status codes to HTTP statuses; a
// code not in it (Unknown, Internal, DataLoss) is a 500.
var httpStatus = map[codes.Code]int{
	codes.OK:                 http.StatusOK,
	codes.InvalidArgument:    http.StatusBadRequest,
	codes.OutOfRange:         http.StatusBadRequest,
	codes.NotFound:           http.StatusNotFound,
	codes.AlreadyExists:      http.StatusConflict,
	codes.FailedPrecondition: http.StatusConflict,
	codes.Aborted:            http.StatusConflict,
	codes.PermissionDenied:   http.StatusForbidden,
	codes.Unauthenticated:    http.StatusUnauthorized,
	codes.Unimplemented:      http.StatusNotImplemented,
	codes.Unavailable:        http.StatusServiceUnavailable,
	codes.DeadlineExceeded:   http.StatusGatewayTimeout,
	codes.Canceled:           StatusClientClosed,
	// A limit reached (a rate or a size the server enforces): back off.
	codes.ResourceExhausted: http.StatusTooManyRequests,
}

// reasonStatus refines the table for ResourceExhausted by the status's
// ErrorInfo reason: a request over a size limit is 413, a write refused by
// the state's quota is 507 Insufficient Storage (not 413: the request itself
// is fine, and it will succeed once something is deleted; not 429: waiting
// alone does not help). Any other ResourceExhausted is a rate or count
// limit: 429.
var reasonStatus = map[string]int{
	ReasonTooLarge:      http.StatusRequestEntityTooLarge,
	ReasonQuotaExceeded: http.StatusInsufficientStorage,
}

// HTTPStatus maps a gRPC status code to the HTTP status the gateway answers
// with (a ResourceExhausted with a reason of reasonStatus: see errorBody).
func HTTPStatus(c codes.Code) int {
	if s, ok := httpStatus[c]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// ErrorBody is the JSON body of every error answer, and the data of a
// stream's final "error" event.
type ErrorBody struct {
	// Error is the message.
	Error string `json:"error"`
	// Code is the HTTP status.
	Code int `json:"code"`
	// Status is the gRPC status code's name: "NOT_FOUND".
	Status string `json:"status"`
	// Reason and Metadata come from the status's google.rpc.ErrorInfo
	// detail, when it has one (NOT_LEADER with leader_id, leader_address).
	Reason   string            `json:"reason,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// codeNames are the canonical upper-case names of the gRPC codes.
var codeNames = map[codes.Code]string{
	codes.OK: "OK", codes.Canceled: "CANCELLED", codes.Unknown: "UNKNOWN",
	codes.InvalidArgument: "INVALID_ARGUMENT", codes.DeadlineExceeded: "DEADLINE_EXCEEDED",
	codes.NotFound: "NOT_FOUND", codes.AlreadyExists: "ALREADY_EXISTS",
	codes.PermissionDenied: "PERMISSION_DENIED", codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION", codes.Aborted: "ABORTED",
	codes.OutOfRange: "OUT_OF_RANGE", codes.Unimplemented: "UNIMPLEMENTED",
	codes.Internal: "INTERNAL", codes.Unavailable: "UNAVAILABLE",
	codes.DataLoss: "DATA_LOSS", codes.Unauthenticated: "UNAUTHENTICATED",
}

// errorBody builds the body of a status error.
func errorBody(err error) ErrorBody {
	s := status.Convert(err)
	b := ErrorBody{Error: s.Message(), Code: HTTPStatus(s.Code()), Status: codeNames[s.Code()]}
	if b.Status == "" {
		b.Status = "UNKNOWN"
	}
	for _, d := range s.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			b.Reason, b.Metadata = info.GetReason(), info.GetMetadata()
			break
		}
	}
	if c, ok := reasonStatus[b.Reason]; ok && s.Code() == codes.ResourceExhausted {
		b.Code = c
	}
	return b
}

// writeError answers with the HTTP form of a status error.
func writeError(w http.ResponseWriter, err error) {
	b := errorBody(err)
	writeErrorBody(w, b)
}

func writeErrorBody(w http.ResponseWriter, b ErrorBody) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(b.Code)
	_ = json.NewEncoder(w).Encode(b)
}

// plainError answers with an error body of the given HTTP status that did
// not come from a call (unknown path, wrong method).
func plainError(w http.ResponseWriter, code int, grpcCode codes.Code, msg string) {
	writeErrorBody(w, ErrorBody{Error: msg, Code: code, Status: codeNames[grpcCode]})
}
