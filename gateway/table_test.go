package gateway

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// idleConn is a client connection that is never used: New only needs one
// to build its handlers (grpc.NewClient does not dial until a call).
func idleConn(t *testing.T) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///127.0.0.1:1", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// TestEveryRPCRouted: every Coordinator RPC has a route or is listed in
// Unrouted with a reason; nothing in Unrouted has a route; every route
// checks against its descriptor; patterns are unique.
func TestEveryRPCRouted(t *testing.T) {
	routed := map[string]bool{}
	seen := map[string]bool{}
	for _, rt := range Routes() {
		if seen[rt.String()] {
			t.Errorf("route %s twice", rt)
		}
		seen[rt.String()] = true
		if rt.Pending != "" {
			t.Errorf("route %s is still pending: %s", rt, rt.Pending)
		}
		if rt.RPC == "" {
			continue
		}
		md, err := rt.method()
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if err := rt.check(md); err != nil {
			t.Errorf("%v", err)
		}
		routed[rt.RPC] = true
	}
	methods := heartbeatpb.File_heartbeat_v1_coordinator_proto.Services().ByName("Coordinator").Methods()
	for i := range methods.Len() {
		name := "/heartbeat.v1.Coordinator/" + string(methods.Get(i).Name())
		reason, unrouted := Unrouted[name]
		switch {
		case routed[name] && unrouted:
			t.Errorf("%s is routed and listed as unrouted (%s)", name, reason)
		case !routed[name] && !unrouted:
			t.Errorf("%s has no HTTP route: add one to Routes, or list it in Unrouted with the reason", name)
		}
	}
	for name := range Unrouted {
		if methods.ByName(protoName(name)) == nil {
			t.Errorf("Unrouted lists %s, which the service lacks", name)
		}
	}
}

func protoName(full string) protoreflect.Name {
	return protoreflect.Name(full[strings.LastIndexByte(full, '/')+1:])
}

// TestNewRejectsBadTables: a route table that does not fit the
// descriptors, or a config that cannot work, is refused by New.
func TestNewRejectsBadTables(t *testing.T) {
	ok := Route{Method: http.MethodGet, Pattern: "/v1/status", RPC: heartbeatpb.Coordinator_GetStatus_FullMethodName}
	cases := []struct {
		name   string
		routes []Route
		tweak  func(*Config)
		want   string
	}{
		{"no conn", []Route{ok}, func(c *Config) { c.Conn = nil }, "Conn"},
		{"no body limit", []Route{ok}, func(c *Config) { c.MaxBodyBytes = 0 }, "MaxBodyBytes"},
		{"unknown RPC", []Route{{Method: "GET", Pattern: "/x", RPC: "/heartbeat.v1.Coordinator/Nope"}}, nil, "no method Nope"},
		{"unknown service", []Route{{Method: "GET", Pattern: "/x", RPC: "/heartbeat.v1.Nope/GetStatus"}}, nil, "heartbeat.v1.Nope"},
		{"malformed RPC", []Route{{Method: "GET", Pattern: "/x", RPC: "GetStatus"}}, nil, "want /package.Service/Method"},
		{"path variable no field", []Route{{Method: "GET", Pattern: "/v1/status/{who}", RPC: heartbeatpb.Coordinator_GetStatus_FullMethodName}}, nil, `"who"`},
		{"path variable a message", []Route{{Method: "POST", Pattern: "/v1/r/{resources}", RPC: heartbeatpb.Coordinator_RegisterResources_FullMethodName}}, nil, "kind"},
		{"Fields names no variable", []Route{{Method: "DELETE", Pattern: "/v1/r/{id...}", RPC: heartbeatpb.Coordinator_DeleteResources_FullMethodName, Fields: map[string]string{"x": "ids"}}}, nil, "no path variable"},
		{"stream without SSE", []Route{{Method: "GET", Pattern: "/w", RPC: heartbeatpb.Coordinator_WatchLeader_FullMethodName}}, nil, "SSE"},
		{"SSE on a unary RPC", []Route{{Method: "GET", Pattern: "/w", RPC: heartbeatpb.Coordinator_GetLeader_FullMethodName, SSE: &SSE{Event: "x"}}}, nil, "SSE"},
		{"SSE not a GET", []Route{{Method: "POST", Pattern: "/w", RPC: heartbeatpb.Coordinator_WatchLeader_FullMethodName, SSE: &SSE{Event: "x"}}}, nil, "GET"},
		{"SSE without a name", []Route{{Method: "GET", Pattern: "/w", RPC: heartbeatpb.Coordinator_WatchLeader_FullMethodName, SSE: &SSE{}}}, nil, "Event"},
		{"SSE id not uint64", []Route{{Method: "GET", Pattern: "/w", RPC: heartbeatpb.Coordinator_WatchLeader_FullMethodName, SSE: &SSE{Event: "x", IDField: "fell_behind"}}}, nil, "IDField"},
		{"client stream", []Route{{Method: "GET", Pattern: "/k", RPC: heartbeatpb.Coordinator_KeepAlive_FullMethodName, SSE: &SSE{Event: "x"}}}, nil, "client"},
		{"bad method", []Route{{Method: "FETCH", Pattern: "/v1/status", RPC: heartbeatpb.Coordinator_GetStatus_FullMethodName}}, nil, "method"},
		{"duplicate", []Route{ok, ok}, nil, "twice"},
		{"handler no route", []Route{ok}, func(c *Config) { c.Handlers = map[string]http.Handler{"nope": http.NotFoundHandler()} }, `"nope"`},
		{"handler with an RPC", []Route{{Method: "GET", Pattern: "/h", Handler: "h", RPC: heartbeatpb.Coordinator_GetStatus_FullMethodName}}, nil, "Handler route"},
	}
	for _, tc := range cases {
		cfg := DefaultConfig()
		cfg.Conn = idleConn(t)
		cfg.Routes = tc.routes
		if tc.tweak != nil {
			tc.tweak(&cfg)
		}
		_, err := New(cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: New: %v, want an error naming %q", tc.name, err, tc.want)
		}
	}
	cfg := DefaultConfig()
	cfg.Conn = idleConn(t)
	if _, err := New(cfg); err != nil {
		t.Errorf("New with the default table: %v", err)
	}
}

func emptySpecs(n int) []*heartbeatpb.ResourceSpec {
	out := make([]*heartbeatpb.ResourceSpec, n)
	for i := range out {
		out[i] = &heartbeatpb.ResourceSpec{}
	}
	return out
}

// TestBind: path variables, query parameters and bodies fill the request
// by proto field name.
func TestBind(t *testing.T) {
	routes := map[string]Route{}
	for _, rt := range Routes() {
		routes[rt.String()] = rt
	}
	cases := []struct {
		name, route, target, body, lastEventID string
		want                                   proto.Message
		code                                   codes.Code // OK: want must match
	}{
		{"no parameters", "GET /v1/status", "/v1/status", "", "", &heartbeatpb.GetStatusRequest{}, codes.OK},
		{"stale", "GET /v1/status", "/v1/status?stale", "", "", &heartbeatpb.GetStatusRequest{Consistency: heartbeatpb.Consistency_CONSISTENCY_STALE}, codes.OK},
		{"stale=1", "GET /v1/status", "/v1/status?stale=1", "", "", &heartbeatpb.GetStatusRequest{Consistency: heartbeatpb.Consistency_CONSISTENCY_STALE}, codes.OK},
		{"stale=false", "GET /v1/status", "/v1/status?stale=false", "", "", &heartbeatpb.GetStatusRequest{}, codes.OK},
		{"stale=maybe", "GET /v1/status", "/v1/status?stale=maybe", "", "", nil, codes.InvalidArgument},
		{"stale and consistency", "GET /v1/status", "/v1/status?stale&consistency=stale", "", "", nil, codes.InvalidArgument},
		{"enum short, any case", "GET /v1/status", "/v1/status?consistency=Stale", "", "", &heartbeatpb.GetStatusRequest{Consistency: heartbeatpb.Consistency_CONSISTENCY_STALE}, codes.OK},
		{"enum full name", "GET /v1/status", "/v1/status?consistency=CONSISTENCY_CONSISTENT", "", "", &heartbeatpb.GetStatusRequest{Consistency: heartbeatpb.Consistency_CONSISTENCY_CONSISTENT}, codes.OK},
		{"enum number", "GET /v1/status", "/v1/status?consistency=2", "", "", &heartbeatpb.GetStatusRequest{Consistency: heartbeatpb.Consistency_CONSISTENCY_STALE}, codes.OK},
		{"enum unknown", "GET /v1/status", "/v1/status?consistency=sometimes", "", "", nil, codes.InvalidArgument},
		{"unknown parameter", "GET /v1/status", "/v1/status?verbose", "", "", nil, codes.InvalidArgument},
		{"string", "GET /v1/assignments", "/v1/assignments?node_id=n2", "", "", &heartbeatpb.ListAssignmentsRequest{NodeId: "n2"}, codes.OK},
		{"singular twice", "GET /v1/assignments", "/v1/assignments?node_id=n2&node_id=n3", "", "", nil, codes.InvalidArgument},
		{"uint64", "GET /v1/watch/assignments", "/v1/watch/assignments?from_revision=42", "", "", &heartbeatpb.WatchAssignmentsRequest{FromRevision: 42}, codes.OK},
		{"uint64 negative", "GET /v1/watch/assignments", "/v1/watch/assignments?from_revision=-1", "", "", nil, codes.InvalidArgument},
		{"Last-Event-ID wins", "GET /v1/watch/assignments", "/v1/watch/assignments?from_revision=42", "", "7", &heartbeatpb.WatchAssignmentsRequest{FromRevision: 7}, codes.OK},
		{"path variable", "PUT /v1/members/{node_id}/priority", "/v1/members/n2/priority", `{"priority":5}`, "", &heartbeatpb.SetLeaderPriorityRequest{NodeId: "n2", Priority: 5}, codes.OK},
		{"path and body agree", "PUT /v1/members/{node_id}/priority", "/v1/members/n2/priority", `{"node_id":"n2","priority":5}`, "", &heartbeatpb.SetLeaderPriorityRequest{NodeId: "n2", Priority: 5}, codes.OK},
		{"path and body differ", "PUT /v1/members/{node_id}/priority", "/v1/members/n2/priority", `{"node_id":"n3","priority":5}`, "", nil, codes.InvalidArgument},
		{"query for a path field", "PUT /v1/members/{node_id}/priority", "/v1/members/n2/priority?node_id=n3", `{"priority":5}`, "", nil, codes.InvalidArgument},
		{"escaped id into a repeated field", "DELETE /v1/resources/{id...}", "/v1/resources/a%2Fb", "", "", &heartbeatpb.DeleteResourcesRequest{Ids: []string{"a/b"}}, codes.OK},
		{"unescaped rest", "DELETE /v1/resources/{id...}", "/v1/resources/a/b", "", "", &heartbeatpb.DeleteResourcesRequest{Ids: []string{"a/b"}}, codes.OK},
		{"body on a bodiless route", "DELETE /v1/resources/{id...}", "/v1/resources/a", `{"ids":["b"]}`, "", nil, codes.InvalidArgument},
		{"lowerCamel body field", "POST /v1/members", "/v1/members", `{"nodeId":"n4","peerAddress":"h:1"}`, "", &heartbeatpb.JoinRequest{NodeId: "n4", PeerAddress: "h:1"}, codes.OK},
		{"unknown body field", "POST /v1/members", "/v1/members", `{"node_id":"n4","voter":true}`, "", nil, codes.InvalidArgument},
		{"duration body", "POST /v1/app/heartbeat", "/v1/app/heartbeat", `{"ttl":"1.5s"}`, "", &heartbeatpb.AppHeartbeatRequest{Ttl: durationpb.New(1500e6)}, codes.OK},
		{"empty body", "POST /v1/leader/step-down", "/v1/leader/step-down", "", "", &heartbeatpb.StepDownRequest{}, codes.OK},
		{"body over the limit", "POST /v1/members", "/v1/members", `{"node_id":"` + strings.Repeat("x", 200) + `"}`, "", nil, codes.ResourceExhausted},
		{"list over the item limit", "POST /v1/resources", "/v1/resources", `{"resources":[{},{},{},{},{},{},{},{},{},{},{}]}`, "", nil, codes.ResourceExhausted},
		{"list at the item limit", "POST /v1/resources", "/v1/resources", `{"resources":[{},{},{},{},{},{},{},{},{},{}]}`, "", &heartbeatpb.RegisterResourcesRequest{Resources: emptySpecs(10)}, codes.OK},
		{"invalid UTF-8 in a path variable", "DELETE /v1/resources/{id...}", "/v1/resources/a%FFb", "", "", nil, codes.InvalidArgument},
		{"invalid UTF-8 in a query parameter", "GET /v1/assignments", "/v1/assignments?node_id=n%C3", "", "", nil, codes.InvalidArgument},
		{"invalid UTF-8 in the body", "POST /v1/members", "/v1/members", "{\"node_id\":\"n\xff\"}", "", nil, codes.InvalidArgument},
		{"trailing bytes after the body", "POST /v1/members", "/v1/members", `{"node_id":"n4"} x`, "", nil, codes.InvalidArgument},
		{"path, query and body over the limit together", "GET /v1/assignments", "/v1/assignments?node_id=" + strings.Repeat("x", 120), "", "", nil, codes.ResourceExhausted},
	}
	for _, tc := range cases {
		rt, ok := routes[tc.route]
		if !ok {
			t.Fatalf("%s: no route %s", tc.name, tc.route)
		}
		md, err := rt.method()
		if err != nil {
			t.Fatal(err)
		}
		// Match through a ServeMux, so that path values are set as in
		// the gateway.
		var got proto.Message
		var bindErr error
		mux := http.NewServeMux()
		mux.HandleFunc(rt.String(), func(w http.ResponseWriter, r *http.Request) {
			mt, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
			if err != nil {
				t.Fatal(err)
			}
			msg := mt.New().Interface()
			bindErr = bind(rt, w, r, msg, bodyLimits{bytes: 100, items: 10})
			got = msg
		})
		req := httptest.NewRequest(rt.Method, tc.target, strings.NewReader(tc.body))
		if tc.lastEventID != "" {
			req.Header.Set("Last-Event-ID", tc.lastEventID)
		}
		mux.ServeHTTP(httptest.NewRecorder(), req)
		if got == nil {
			t.Errorf("%s: %s did not match %s", tc.name, tc.target, rt)
			continue
		}
		if c := status.Code(bindErr); c != tc.code {
			t.Errorf("%s: %v, want %v", tc.name, bindErr, tc.code)
			continue
		}
		if tc.code == codes.OK && !proto.Equal(got, tc.want) {
			t.Errorf("%s: bound %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestHTTPStatus: the one error table (as before the gateway, plus 401).
func TestHTTPStatus(t *testing.T) {
	cases := map[codes.Code]int{
		codes.OK: 200, codes.InvalidArgument: 400, codes.OutOfRange: 400, codes.NotFound: 404,
		codes.AlreadyExists: 409, codes.FailedPrecondition: 409, codes.Aborted: 409, codes.PermissionDenied: 403,
		codes.Unauthenticated: 401, codes.Unimplemented: 501, codes.Unavailable: 503, codes.DeadlineExceeded: 504,
		codes.Canceled: 499, codes.Unknown: 500, codes.Internal: 500, codes.DataLoss: 500, codes.ResourceExhausted: 429,
	}
	for c, want := range cases {
		if got := HTTPStatus(c); got != want {
			t.Errorf("HTTPStatus(%v) = %d, want %d", c, got, want)
		}
	}
	b := errorBody(status.Error(codes.NotFound, "gone"))
	if b.Error != "gone" || b.Code != 404 || b.Status != "NOT_FOUND" {
		t.Errorf("error body %+v", b)
	}
}

// TestReadHeaders: the freshness headers follow the read field.
func TestReadHeaders(t *testing.T) {
	h := http.Header{}
	setReadHeaders(h, &heartbeatpb.GetStatusResponse{Read: &heartbeatpb.ReadInfo{
		Revision: 7, Consistent: true, KnownLeader: true, LeaderNodeId: "n1", SinceLeaderContact: durationpb.New(1500e6)}})
	want := map[string]string{
		"X-Heartbeat-Revision": "7", "X-Heartbeat-Consistent": "true", "X-Heartbeat-Known-Leader": "true",
		"X-Heartbeat-Leader-Node-Id": "n1", "X-Heartbeat-Last-Contact-Ms": "1500",
	}
	for k, v := range want {
		if h.Get(k) != v {
			t.Errorf("%s: %q, want %q (all: %v)", k, h.Get(k), v, h)
		}
	}
	h = http.Header{}
	setReadHeaders(h, &heartbeatpb.GetStatusResponse{Read: &heartbeatpb.ReadInfo{}})
	if h.Get("X-Heartbeat-Last-Contact-Ms") != "-1" || h.Get("X-Heartbeat-Leader-Node-Id") != "" || h.Get("X-Heartbeat-Consistent") != "false" {
		t.Errorf("no leader contact: %v", h)
	}
	h = http.Header{}
	setReadHeaders(h, &heartbeatpb.GetLeaseResponse{})
	setReadHeaders(h, &heartbeatpb.GetStatusResponse{})
	if len(h) != 0 {
		t.Errorf("headers without a read: %v", h)
	}
}
