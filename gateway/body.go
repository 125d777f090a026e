package gateway

import (
	"bytes"
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
	n       int  // elements (array) or members (object) so far
	pending bool // opened or after a comma: the next token starts an element
}

// scanner counts the elements of JSON containers as bytes arrive. It is not
// a validator (the decoder is): it follows strings, nesting and commas, so
// that on valid JSON every count is exact, and on any input its work and
// memory are bounded by the bytes and maxBodyDepth.
type scanner struct {
	stack             []frame
	values            int
	maxItems, maxVals int
	inStr, esc        bool
}

// element notes a token that may start an element of the open container.
func (s *scanner) element() error {
	if len(s.stack) == 0 {
		return nil
	}
	f := &s.stack[len(s.stack)-1]
	if !f.pending {
		return nil // a member's value, or the rest of a scalar
	}
	f.pending = false
	if f.n++; f.n > s.maxItems {
		return tooLarge("body has a list or object of over %d items (split the batch)", s.maxItems)
	}
	if s.values++; s.values > s.maxVals {
		return tooLarge("body has over %d JSON values", s.maxVals)
	}
	return nil
}

// feed scans p.
func (s *scanner) feed(p []byte) error {
	for _, c := range p {
		if s.inStr {
			switch {
			case s.esc:
				s.esc = false
			case c == '\\':
				s.esc = true
			case c == '"':
				s.inStr = false
			}
			continue
		}
		switch c {
		case ' ', '\t', '\n', '\r', ':':
		case '[', '{':
			if err := s.element(); err != nil {
				return err
			}
			if len(s.stack) >= maxBodyDepth {
				return status.Errorf(codes.InvalidArgument, "bad JSON body: nested over %d deep", maxBodyDepth)
			}
			s.stack = append(s.stack, frame{pending: true})
		case ']', '}':
			if len(s.stack) == 0 {
				return status.Errorf(codes.InvalidArgument, "bad JSON body: unexpected %q", c)
			}
			s.stack = s.stack[:len(s.stack)-1]
		case ',':
			if len(s.stack) == 0 {
				return status.Errorf(codes.InvalidArgument, "bad JSON body: unexpected ','")
			}
			s.stack[len(s.stack)-1].pending = true
		case '"':
			s.inStr = true
			if err := s.element(); err != nil {
				return err
			}
		default: // a number or a literal (its first byte counts)
			if err := s.element(); err != nil {
				return err
			}
		}
	}
	return nil
}

// readBody reads a request body of at most maxBytes, scanning its JSON as it
// streams in: more than maxItems elements in one array or members in one
// object, more than bodyValuesPerItem*maxItems elements in all, or nesting
// deeper than maxBodyDepth end the read at once, so that a huge batch is
// refused after a few kilobytes instead of decoded whole (a 32 MiB body of
// "[{},{},...]" would take gigabytes as messages). Only the bytes read so
// far are held. It returns the body for the decoder, which checks the
// syntax. Over a limit: ResourceExhausted (ReasonTooLarge); too deep or
// unbalanced: InvalidArgument.
func readBody(w http.ResponseWriter, body io.ReadCloser, maxBytes int64, maxItems int) ([]byte, error) {
	r := http.MaxBytesReader(w, body, maxBytes)
	s := scanner{maxItems: maxItems, maxVals: bodyValuesPerItem * maxItems}
	var buf bytes.Buffer
	chunk := make([]byte, 32<<10)
	for {
		n, err := r.Read(chunk)
		if n > 0 {
			if serr := s.feed(chunk[:n]); serr != nil {
				return nil, serr
			}
			buf.Write(chunk[:n])
		}
		var tooBig *http.MaxBytesError
		switch {
		case err == io.EOF:
			return buf.Bytes(), nil
		case errors.As(err, &tooBig):
			return nil, tooLarge("body over %d bytes (--max-request-bytes)", maxBytes)
		case err != nil:
			return nil, status.Errorf(codes.InvalidArgument, "reading body: %v", err)
		}
	}
}
