package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Limits of the scan that a request body passes while it streams in, before
// anything is decoded into a message (see readBody).
const (
	// DefaultMaxBodyItems bounds the elements of one JSON array or the
	// members of one JSON object in a body: membership.MaxBatch, the most
	// items one batch may carry (the node sets Config.MaxBodyItems to it).
	DefaultMaxBodyItems = 10000
	// bodyValuesPerItem bounds all JSON values in a body at this many per
	// allowed item: a resource with an id, a weight and 16 labels is 20.
	bodyValuesPerItem = 32
	// maxBodyDepth bounds the nesting of a body (requests nest 4 deep).
	maxBodyDepth = 16
)

// Reasons (ErrorInfo, domain "heartbeat") of ResourceExhausted answers that
// HTTP tells apart from a rate limit (429): see HTTPStatusOf.
const (
	// ReasonTooLarge: the request (body or message) is over a size or item
	// limit; 413. The same reason as rpc/api's.
	ReasonTooLarge = "TOO_LARGE"
	// ReasonQuotaExceeded: the cluster's state is at its quota (bytes or
	// resources); writes that grow it are refused until something is
	// deleted; 507 Insufficient Storage.
	ReasonQuotaExceeded = "QUOTA_EXCEEDED"
)

// tooLarge is the ResourceExhausted answer of an oversized request.
func tooLarge(format string, args ...any) error {
	s := status.New(codes.ResourceExhausted, fmt.Sprintf(format, args...))
	if ds, err := s.WithDetails(&errdetails.ErrorInfo{Reason: ReasonTooLarge, Domain: "heartbeat"}); err == nil {
		s = ds
	}
	return s.Err()
}

// frame is one open JSON container of the scan.
type frame struct {
	object bool // an object: its members alternate key, value
	key    bool // (object) the next token is a key
	n      int  // elements (array) or members (object) so far
}

// readBody reads a request body of at most maxBytes, scanning its JSON as it
// streams in: more than maxItems elements in one array or members in one
// object, more than bodyValuesPerItem*maxItems values in all, or nesting
// deeper than maxBodyDepth end the read at once, so that a huge batch is
// refused after a few kilobytes instead of decoded whole (a 32 MiB body of
// "[{},{},...]" would take over a gigabyte as messages). Only the bytes read
// so far are held. It returns the body for the decoder, which checks the
// syntax again strictly (the scan stops at the end of the first value: what
// follows is returned for the decoder to refuse). Over a limit:
// ResourceExhausted (ReasonTooLarge); bad JSON: InvalidArgument.
func readBody(w http.ResponseWriter, body io.ReadCloser, maxBytes int64, maxItems int) ([]byte, error) {
	var buf bytes.Buffer
	tee := io.TeeReader(http.MaxBytesReader(w, body, maxBytes), &buf)
	readErr := func(err error) error {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return tooLarge("body over %d bytes (--max-request-bytes)", maxBytes)
		}
		return status.Errorf(codes.InvalidArgument, "bad JSON body: %v", err)
	}
	dec := json.NewDecoder(tee)
	dec.UseNumber()
	maxValues := bodyValuesPerItem * maxItems
	var (
		stack  []frame
		values int
	)
	for {
		tok, err := dec.Token()
		if err == io.EOF && len(stack) == 0 {
			return buf.Bytes(), nil // empty (or blank) body
		}
		if err != nil {
			return nil, readErr(err)
		}
		top := len(stack) - 1
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			stack = stack[:top]
			if len(stack) == 0 {
				break
			}
			if stack[top-1].object {
				stack[top-1].key = true
			}
			continue
		}
		if top >= 0 && stack[top].object && stack[top].key {
			stack[top].key = false // a member's key: counted with its value
			continue
		}
		if values++; values > maxValues {
			return nil, tooLarge("body has over %d JSON values", maxValues)
		}
		if top >= 0 {
			f := &stack[top]
			if f.n++; f.n > maxItems {
				if f.object {
					return nil, tooLarge("body has an object of over %d members", maxItems)
				}
				return nil, tooLarge("body has a list of over %d items (split the batch)", maxItems)
			}
			if f.object {
				f.key = true
			}
		}
		if d, ok := tok.(json.Delim); ok { // '{' or '['
			if len(stack) >= maxBodyDepth {
				return nil, status.Errorf(codes.InvalidArgument, "bad JSON body: nested over %d deep", maxBodyDepth)
			}
			stack = append(stack, frame{object: d == '{', key: d == '{'})
			continue
		}
		if len(stack) == 0 {
			break // a bare scalar: the decoder refuses it
		}
	}
	// The rest (blanks, or trailing bytes the decoder will refuse), still
	// bounded by maxBytes.
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return nil, readErr(err)
	}
	return buf.Bytes(), nil
}
