package gateway

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// Body says where the body of an RPC route's request goes.
type Body int

const (
	// BodyNone: the request has no body (a non-empty one is a 400); path
	// variables and query parameters fill the request message.
	BodyNone Body = iota
	// BodyAll: the whole body is the request message in protojson (unknown
	// fields are a 400); path variables fill fields after it (a body that
	// names the same field with another value is a 400), query parameters
	// too.
	BodyAll
)

// SSE turns a server-streaming route into a server-sent-event stream: each
// message of the gRPC stream is one event.
type SSE struct {
	// Event names every event ("event: <Event>").
	Event string
	// EventField, when set, names each event by the value of this string or
	// enum field of the message (an enum value by its name less the enum's
	// prefix, in lower case: CHANGE_KIND_ASSIGNED → "assigned"). Event is
	// the name while the field is empty.
	EventField string
	// IDField, when set, is a uint64 field carried as the event's "id:"
	// (its revision), so that a reconnecting client's Last-Event-ID
	// resumes the stream. Zero: no id.
	IDField string
	// WholeRevisions: several messages may share one IDField value (one
	// revision of several changes). Then an id is only sent once a
	// revision is known to be complete — when a message of a later
	// revision arrives — as an id-only block ("id: R" and a blank line,
	// no data: it sets the client's Last-Event-ID and fires no event);
	// the first message of the stream ("start") has it at once. A client
	// that resumes from its Last-Event-ID so never misses a change; it may
	// see the changes of the last revision it saw again.
	WholeRevisions bool
	// ResumeField, when set, is the request field that the Last-Event-ID
	// header fills (it wins over a query parameter for the same field).
	ResumeField string
}

// Route is one entry of the route table: an HTTP method and path pattern
// mapped onto one Coordinator RPC, or a route the node serves itself
// (Handler routes: health, metrics, profiles, this document).
type Route struct {
	// Method is the HTTP method (GET also answers HEAD).
	Method string
	// Pattern is a Go 1.22 http.ServeMux path pattern, without the method:
	// "/v1/members/{node_id}/priority". A wildcard names the request field
	// it fills; "{ids...}" takes the rest of the path (ids containing '/',
	// sent path-escaped).
	Pattern string
	// RPC is the full gRPC method name ("/heartbeat.v1.Coordinator/GetLeader");
	// the request and response message types come from its descriptor.
	// Empty for a Handler route.
	RPC string
	// Fields maps a wildcard to the request field it fills when their
	// names differ ({"id": "ids"}: DELETE /v1/resources/{id...} fills the
	// repeated ids). A wildcard fills the field of its own name otherwise.
	Fields map[string]string
	// Body says where the request body goes.
	Body Body
	// SSE is set for a server-streaming RPC: the route answers with
	// server-sent events.
	SSE *SSE
	// Timeout bounds the call (0: the request's own context only).
	Timeout time.Duration
	// Pending, when set, marks a route whose RPC does not exist yet: it
	// answers 501 with this text, and the document lists it as such.
	Pending string
	// Summary is the one-line description in the OpenAPI document.
	Summary string

	// Handler names a route the node serves itself (no RPC): the key of
	// its handler in Config.Handlers. A Handler route without a handler
	// there is not served (pprof when disabled).
	Handler string
	// Produces is the content type of a Handler route's answer.
	Produces string
	// Optional marks a Handler route that only some nodes serve (pprof):
	// the document says so.
	Optional bool
}

// String is the route's ServeMux pattern with its method: "GET /v1/leader".
func (r Route) String() string { return r.Method + " " + r.Pattern }

// openAPIPath is the pattern as an OpenAPI path template: "{id...}" becomes
// "{id}".
func (r Route) openAPIPath() string { return strings.ReplaceAll(r.Pattern, "...}", "}") }

// pathVars lists the wildcards of the pattern, in order.
func (r Route) pathVars() []string {
	var vars []string
	rest := r.Pattern
	for {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			return vars
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return vars
		}
		name := strings.TrimSuffix(rest[i+1:i+j], "...")
		if name != "$" {
			vars = append(vars, name)
		}
		rest = rest[i+j+1:]
	}
}

// field is the request field path variable v fills.
func (r Route) field(v string) string {
	if f, ok := r.Fields[v]; ok {
		return f
	}
	return v
}

// method resolves the route's RPC to its descriptor.
func (r Route) method() (protoreflect.MethodDescriptor, error) {
	svc, name, ok := strings.Cut(strings.TrimPrefix(r.RPC, "/"), "/")
	if !ok || svc == "" || name == "" {
		return nil, fmt.Errorf("%s: RPC %q: want /package.Service/Method", r, r.RPC)
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil {
		return nil, fmt.Errorf("%s: service %s: %w", r, svc, err)
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil, fmt.Errorf("%s: %s is not a service", r, svc)
	}
	md := sd.Methods().ByName(protoreflect.Name(name))
	if md == nil {
		return nil, fmt.Errorf("%s: service %s has no method %s", r, svc, name)
	}
	return md, nil
}

// check validates the entry against its RPC's descriptor: every path
// variable and SSE field names a field of the right kind, a streaming RPC
// has SSE and a unary one does not. md is nil for Handler and Pending
// routes.
func (r Route) check(md protoreflect.MethodDescriptor) error {
	switch r.Method {
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch:
	default:
		return fmt.Errorf("%s: method %q", r, r.Method)
	}
	if !strings.HasPrefix(r.Pattern, "/") {
		return fmt.Errorf("%s: pattern must start with /", r)
	}
	if r.Handler != "" {
		if r.RPC != "" || r.SSE != nil || r.Body != BodyNone {
			return fmt.Errorf("%s: a Handler route has no RPC, SSE or body", r)
		}
		return nil
	}
	if md == nil {
		if r.Pending == "" {
			return fmt.Errorf("%s: no RPC", r)
		}
		return nil
	}
	if md.IsStreamingClient() {
		return fmt.Errorf("%s: %s streams from the client: not served over HTTP", r, md.FullName())
	}
	if md.IsStreamingServer() != (r.SSE != nil) {
		return fmt.Errorf("%s: %s: SSE is for server-streaming RPCs, and they need it", r, md.FullName())
	}
	if r.SSE != nil && r.Method != http.MethodGet {
		return fmt.Errorf("%s: an SSE route is a GET", r)
	}
	in, out := md.Input(), md.Output()
	for v := range r.Fields {
		if !slices.Contains(r.pathVars(), v) {
			return fmt.Errorf("%s: Fields names %q, which is no path variable", r, v)
		}
	}
	for _, v := range r.pathVars() {
		f := in.Fields().ByName(protoreflect.Name(r.field(v)))
		if f == nil {
			return fmt.Errorf("%s: path variable %q: %q is no field of %s", r, v, r.field(v), in.FullName())
		}
		if !isScalar(f) {
			return fmt.Errorf("%s: path variable %q: field of kind %v", r, v, f.Kind())
		}
	}
	if s := r.SSE; s != nil {
		if s.Event == "" && s.EventField == "" {
			return fmt.Errorf("%s: SSE needs Event or EventField", r)
		}
		if f := s.EventField; f != "" {
			fd := out.Fields().ByName(protoreflect.Name(f))
			if fd == nil || fd.IsList() || (fd.Kind() != protoreflect.StringKind && fd.Kind() != protoreflect.EnumKind) {
				return fmt.Errorf("%s: EventField %q is no string or enum field of %s", r, f, out.FullName())
			}
		}
		if f := s.IDField; f != "" {
			fd := out.Fields().ByName(protoreflect.Name(f))
			if fd == nil || fd.IsList() || fd.Kind() != protoreflect.Uint64Kind {
				return fmt.Errorf("%s: IDField %q is no uint64 field of %s", r, f, out.FullName())
			}
		}
		if f := s.ResumeField; f != "" {
			fd := in.Fields().ByName(protoreflect.Name(f))
			if fd == nil || fd.IsList() || fd.Kind() != protoreflect.Uint64Kind {
				return fmt.Errorf("%s: ResumeField %q is no uint64 field of %s", r, f, in.FullName())
			}
		}
	}
	return nil
}

// isScalar reports whether a path variable or query parameter can fill f:
// a singular or repeated scalar or enum (not a message or map).
func isScalar(f protoreflect.FieldDescriptor) bool {
	if f.IsMap() {
		return false
	}
	switch f.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return false
	}
	return true
}
