package gateway

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// obj is a JSON object of the document; encoding/json sorts its keys, so
// the document is the same bytes for the same table and descriptors.
type obj = map[string]any

// Document generates the OpenAPI 3.0 document of the HTTP API from a route
// table and the proto descriptors of its RPCs: one operation per route,
// one schema per message and enum under components/schemas (int64 and
// uint64 as strings, enums as string enums, maps as objects, repeated as
// arrays, Timestamp and Duration as strings, as protojson writes them).
// `go generate ./gateway/` writes it to docs/openapi.json.
func Document(routes []Route) ([]byte, error) {
	d := &docBuilder{schemas: obj{}, opIDs: map[string]int{}}
	paths := obj{}
	for _, rt := range routes {
		op, err := d.operation(rt)
		if err != nil {
			return nil, err
		}
		p, _ := paths[rt.openAPIPath()].(obj)
		if p == nil {
			p = obj{}
			paths[rt.openAPIPath()] = p
		}
		m := strings.ToLower(rt.Method)
		if _, dup := p[m]; dup {
			return nil, fmt.Errorf("gateway: route %s twice", rt)
		}
		p[m] = op
	}
	d.schemas["Error"] = obj{
		"type":        "object",
		"description": "The body of every error answer, and the data of a stream's final \"error\" event.",
		"properties": obj{
			"error":    obj{"type": "string", "description": "The message."},
			"code":     obj{"type": "integer", "description": "The HTTP status."},
			"status":   obj{"type": "string", "description": "The gRPC status code's name, e.g. NOT_FOUND."},
			"reason":   obj{"type": "string", "description": "The google.rpc.ErrorInfo reason, when there is one (NOT_LEADER, NO_LEADER, WRONG_CLUSTER)."},
			"metadata": obj{"type": "object", "additionalProperties": obj{"type": "string"}, "description": "The ErrorInfo metadata (leader_id, leader_address)."},
		},
		"required": []string{"error", "code", "status"},
	}
	doc := obj{
		"openapi": "3.0.3",
		"info": obj{
			"title":   "Heartbeat HTTP API",
			"version": "v1",
			"description": "The HTTP/JSON face of the heartbeat.v1.Coordinator gRPC API, generated from the gateway's " +
				"route table (gateway/routes.go) and the proto descriptors. Bodies and answers are protojson with " +
				"proto field names; 64-bit integers are strings. Errors map gRPC codes to HTTP statuses (docs/http.md).",
		},
		"paths": paths,
		"components": obj{
			"schemas": d.schemas,
			"responses": obj{
				"Error": obj{
					"description": "An error: its HTTP status follows from the gRPC code (docs/http.md).",
					"content":     obj{"application/json": obj{"schema": ref("Error")}},
				},
			},
		},
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("gateway: encoding the OpenAPI document: %w", err)
	}
	return append(b, '\n'), nil
}

// docBuilder collects the schemas the operations refer to.
type docBuilder struct {
	schemas obj
	opIDs   map[string]int
}

func ref(name string) obj { return obj{"$ref": "#/components/schemas/" + name} }

// operationID is unique in the document: the RPC's method name (or the
// handler's key), numbered from the second use on.
func (d *docBuilder) operationID(rt Route) string {
	id := rt.Handler
	if rt.RPC != "" {
		id = rt.RPC[strings.LastIndexByte(rt.RPC, '/')+1:]
	}
	d.opIDs[id]++
	if n := d.opIDs[id]; n > 1 {
		id = fmt.Sprintf("%s%d", id, n)
	}
	return id
}

// operation documents one route.
func (d *docBuilder) operation(rt Route) (obj, error) {
	op := obj{"operationId": d.operationID(rt), "summary": rt.Summary}
	errorRef := obj{"$ref": "#/components/responses/Error"}
	switch {
	case rt.Handler != "":
		if err := rt.check(nil); err != nil {
			return nil, fmt.Errorf("gateway: %w", err)
		}
		ok := obj{"description": "OK", "content": obj{rt.Produces: obj{"schema": obj{"type": "string"}}}}
		if rt.Handler == handlerOpenAPI {
			ok["content"] = obj{rt.Produces: obj{"schema": obj{"type": "object"}}}
		}
		resp := obj{"200": ok}
		if rt.Handler == HandlerReadyz {
			resp["503"] = obj{"description": "Not ready; the body lists each check.", "content": obj{rt.Produces: obj{"schema": obj{"type": "string"}}}}
		}
		if rt.Optional {
			resp["404"] = errorRef
		}
		op["responses"] = resp
		op["tags"] = []string{"node"}
		if params := pathParams(rt, nil); len(params) > 0 {
			op["parameters"] = params
		}
		return op, nil
	case rt.Pending != "":
		if err := rt.check(nil); err != nil {
			return nil, fmt.Errorf("gateway: %w", err)
		}
		op["description"] = rt.Pending + ". Until then it answers 501."
		op["responses"] = obj{"501": errorRef}
		op["tags"] = []string{"pending"}
		if params := pathParams(rt, nil); len(params) > 0 {
			op["parameters"] = params
		}
		return op, nil
	}
	md, err := rt.method()
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	if err := rt.check(md); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	in, out := md.Input(), md.Output()
	op["description"] = "gRPC: " + rt.RPC
	op["tags"] = []string{string(md.Parent().Name())}
	params := pathParams(rt, in)
	if rt.Body == BodyNone {
		params = append(params, d.queryParams(rt, in)...)
	} else {
		op["requestBody"] = obj{
			"required": false,
			"content":  obj{"application/json": obj{"schema": d.message(in)}},
		}
	}
	if rt.SSE != nil && rt.SSE.ResumeField != "" {
		params = append(params, obj{"name": "Last-Event-ID", "in": "header", "required": false,
			"description": "A reconnecting client's last event id: sets " + rt.SSE.ResumeField + " (and wins over the query parameter).",
			"schema":      obj{"type": "string"}})
	}
	if len(params) > 0 {
		op["parameters"] = params
	}
	ok := obj{"description": "OK"}
	if rt.SSE != nil {
		ok["description"] = d.sseDescription(rt, out)
		ok["content"] = obj{"text/event-stream": obj{"schema": obj{"type": "string"}}}
		op["x-sse-data"] = d.message(out)
	} else {
		ok["content"] = obj{"application/json": obj{"schema": d.message(out)}}
	}
	if h := readHeaders(out); len(h) > 0 {
		ok["headers"] = h
	}
	op["responses"] = obj{"200": ok, "default": errorRef}
	return op, nil
}

// sseDescription says how a stream's events are named and identified.
func (d *docBuilder) sseDescription(rt Route, out protoreflect.MessageDescriptor) string {
	s := rt.SSE
	var b strings.Builder
	fmt.Fprintf(&b, "Server-sent events, one per %s message (data: its protojson on one line). ", out.FullName())
	if s.EventField != "" {
		fmt.Fprintf(&b, "The event is named by its %s field", s.EventField)
		if fd := out.Fields().ByName(protoreflect.Name(s.EventField)); fd != nil && fd.Enum() != nil {
			fmt.Fprintf(&b, " (%s)", strings.Join(enumNames(fd.Enum()), ", "))
		}
		b.WriteString(". ")
	} else {
		fmt.Fprintf(&b, "Event %q. ", s.Event)
	}
	if s.IDField != "" {
		fmt.Fprintf(&b, "The id is its %s", s.IDField)
		if s.WholeRevisions {
			b.WriteString(", sent once a revision is complete (on the first event, and as an id-only block before the next revision's first event)")
		}
		b.WriteString(". ")
	}
	b.WriteString("A comment line keeps an idle stream open; the stream's error ends it as an \"error\" event (data: Error).")
	return b.String()
}

// pathParams documents the path variables.
func pathParams(rt Route, in protoreflect.MessageDescriptor) []any {
	var params []any
	for _, v := range rt.pathVars() {
		schema := obj{"type": "string"}
		if in != nil {
			if fd := in.Fields().ByName(protoreflect.Name(rt.field(v))); fd != nil {
				schema = scalarSchema(fd) // of one value, when the field is repeated
			}
		}
		p := obj{"name": v, "in": "path", "required": true, "schema": schema}
		if strings.Contains(rt.Pattern, "{"+v+"...}") {
			p["description"] = "The rest of the path, path-escaped: an id may contain '/' (as %2F)."
		}
		params = append(params, p)
	}
	return params
}

// queryParams documents the request fields a query parameter can fill.
func (d *docBuilder) queryParams(rt Route, in protoreflect.MessageDescriptor) []any {
	path := map[string]bool{}
	for _, v := range rt.pathVars() {
		path[rt.field(v)] = true
	}
	var params []any
	fs := in.Fields()
	for i := range fs.Len() {
		fd := fs.Get(i)
		if path[string(fd.Name())] || !isScalar(fd) {
			continue
		}
		schema := scalarSchema(fd)
		if fd.Enum() != nil {
			// Query values: the short names in any case, or the full ones.
			schema = obj{"type": "string", "enum": enumNames(fd.Enum())}
		}
		if fd.IsList() {
			schema = obj{"type": "array", "items": schema}
		}
		params = append(params, obj{"name": string(fd.Name()), "in": "query", "required": false, "schema": schema})
	}
	if fd := fs.ByName(consistencyField); fd != nil && fd.Kind() == protoreflect.EnumKind {
		params = append(params, obj{"name": staleParam, "in": "query", "required": false, "allowEmptyValue": true,
			"description": "The same as consistency=stale: answer from this node's state at once.",
			"schema":      obj{"type": "boolean"}})
	}
	return params
}

// readHeaders documents the freshness headers of a message with a read
// field (see setReadHeaders).
func readHeaders(md protoreflect.MessageDescriptor) obj {
	fd := readField(md)
	if fd == nil {
		return nil
	}
	h := obj{}
	fs := fd.Message().Fields()
	for i := range fs.Len() {
		f := fs.Get(i)
		header, ok := readHeader(f)
		if !ok {
			continue
		}
		schema := obj{"type": "string"}
		desc := "The answer's read." + string(f.Name()) + "."
		switch {
		case isDuration(f):
			schema = obj{"type": "integer", "format": "int64"}
			desc += " In milliseconds; -1 when unset."
		case f.Kind() == protoreflect.BoolKind:
			schema = obj{"type": "boolean"}
		case f.Kind() == protoreflect.StringKind:
			desc += " Absent when empty."
		case f.Kind() != protoreflect.EnumKind:
			schema = obj{"type": "integer"}
		}
		h[header] = obj{"description": desc, "schema": schema}
	}
	return h
}

// message returns a $ref to md's schema, adding it (and those it refers
// to) to the components.
func (d *docBuilder) message(md protoreflect.MessageDescriptor) obj {
	if s := wellKnown(md); s != nil {
		return s
	}
	name := string(md.FullName())
	if _, ok := d.schemas[name]; ok {
		return ref(name)
	}
	props := obj{}
	d.schemas[name] = obj{"type": "object", "properties": props} // before the fields: recursion
	fs := md.Fields()
	for i := range fs.Len() {
		props[string(fs.Get(i).Name())] = d.field(fs.Get(i))
	}
	return ref(name)
}

// field is the schema of one field.
func (d *docBuilder) field(fd protoreflect.FieldDescriptor) obj {
	if fd.IsMap() {
		return obj{"type": "object", "additionalProperties": d.single(fd.MapValue())}
	}
	s := d.single(fd)
	if fd.IsList() {
		return obj{"type": "array", "items": s}
	}
	return s
}

// single is the schema of one value of fd.
func (d *docBuilder) single(fd protoreflect.FieldDescriptor) obj {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return d.message(fd.Message())
	case protoreflect.EnumKind:
		return d.enum(fd.Enum())
	}
	return scalarSchema(fd)
}

// enum returns a $ref to an enum's schema: a string of its value names.
func (d *docBuilder) enum(ed protoreflect.EnumDescriptor) obj {
	name := string(ed.FullName())
	if _, ok := d.schemas[name]; !ok {
		vs := ed.Values()
		names := make([]string, 0, vs.Len())
		for i := range vs.Len() {
			names = append(names, string(vs.Get(i).Name()))
		}
		d.schemas[name] = obj{"type": "string", "enum": names}
	}
	return ref(name)
}

// scalarSchema is the schema of a scalar as protojson writes it.
func scalarSchema(fd protoreflect.FieldDescriptor) obj {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return obj{"type": "boolean"}
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return obj{"type": "integer", "format": "int32"}
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return obj{"type": "integer", "format": "int64", "minimum": 0, "maximum": 4294967295}
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return obj{"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"}
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return obj{"type": "string", "format": "uint64", "pattern": "^[0-9]+$"}
	case protoreflect.FloatKind:
		return obj{"type": "number", "format": "float"}
	case protoreflect.DoubleKind:
		return obj{"type": "number", "format": "double"}
	case protoreflect.BytesKind:
		return obj{"type": "string", "format": "byte"}
	case protoreflect.EnumKind:
		vs := fd.Enum().Values()
		names := make([]string, 0, vs.Len())
		for i := range vs.Len() {
			names = append(names, string(vs.Get(i).Name()))
		}
		sort.Strings(names)
		return obj{"type": "string", "enum": names}
	}
	return obj{"type": "string"}
}

// wellKnown is the schema of a well-known type protojson writes as a
// scalar; nil for other messages.
func wellKnown(md protoreflect.MessageDescriptor) obj {
	switch md.FullName() {
	case "google.protobuf.Timestamp":
		return obj{"type": "string", "format": "date-time"}
	case "google.protobuf.Duration":
		return obj{"type": "string", "format": "duration", "pattern": `^-?[0-9]+(\.[0-9]+)?s$`, "example": "1.5s"}
	case "google.protobuf.Empty":
		return obj{"type": "object"}
	case "google.protobuf.StringValue":
		return obj{"type": "string"}
	case "google.protobuf.BoolValue":
		return obj{"type": "boolean"}
	case "google.protobuf.Int32Value", "google.protobuf.UInt32Value":
		return obj{"type": "integer"}
	case "google.protobuf.Int64Value", "google.protobuf.UInt64Value":
		return obj{"type": "string", "format": "int64"}
	}
	return nil
}
