package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// DefaultMaxBodyBytes bounds a request body and its gRPC message: 1.5 MiB,
// etcd's default request limit, the node's default --max-request-bytes (the
// same number bounds the client port's gRPC messages, so that a body the
// call could not carry is refused here with a clear 413). A batch of a few
// thousand resources with short ids fits; split bigger batches.
const DefaultMaxBodyBytes = 3 << 19

// Config configures the gateway. Conn is required; DefaultConfig gives the
// rest.
type Config struct {
	// Conn is a client connection to the node's own client port: every
	// HTTP call is a gRPC call on it, so the server's interceptors and
	// limits apply to HTTP exactly as to gRPC.
	Conn grpc.ClientConnInterface
	// Routes is the route table (nil: Routes()).
	Routes []Route
	// Handlers serves the table's Handler routes, by their Handler key
	// (HandlerHealthz, ...). A Handler route without an entry is not
	// served; an entry no route names is an error.
	Handlers map[string]http.Handler
	// Timeouts override the routes' Timeout by full RPC method name (the
	// node bounds Leave by its drain timeout).
	Timeouts map[string]time.Duration
	// MaxBodyBytes bounds a request body, and the gRPC message made from it
	// (DefaultMaxBodyBytes); a longer one is a 413 (ResourceExhausted,
	// ReasonTooLarge).
	MaxBodyBytes int64
	// MaxBodyItems bounds the elements of one JSON list (and the members of
	// one object) in a body, counted while the body streams in
	// (DefaultMaxBodyItems); more is a 413 before the body is decoded.
	MaxBodyItems int
	// SSEKeepAlive is the interval of the keep-alive comment on an idle
	// stream (15 s), so that proxies keep it open.
	SSEKeepAlive time.Duration
	// SSEWriteTimeout bounds one write (event plus flush) to a stream's
	// client (10 s): a client that takes nothing for this long loses its
	// stream, so a stalled reader never holds a watch open.
	SSEWriteTimeout time.Duration
	// Credentials, when set, returns the gRPC metadata that carries an
	// HTTP caller's credentials to its RPC (the node's authz forwards the
	// Authorization header, or the identity of a client certificate its
	// HTTPS server verified); the RPC's server decides. An error answers
	// the request instead (its gRPC status mapped as any other).
	Credentials func(*http.Request) (metadata.MD, error)
	// Authorize, when set, is asked before a route is served: with a
	// Handler route's key (metrics, profiles, health: no RPC whose server
	// could decide), and with an RPC route's full method name before its
	// request is even read, so that a caller without the right is refused
	// (401, 403) before a malformed body is pointed out (400). The RPC's
	// server checks the call again. An error answers the request instead.
	Authorize func(r *http.Request, key string) error
	// Context, when it ends (the node stops), ends every open stream with
	// a final "error" event (503) within sseFinalWrite. Nil: never.
	Context context.Context
}

// DefaultConfig returns the defaults; Conn is left to the caller.
func DefaultConfig() Config {
	return Config{
		MaxBodyBytes:    DefaultMaxBodyBytes,
		MaxBodyItems:    DefaultMaxBodyItems,
		SSEKeepAlive:    15 * time.Second,
		SSEWriteTimeout: 10 * time.Second,
	}
}

// Validate reports a config New cannot use.
func (c Config) Validate() error {
	switch {
	case c.Conn == nil:
		return errors.New("gateway: Config.Conn is required")
	case c.MaxBodyBytes <= 0:
		return fmt.Errorf("gateway: MaxBodyBytes %d must be positive", c.MaxBodyBytes)
	case c.MaxBodyItems <= 0:
		return fmt.Errorf("gateway: MaxBodyItems %d must be positive", c.MaxBodyItems)
	case c.SSEKeepAlive <= 0 || c.SSEWriteTimeout <= 0:
		return fmt.Errorf("gateway: SSEKeepAlive %v and SSEWriteTimeout %v must be positive", c.SSEKeepAlive, c.SSEWriteTimeout)
	}
	for m, t := range c.Timeouts {
		if t < 0 {
			return fmt.Errorf("gateway: timeout of %s is negative", m)
		}
	}
	return nil
}

// gateway is the http.Handler New returns.
type gateway struct {
	cfg  Config
	mux  *http.ServeMux
	done <-chan struct{} // cfg.Context's, or nil
	doc  []byte          // the OpenAPI document
	bare map[string]bool // patterns registered only to stop a redirect (see New)
	// needValue: patterns of RPC routes, whose wildcards must not be empty
	// (see nonEmpty).
	needValue map[string]bool
}

// subtreeRoot is the root of a pattern ending in a "{x...}" wildcard:
// "/v1/resources" for "/v1/resources/{ids...}".
func subtreeRoot(pattern string) (string, bool) {
	i := strings.LastIndex(pattern, "/{")
	if i <= 0 || !strings.HasSuffix(pattern, "...}") {
		return "", false
	}
	return pattern[:i], true
}

// fallback is the pattern of the catch-all route: 404 or 405.
const fallback = "/"

// probeMethods are the methods tried to fill a 405's Allow header.
var probeMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// New builds the HTTP face of the Coordinator API from the route table: a
// handler that answers each route by calling its RPC on cfg.Conn, a JSON
// 404 for an unknown path and a JSON 405 (with Allow) for a known path
// with another method. It fails on a route table that does not match the
// proto descriptors.
func New(cfg Config) (http.Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Routes == nil {
		cfg.Routes = Routes()
	}
	doc, err := Document(cfg.Routes)
	if err != nil {
		return nil, err
	}
	g := &gateway{cfg: cfg, mux: http.NewServeMux(), doc: doc, needValue: map[string]bool{}}
	if cfg.Context != nil {
		g.done = cfg.Context.Done()
	}
	used := map[string]bool{}
	for _, rt := range cfg.Routes {
		h, err := g.handler(rt)
		if err != nil {
			return nil, err
		}
		if rt.Handler != "" {
			used[rt.Handler] = true
		}
		if h == nil {
			continue // a Handler route the node does not serve
		}
		if len(rt.pathVars()) > 0 && rt.Handler == "" {
			h = g.nonEmpty(rt, h)
			g.needValue[rt.String()] = true
		}
		if err := register(g.mux, rt.String(), h); err != nil {
			return nil, err
		}
	}
	// A "{x...}" pattern is a subtree: ServeMux would redirect its bare
	// root ("/v1/resources") to it ("/v1/resources/") for a method the root
	// lacks. Answer those with 404 / 405 instead, like any other miss.
	g.bare = map[string]bool{}
	for _, rt := range cfg.Routes {
		root, ok := subtreeRoot(rt.Pattern)
		if !ok {
			continue
		}
		p := rt.Method + " " + root
		if g.bare[p] || slices.ContainsFunc(cfg.Routes, func(o Route) bool { return o.String() == p }) {
			continue
		}
		g.bare[p] = true
		if err := register(g.mux, p, http.HandlerFunc(g.notFound)); err != nil {
			return nil, err
		}
	}
	for k := range cfg.Handlers {
		if !used[k] {
			return nil, fmt.Errorf("gateway: handler %q: no route names it", k)
		}
	}
	g.mux.HandleFunc(fallback, g.notFound)
	return g, nil
}

// register adds one pattern, turning ServeMux's panic on a conflict into
// an error.
func register(mux *http.ServeMux, pattern string, h http.Handler) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("gateway: route %s: %v", pattern, p)
		}
	}()
	mux.Handle(pattern, h)
	return nil
}

// handler builds the handler of one route; nil for a Handler route the
// node does not serve.
func (g *gateway) handler(rt Route) (http.Handler, error) {
	switch {
	case rt.Handler == handlerOpenAPI:
		return http.HandlerFunc(g.serveDocument), rt.check(nil)
	case rt.Handler != "":
		h := g.cfg.Handlers[rt.Handler]
		if h != nil && g.cfg.Authorize != nil {
			key, inner := rt.Handler, h
			h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if err := g.cfg.Authorize(r, key); err != nil {
					writeError(w, err)
					return
				}
				inner.ServeHTTP(w, r)
			})
		}
		return h, rt.check(nil)
	case rt.Pending != "":
		if err := rt.check(nil); err != nil {
			return nil, err
		}
		msg := rt.Pending
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			writeError(w, status.Error(codes.Unimplemented, msg))
		}), nil
	}
	md, err := rt.method()
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	if err := rt.check(md); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	in, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
	if err != nil {
		return nil, fmt.Errorf("gateway: %s: %w", rt, err)
	}
	out, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	if err != nil {
		return nil, fmt.Errorf("gateway: %s: %w", rt, err)
	}
	if rt.SSE != nil {
		return g.stream(rt, in, out), nil
	}
	return g.unary(rt, in, out), nil
}

// nonEmpty answers a request whose "{x...}" wildcard is empty
// ("/v1/resources/") as a miss: no route serves that path.
func (g *gateway) nonEmpty(rt Route, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, v := range rt.pathVars() {
			if r.PathValue(v) == "" {
				g.notFound(w, r)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// timeout is the bound of rt's call.
func (g *gateway) timeout(rt Route) time.Duration {
	if t, ok := g.cfg.Timeouts[rt.RPC]; ok {
		return t
	}
	return rt.Timeout
}

// authorize asks Config.Authorize, if set, about key.
func (g *gateway) authorize(r *http.Request, key string) error {
	if g.cfg.Authorize == nil {
		return nil
	}
	return g.cfg.Authorize(r, key)
}

// withCredentials is r's context with the caller's credentials as outgoing
// metadata (Config.Credentials).
func (g *gateway) withCredentials(r *http.Request) (context.Context, error) {
	ctx := r.Context()
	if g.cfg.Credentials == nil {
		return ctx, nil
	}
	md, err := g.cfg.Credentials(r)
	if err != nil {
		return nil, err
	}
	return metadata.NewOutgoingContext(ctx, md), nil
}

// bodyLimits are the configured limits of a request.
func (g *gateway) bodyLimits() bodyLimits {
	return bodyLimits{bytes: g.cfg.MaxBodyBytes, items: g.cfg.MaxBodyItems}
}

// ServeHTTP dispatches on the route table.
func (g *gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) { g.mux.ServeHTTP(w, r) }

// unary answers a route of a unary RPC: bind the request, call, write the
// response (and its freshness headers).
func (g *gateway) unary(rt Route, in, out protoreflect.MessageType) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := g.authorize(r, rt.RPC); err != nil {
			writeError(w, err)
			return
		}
		req := in.New().Interface()
		if err := bind(rt, w, r, req, g.bodyLimits()); err != nil {
			writeError(w, err)
			return
		}
		ctx, err := g.withCredentials(r)
		if err != nil {
			writeError(w, err)
			return
		}
		if t := g.timeout(rt); t > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, t)
			defer cancel()
		}
		resp := out.New().Interface()
		if err := g.cfg.Conn.Invoke(ctx, rt.RPC, req, resp); err != nil {
			writeError(w, err)
			return
		}
		setReadHeaders(w.Header(), resp)
		b, err := responseJSON.Marshal(resp)
		if err != nil {
			writeError(w, status.Errorf(codes.Internal, "encoding the answer: %v", err))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(append(b, '\n'))
	})
}

// responseJSON writes answers: proto field names, every field (zero values
// too), indented for people with curl.
var responseJSON = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true, Indent: "  "}

// eventJSON writes SSE data: the same on one line.
var eventJSON = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}

// readInfoName is the message whose presence as a response's "read" field
// sets the freshness headers.
const readInfoName = "heartbeat.v1.ReadInfo"

// setReadHeaders sets one X-Heartbeat-* header per field of the message's
// read field (heartbeat.v1.ReadInfo), named after the field (readHeader):
// X-Heartbeat-Revision, X-Heartbeat-Consistent, X-Heartbeat-Known-Leader,
// X-Heartbeat-Leader-Node-Id (when known), X-Heartbeat-Last-Contact-Ms.
// A google.protobuf.Duration is given in milliseconds, -1 when unset.
func setReadHeaders(h http.Header, m proto.Message) {
	pm := m.ProtoReflect()
	fd := readField(pm.Descriptor())
	if fd == nil || !pm.Has(fd) {
		return
	}
	read := pm.Get(fd).Message()
	fs := read.Descriptor().Fields()
	for i := range fs.Len() {
		f := fs.Get(i)
		header, ok := readHeader(f)
		if !ok {
			continue
		}
		v := read.Get(f)
		var text string
		switch {
		case isDuration(f):
			text = "-1"
			if read.Has(f) {
				d := v.Message()
				secs := d.Get(d.Descriptor().Fields().ByName("seconds")).Int()
				nanos := d.Get(d.Descriptor().Fields().ByName("nanos")).Int()
				text = strconv.FormatInt(secs*1000+nanos/1e6, 10)
			}
		case f.Kind() == protoreflect.EnumKind:
			text = scalarString(v, f)
		default:
			text = v.String()
		}
		if f.Kind() == protoreflect.StringKind && text == "" {
			continue
		}
		h.Set(header, text)
	}
}

// readField is a message's "read" field of type heartbeat.v1.ReadInfo, or
// nil.
func readField(md protoreflect.MessageDescriptor) protoreflect.FieldDescriptor {
	fd := md.Fields().ByName("read")
	if fd == nil || fd.Message() == nil || fd.Message().FullName() != readInfoName {
		return nil
	}
	return fd
}

// readHeaderNames keeps the header of a ReadInfo field that was renamed.
var readHeaderNames = map[protoreflect.Name]string{
	"since_leader_contact": "X-Heartbeat-Last-Contact-Ms",
}

// readHeader is the header of a ReadInfo field: known_leader →
// X-Heartbeat-Known-Leader, a Duration with -Ms; ok is false for a field
// no header carries (lists, maps, other messages).
func readHeader(f protoreflect.FieldDescriptor) (string, bool) {
	if f.IsList() || f.IsMap() || (f.Message() != nil && !isDuration(f)) {
		return "", false
	}
	if h, ok := readHeaderNames[f.Name()]; ok {
		return h, true
	}
	name := string(f.Name())
	if isDuration(f) {
		name += "_ms"
	}
	parts := strings.Split(name, "_")
	for i, p := range parts {
		if p != "" {
			parts[i] = strings.ToUpper(p[:1]) + p[1:]
		}
	}
	return "X-Heartbeat-" + strings.Join(parts, "-"), true
}

// isDuration reports whether f is a google.protobuf.Duration.
func isDuration(f protoreflect.FieldDescriptor) bool {
	return f.Message() != nil && f.Message().FullName() == "google.protobuf.Duration"
}

// notFound answers a request no route took: 405 with Allow when the path
// is a route's with another method, else 404.
func (g *gateway) notFound(w http.ResponseWriter, r *http.Request) {
	if allow := g.allowed(r); len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		plainError(w, http.StatusMethodNotAllowed, codes.Unimplemented, "method "+r.Method+" not allowed on "+r.URL.Path+"; allowed: "+strings.Join(allow, ", "))
		return
	}
	plainError(w, http.StatusNotFound, codes.NotFound, "no such endpoint: "+r.URL.Path+" (the routes are listed at "+OpenAPIPath+")")
}

// allowed lists the methods some route serves on r's path.
func (g *gateway) allowed(r *http.Request) []string {
	var allow []string
	for _, m := range probeMethods {
		if m == r.Method {
			continue
		}
		probe := r.Clone(r.Context())
		probe.Method = m
		_, pattern := g.mux.Handler(probe)
		if pattern == fallback || pattern == "" || g.bare[pattern] {
			continue
		}
		_, path, _ := strings.Cut(pattern, " ")
		if root, ok := subtreeRoot(path); ok && g.needValue[pattern] && r.URL.Path == root+"/" {
			continue // an empty "{x...}": see nonEmpty
		}
		allow = append(allow, m)
	}
	slices.Sort(allow)
	return allow
}

// serveDocument serves the OpenAPI document.
func (g *gateway) serveDocument(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(g.doc)
}
