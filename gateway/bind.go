package gateway

import (
	"bytes"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// consistencyField is the request field that ?stale sets: an enum field
// with a value whose name ends in "STALE" (heartbeat.v1.Consistency).
const consistencyField = "consistency"

// staleParam is the query parameter kept from before the gateway: ?stale,
// ?stale=true (and 1) ask for a stale read; ?stale=false for a consistent
// one. It is the same as ?consistency=stale.
const staleParam = "stale"

// bind fills req from the request: the body (BodyAll), then the path
// variables, then the query parameters. Every failure is an
// InvalidArgument status error.
func bind(rt Route, w http.ResponseWriter, r *http.Request, req proto.Message, lim bodyLimits) error {
	m := req.ProtoReflect()
	if err := bindBody(rt, w, r, req, lim); err != nil {
		return err
	}
	fromBody := proto.Clone(req).ProtoReflect()
	for _, v := range rt.pathVars() {
		fd := m.Descriptor().Fields().ByName(protoreflect.Name(rt.field(v)))
		val := r.PathValue(v)
		if val == "" { // only a "{x...}" wildcard can be empty: no such resource
			return status.Errorf(codes.NotFound, "no such endpoint: %s (empty %s)", r.URL.Path, v)
		}
		if fromBody.Has(fd) && !fd.IsList() {
			if prev := scalarString(fromBody.Get(fd), fd); prev != val {
				return status.Errorf(codes.InvalidArgument, "body %s %q differs from the path's %q", v, prev, val)
			}
		}
		if err := setField(m, fd, []string{val}); err != nil {
			return err
		}
	}
	if err := bindQuery(rt, r, m); err != nil {
		return err
	}
	// The gRPC message is held to the same limit as the body (the client
	// port's MaxRecvMsgSize is the same number): refused here with the
	// same 413 rather than by the server.
	if n := proto.Size(req); int64(n) > lim.bytes {
		return tooLarge("request of %d bytes encoded, over %d (--max-request-bytes)", n, lim.bytes)
	}
	return nil
}

// bodyLimits bound a request: its body's bytes (and its gRPC message's),
// and the items of one list in the body.
type bodyLimits struct {
	bytes int64
	items int
}

// bindBody decodes a BodyAll route's body (protojson, unknown fields are
// errors, bounded by lim, scanned as it streams in: readBody); a BodyNone
// route must have none.
func bindBody(rt Route, w http.ResponseWriter, r *http.Request, req proto.Message, lim bodyLimits) error {
	if r.Body == nil {
		return nil
	}
	body, err := readBody(w, r.Body, lim.bytes, lim.items)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil // an empty body is the empty message
	}
	if rt.Body == BodyNone {
		return status.Errorf(codes.InvalidArgument, "%s takes no body", rt)
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(body, req); err != nil {
		return status.Errorf(codes.InvalidArgument, "bad JSON body: %v", err)
	}
	return nil
}

// bindQuery fills fields from the query parameters, each named by its proto
// field name (?node_id=n2&consistency=stale). ?stale is the short form of
// consistency=stale. An unknown parameter is an error, so that a misspelt
// one does not silently change nothing.
func bindQuery(rt Route, r *http.Request, m protoreflect.Message) error {
	// Not r.URL.Query(): it drops a pair that does not parse ("%zz", a
	// ';' separator) without a word, and the call would go on without it.
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "query string: %v", err)
	}
	if rt.SSE != nil && rt.SSE.ResumeField != "" {
		if id := r.Header.Get("Last-Event-ID"); id != "" {
			q.Del(rt.SSE.ResumeField) // the reconnecting client's header wins
			q.Set(rt.SSE.ResumeField, id)
		}
	}
	fields := m.Descriptor().Fields()
	names := make([]string, 0, len(q))
	for k := range q {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		vals := q[k]
		if k == staleParam {
			if err := bindStale(m, vals, q.Has(consistencyField)); err != nil {
				return err
			}
			continue
		}
		fd := fields.ByName(protoreflect.Name(k))
		if fd != nil && slices.ContainsFunc(rt.pathVars(), func(v string) bool { return rt.field(v) == k }) {
			return status.Errorf(codes.InvalidArgument, "query parameter %q: the path gives it", k)
		}
		if fd == nil || !isScalar(fd) {
			return status.Errorf(codes.InvalidArgument, "unknown query parameter %q (%s takes %s)", k, rt, queryNames(m.Descriptor()))
		}
		if err := setField(m, fd, vals); err != nil {
			return err
		}
	}
	return nil
}

// queryNames lists the fields a query parameter can fill.
func queryNames(md protoreflect.MessageDescriptor) string {
	var names []string
	fs := md.Fields()
	for i := range fs.Len() {
		if isScalar(fs.Get(i)) {
			names = append(names, string(fs.Get(i).Name()))
		}
	}
	if fs.ByName(consistencyField) != nil {
		names = append(names, staleParam)
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// bindStale applies ?stale to the consistency field.
func bindStale(m protoreflect.Message, vals []string, withConsistency bool) error {
	fd := m.Descriptor().Fields().ByName(consistencyField)
	if fd == nil || fd.Kind() != protoreflect.EnumKind {
		return status.Errorf(codes.InvalidArgument, "unknown query parameter %q: not a read", staleParam)
	}
	var stale bool
	switch v := strings.ToLower(strings.Join(vals, "")); v {
	case "", "1", "true":
		stale = true
	case "0", "false":
	default:
		return status.Errorf(codes.InvalidArgument, "stale=%q: want no value, true or false", v)
	}
	if !stale {
		return nil
	}
	if withConsistency {
		return status.Errorf(codes.InvalidArgument, "stale together with consistency: give one")
	}
	ev := enumValue(fd.Enum(), "stale")
	if ev == nil {
		return status.Errorf(codes.Internal, "enum %s has no STALE value", fd.Enum().FullName())
	}
	m.Set(fd, protoreflect.ValueOfEnum(ev.Number()))
	return nil
}

// setField sets fd from its text form(s): one value for a singular field,
// each for a repeated one.
func setField(m protoreflect.Message, fd protoreflect.FieldDescriptor, vals []string) error {
	if !fd.IsList() {
		if len(vals) != 1 {
			return status.Errorf(codes.InvalidArgument, "%s given %d times", fd.Name(), len(vals))
		}
		v, err := parseScalar(fd, vals[0])
		if err != nil {
			return err
		}
		m.Set(fd, v)
		return nil
	}
	l := m.Mutable(fd).List()
	for _, s := range vals {
		v, err := parseScalar(fd, s)
		if err != nil {
			return err
		}
		l.Append(v)
	}
	return nil
}

// parseScalar parses one value of a scalar or enum field. Bools take
// true/false/1/0 and no value (true); enums their value name in any case,
// with or without the enum's prefix ("stale", "CONSISTENCY_STALE"), or
// number.
func parseScalar(fd protoreflect.FieldDescriptor, s string) (protoreflect.Value, error) {
	bad := func(want string) (protoreflect.Value, error) {
		return protoreflect.Value{}, status.Errorf(codes.InvalidArgument, "%s=%q: want %s", fd.Name(), s, want)
	}
	switch fd.Kind() {
	case protoreflect.StringKind:
		// A proto string must be UTF-8: the call would fail to marshal (a
		// 500) on the way to the client port.
		if !utf8.ValidString(s) {
			return bad("valid UTF-8")
		}
		return protoreflect.ValueOfString(s), nil
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte(s)), nil
	case protoreflect.BoolKind:
		switch strings.ToLower(s) {
		case "", "1", "true":
			return protoreflect.ValueOfBool(true), nil
		case "0", "false":
			return protoreflect.ValueOfBool(false), nil
		}
		return bad("true or false")
	case protoreflect.EnumKind:
		if ev := enumValue(fd.Enum(), s); ev != nil {
			return protoreflect.ValueOfEnum(ev.Number()), nil
		}
		if n, err := strconv.ParseInt(s, 10, 32); err == nil && fd.Enum().Values().ByNumber(protoreflect.EnumNumber(n)) != nil {
			return protoreflect.ValueOfEnum(protoreflect.EnumNumber(n)), nil
		}
		return bad("one of " + strings.Join(enumNames(fd.Enum()), ", "))
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		n, err := strconv.ParseInt(s, 10, 32)
		if err != nil {
			return bad("a 32-bit integer")
		}
		return protoreflect.ValueOfInt32(int32(n)), nil
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return bad("a 64-bit integer")
		}
		return protoreflect.ValueOfInt64(n), nil
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return bad("an unsigned 32-bit integer")
		}
		return protoreflect.ValueOfUint32(uint32(n)), nil
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return bad("an unsigned integer")
		}
		return protoreflect.ValueOfUint64(n), nil
	case protoreflect.FloatKind:
		f, err := strconv.ParseFloat(s, 32)
		if err != nil {
			return bad("a number")
		}
		return protoreflect.ValueOfFloat32(float32(f)), nil
	case protoreflect.DoubleKind:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return bad("a number")
		}
		return protoreflect.ValueOfFloat64(f), nil
	}
	return bad("a scalar")
}

// enumPrefix is the prefix protobuf style gives an enum's value names:
// CONSISTENCY_ for Consistency, RAFT_STATE_ for RaftState. It is read off
// the zero value (PREFIX_UNSPECIFIED), else derived from the enum's name.
func enumPrefix(ed protoreflect.EnumDescriptor) string {
	if zero := ed.Values().ByNumber(0); zero != nil && strings.HasSuffix(string(zero.Name()), "_UNSPECIFIED") {
		return strings.TrimSuffix(string(zero.Name()), "UNSPECIFIED")
	}
	var b strings.Builder
	for i, r := range string(ed.Name()) {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String()) + "_"
}

// enumShort is an enum value's name less the enum's prefix, in lower case:
// "stale" for CONSISTENCY_STALE.
func enumShort(ed protoreflect.EnumDescriptor, v protoreflect.EnumValueDescriptor) string {
	return strings.ToLower(strings.TrimPrefix(string(v.Name()), enumPrefix(ed)))
}

// enumValue finds a value by name, case-insensitively, with or without the
// enum's prefix.
func enumValue(ed protoreflect.EnumDescriptor, s string) protoreflect.EnumValueDescriptor {
	vs := ed.Values()
	for i := range vs.Len() {
		v := vs.Get(i)
		if strings.EqualFold(string(v.Name()), s) || strings.EqualFold(enumShort(ed, v), s) {
			return v
		}
	}
	return nil
}

// enumNames lists an enum's short value names.
func enumNames(ed protoreflect.EnumDescriptor) []string {
	vs := ed.Values()
	out := make([]string, 0, vs.Len())
	for i := range vs.Len() {
		out = append(out, enumShort(ed, vs.Get(i)))
	}
	return out
}

// scalarString is the text form of a singular scalar value, to compare a
// body's field with a path variable.
func scalarString(v protoreflect.Value, fd protoreflect.FieldDescriptor) string {
	if fd.Kind() == protoreflect.EnumKind {
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			return enumShort(fd.Enum(), ev)
		}
	}
	return v.String()
}
