package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/heartbeat-sidecar/heartbeat/gateway"
	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
	"github.com/heartbeat-sidecar/heartbeat/node"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// fuzzStreamWait bounds the wait for a fuzzed watch's first event.
const fuzzStreamWait = 3 * time.Second

// fuzzMethods are the methods a fuzzed request may use instead of its
// route's own.
var fuzzMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
	http.MethodPatch, http.MethodDelete, http.MethodOptions}

// fuzzFirstEvent are the watches that send an event as soon as they start.
var fuzzFirstEvent = map[string]bool{"/v1/watch/leader": true, "/v1/watch/members": true}

// fuzzRequest is one fuzzed HTTP request, decoded from the fuzz arguments.
type fuzzRequest struct {
	method, path, query, lastEventID string
	body                             []byte
	route                            gateway.Route
	rawPath                          bool // path is the fuzzer's, not the route's
}

func (r fuzzRequest) String() string {
	s := r.method + " " + r.path
	if r.query != "" {
		s += "?" + r.query
	}
	if r.lastEventID != "" {
		s += fmt.Sprintf(" Last-Event-ID: %q", r.lastEventID)
	}
	return s + fmt.Sprintf(" body %q", r.body)
}

// newFuzzRequest builds the request: which picks a route of the table;
// mode's low 3 bits pick another method (0: the route's own), bit 3 takes
// vars as the whole path instead of the path variables' value, bit 4 sends
// vars as the Last-Event-ID header too.
func newFuzzRequest(routes []gateway.Route, which, mode uint8, vars, query string, body []byte) fuzzRequest {
	rt := routes[int(which)%len(routes)]
	r := fuzzRequest{method: rt.Method, query: uriSafe(query, false), body: body, route: rt}
	if m := mode & 7; m != 0 {
		r.method = fuzzMethods[int(m-1)%len(fuzzMethods)]
	}
	if mode&8 != 0 {
		r.rawPath = true
		r.path = "/" + strings.TrimPrefix(uriSafe(vars, true), "/")
	} else {
		r.path = fillPattern(rt.Pattern, vars)
	}
	if mode&16 != 0 {
		r.lastEventID = vars
	}
	return r
}

// fillPattern puts v, path-escaped, in every wildcard of a mux pattern.
func fillPattern(pattern, v string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(pattern, '{')
		if i < 0 {
			return b.String() + pattern
		}
		j := strings.IndexByte(pattern[i:], '}')
		if j < 0 {
			return b.String() + pattern
		}
		b.WriteString(pattern[:i])
		b.WriteString(url.PathEscape(v))
		pattern = pattern[i+j+1:]
	}
}

// uriSafe percent-encodes the bytes that may not appear raw in a request
// line, so the request reaches the handler (net/http refuses the rest
// before it); in a path '?' goes too.
func uriSafe(s string, path bool) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '#' || (path && c == '?') {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// fuzzSeeds are FuzzHTTP's seed corpus: a valid call of every route and
// the malformed ones of TestHTTPAPI's bad-input table.
type fuzzSeed struct {
	which, mode uint8
	vars, query string
	body        string
}

func httpSeeds(tb testing.TB, routes []gateway.Route) []fuzzSeed {
	tb.Helper()
	index := func(method, pattern string) uint8 {
		for i, rt := range routes {
			if rt.Method == method && rt.Pattern == pattern {
				return uint8(i)
			}
		}
		tb.Fatalf("no route %s %s", method, pattern)
		return 0
	}
	seeds := []fuzzSeed{{which: index("GET", "/v1/status"), query: "stale"}}
	for i := range routes {
		seeds = append(seeds, fuzzSeed{which: uint8(i), vars: "n1"})
	}
	add := func(method, pattern, vars, query, body string) {
		seeds = append(seeds, fuzzSeed{which: index(method, pattern), vars: vars, query: query, body: body})
	}
	add("POST", "/v1/resources", "", "", `{"resources":[{"id":"fuzz-a","weight":3,"labels":{"zone":"a"}},{"id":"fuzz-b"}]}`)
	add("POST", "/v1/resources", "", "", `{"resources":[{"id":"a\u202eb"},{"id":"a\u200bb"}]}`)
	add("POST", "/v1/resources", "", "", `{"resources":[{"id":"a\u0001b"}]}`)
	add("POST", "/v1/resources", "", "", "{\"resources\":[{\"id\":\"\xff\xfe\"}]}")
	add("POST", "/v1/resources", "", "", `{"resources":[{},{},{}]}`)
	add("POST", "/v1/resources", "", "", `{"resources":[{"id":"w","weight":1001}]}`)
	add("POST", "/v1/resources", "", "", `[{"id":"good-1"}]`)
	add("POST", "/v1/resources", "", "stale", `{"resources":[{"id":"x"}]}`)
	add("GET", "/v1/resources/{id...}", "fuzz-a", "consistency=stale", "")
	add("DELETE", "/v1/resources/{id...}", "fuzz-b", "", "")
	add("DELETE", "/v1/resources/{id...}", "a/b/../c", "", `{"ids":["x"]}`)
	add("GET", "/v1/assignments", "", "node_id=n1&node_id=n2", "")
	add("GET", "/v1/assignments", "", "node_id=%zz", "")
	add("GET", "/v1/assignments", "", "node_id=%FF", "")
	add("GET", "/v1/watch/members", "", "consistency=stale;x=1", "")
	add("GET", "/v1/leader", "", "consistency=sometimes", "")
	add("GET", "/v1/watch/assignments", "", "from_revision=18446744073709551615", "")
	add("GET", "/v1/watch/assignments", "", "from_revision=-1", "")
	add("PUT", "/v1/members/{node_id}/priority", "n1", "", `{"priority":101}`)
	add("PUT", "/v1/members/{node_id}/drain", "n1", "", `{"node_id":"n2","draining":true}`)
	add("POST", "/v1/app/heartbeat", "", "", `{"ttl":"315576000000s"}`)
	add("POST", "/v1/members", "", "", `{"node_id":"fuzz-ghost","peer_address":"127.0.0.1:1"}`)
	add("POST", "/v1/members", "", "", `{"node_id":"../x","peer_address":"127.0.0.1:1"}`)
	add("DELETE", "/v1/members/{node_id}", "n1", "", "")
	add("POST", "/v1/leader/transfer", "", "", `{"node_id":"n1"}`)
	add("POST", "/v1/leader/step-down", "", "", "")
	add("POST", "/v1/leave", "", "", "")
	seeds = append(seeds,
		fuzzSeed{which: index("GET", "/v1/watch/assignments"), mode: 16, vars: "18446744073709551615"},
		fuzzSeed{which: index("GET", "/v1/status"), mode: 8, vars: "/v1/resources/../../v1/status"},
		fuzzSeed{which: index("GET", "/v1/status"), mode: 8, vars: "/v2/status"},
		fuzzSeed{which: index("GET", "/v1/leader"), mode: 5},
	)
	return seeds
}

// fuzzConn dials the node's client port for the fuzzer's gateway: a Leave
// is answered here without reaching the node (the node would leave and
// stop), a Join is sent as a non-voter (a voter that never answers would
// stop a 1-node cluster) and the member it added is removed again.
func fuzzConn(f *testing.F, addr string) *grpc.ClientConn {
	f.Helper()
	intercept := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		switch method {
		case heartbeatpb.Coordinator_Leave_FullMethodName:
			return nil
		case heartbeatpb.Coordinator_Join_FullMethodName:
			j := req.(*heartbeatpb.JoinRequest)
			j.Nonvoter = true
			if err := invoker(ctx, method, req, reply, cc, opts...); err != nil {
				return err
			}
			if j.GetNodeId() == "n1" {
				return nil
			}
			return invoker(ctx, heartbeatpb.Coordinator_Remove_FullMethodName,
				&heartbeatpb.RemoveRequest{NodeId: j.GetNodeId()}, &heartbeatpb.RemoveResponse{}, cc, opts...)
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32)),
		grpc.WithUnaryInterceptor(intercept))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { cc.Close() })
	return cc
}

// FuzzHTTP sends fuzzed requests — a route of the table (or a path of the
// fuzzer's own), a method, path variables, a query string, a
// Last-Event-ID and a body — to a gateway over the client port of a real
// 1-node cluster (both started once per fuzz process; the node's own
// health and metrics routes are proxied to its HTTP port). Properties,
// for every input:
//   - no 5xx but a 503, and that one only as an UNAVAILABLE error body
//     (no leader) or /readyz's not-ready;
//   - every refusal of the API is the JSON error body of its status;
//   - a query string that does not parse is refused (net/url's
//     URL.Query drops a malformed pair without a word);
//   - a request refused as malformed (malformed) writes nothing: the raft
//     log's last index does not move (checked again with the log quiet
//     when something else wrote);
//   - a leader or members watch sends its first event;
//   - the server stays up: GET /v1/status answers 200 with is_leader.
//
// Leave and Join are changed on the way (fuzzConn); the HTTP server is
// httptest's, not the node's (its timeouts and header limits are not
// fuzzed here).
func FuzzHTTP(f *testing.F) {
	routes := gateway.Routes()
	for _, s := range httpSeeds(f, routes) {
		f.Add(s.which, s.mode, s.vars, s.query, []byte(s.body))
	}
	c := testcluster.Start(f, 1, testcluster.Options{Tweak: fuzzLogTo(f)})
	n := c.Leader()
	nodeHTTP := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: n.HTTPAddr()})
	cfg := gateway.DefaultConfig()
	cfg.Conn = fuzzConn(f, n.ClientAddr())
	cfg.Handlers = map[string]http.Handler{
		gateway.HandlerHealthz: nodeHTTP, gateway.HandlerReadyz: nodeHTTP, gateway.HandlerMetrics: nodeHTTP,
	}
	h, err := gateway.New(cfg)
	if err != nil {
		f.Fatal(err)
	}
	srv := httptest.NewServer(h)
	f.Cleanup(srv.Close)
	tr := &http.Transport{}
	f.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: tr, Timeout: time.Minute}

	f.Fuzz(func(t *testing.T, which, mode uint8, vars, query string, body []byte) {
		r := newFuzzRequest(routes, which, mode, vars, query, body)
		req, err := r.build(srv.URL)
		if err != nil {
			return // not a request an HTTP client can send
		}
		before := lastIndex(n)
		code := fuzzSend(t, hc, req, r)
		if malformed(code) && lastIndex(n) != before {
			// Something else may have written (the reconciler, an
			// application TTL run out): wait for a quiet log, then again.
			waitQuiet(t, n)
			if req, err = r.build(srv.URL); err != nil {
				t.Fatal(err)
			}
			before = lastIndex(n)
			code = fuzzSend(t, hc, req, r)
			if after := lastIndex(n); malformed(code) && after != before {
				t.Fatalf("%s: refused with %d but the raft log moved %d -> %d", r, code, before, after)
			}
		}
		checkStatusOK(t, hc, srv.URL)
	})
}

// malformed says whether an HTTP status refuses a request as malformed or
// oversized (InvalidArgument, OutOfRange, ResourceExhausted; a method or
// size net/http refuses), before anything may be committed. A refusal
// that depends on the state (404 of a delete, 409) is decided where the
// command is applied, in log order, and may leave a refused entry in the
// log by design (rpc/api DeleteResources).
func malformed(code int) bool {
	switch code {
	case http.StatusBadRequest, http.StatusMethodNotAllowed, http.StatusRequestEntityTooLarge,
		http.StatusRequestURITooLong, http.StatusRequestHeaderFieldsTooLarge, http.StatusTooManyRequests:
		return true
	}
	return false
}

// reachesRoute says whether r is its route's method and pattern (not a
// path or method of the fuzzer's own).
func (r fuzzRequest) reachesRoute() bool {
	return r.method == r.route.Method && !r.rawPath
}

// build makes the HTTP request of r against base.
func (r fuzzRequest) build(base string) (*http.Request, error) {
	u := base + r.path
	if r.query != "" {
		u += "?" + r.query
	}
	var body io.Reader
	if len(r.body) > 0 {
		body = strings.NewReader(string(r.body))
	}
	req, err := http.NewRequest(r.method, u, body)
	if err != nil {
		return nil, err
	}
	if len(r.body) > 0 {
		req.Header.Set("Content-Type", "application/json")
	}
	if r.lastEventID != "" {
		req.Header.Set("Last-Event-ID", r.lastEventID)
	}
	return req, nil
}

// fuzzSend sends req and checks the answer; it returns the HTTP status (0
// when the client could not send it: an invalid header value).
func fuzzSend(t *testing.T, hc *http.Client, req *http.Request, r fuzzRequest) int {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp, err := hc.Do(req.WithContext(ctx))
	if err != nil {
		if strings.Contains(err.Error(), "invalid header field") || strings.Contains(err.Error(), "invalid method") {
			return 0
		}
		t.Fatalf("%s: %v", r, err)
	}
	defer resp.Body.Close()
	ct := resp.Header.Get("Content-Type")
	if _, err := url.ParseQuery(r.query); err != nil && resp.StatusCode < 300 && r.reachesRoute() && r.route.RPC != "" {
		t.Fatalf("%s: %d for a malformed query string (%v)", r, resp.StatusCode, err)
	}
	if resp.StatusCode == http.StatusOK && strings.HasPrefix(ct, "text/event-stream") {
		checkFirstEvent(t, resp, r, cancel)
		return resp.StatusCode
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: reading the answer: %v", r, err)
	}
	code, handlerRoute := resp.StatusCode, r.route.RPC == ""
	notReady := code == http.StatusServiceUnavailable && handlerRoute && r.path == "/readyz"
	if code >= 500 && !notReady {
		var e gateway.ErrorBody
		if code != http.StatusServiceUnavailable || json.Unmarshal(b, &e) != nil || e.Status != "UNAVAILABLE" {
			t.Fatalf("%s: %d %s", r, code, b)
		}
	}
	// A handler route's own refusals (a 401 of metrics) are its own; a
	// 404 or 405 is the gateway's.
	apiRefusal := !handlerRoute || code >= http.StatusNotFound
	if code >= 400 && req.Method != http.MethodHead && apiRefusal {
		var e gateway.ErrorBody
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil || e.Code != code || e.Status == "" || e.Error == "" || !strings.HasPrefix(ct, "application/json") {
			t.Fatalf("%s: %d answered without a JSON error body (%s): %s", r, code, ct, b)
		}
	}
	return code
}

// checkFirstEvent reads a watch's first event (a leader or members watch
// must send one within fuzzStreamWait), then ends the stream.
func checkFirstEvent(t *testing.T, resp *http.Response, r fuzzRequest, cancel context.CancelFunc) {
	t.Helper()
	got := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "data:") {
				got <- true
				return
			}
		}
		got <- false
	}()
	timer := time.NewTimer(fuzzStreamWait)
	defer timer.Stop()
	var ok bool
	select {
	case ok = <-got:
	case <-timer.C:
		cancel()
		ok = <-got
	}
	cancel()
	if !ok && fuzzFirstEvent[r.route.Pattern] && r.method == r.route.Method && r.path == r.route.Pattern {
		t.Fatalf("%s: no first event within %v", r, fuzzStreamWait)
	}
}

// checkStatusOK fails the test unless GET /v1/status answers 200 with
// is_leader (within the harness's wait).
func checkStatusOK(t *testing.T, hc *http.Client, base string) {
	t.Helper()
	testwait.Eventually(t, testcluster.DefaultWait, "GET /v1/status answering as the leader", func() (bool, string) {
		resp, err := hc.Get(base + "/v1/status")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var st struct {
			IsLeader bool `json:"is_leader"`
		}
		if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &st) != nil || !st.IsLeader {
			return false, fmt.Sprintf("%d %s", resp.StatusCode, b)
		}
		return true, ""
	})
}

// fuzzLogTo sends the nodes' logs to a file of the fuzz process instead of
// the test's log: t.Log of the F panics while an input runs. The file's
// path is in the log of a failing run.
func fuzzLogTo(f *testing.F) func(*node.Config) {
	path := filepath.Join(f.TempDir(), "nodes.log")
	out, err := os.Create(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { out.Close() })
	f.Logf("node logs: %s", path)
	return func(cfg *node.Config) {
		cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: cfg.ID, Level: testcluster.LogLevel(), Output: out})
	}
}

// lastIndex is the node's last raft log index.
func lastIndex(n *node.Node) uint64 { return n.Election().Raft().LastIndex() }

// waitQuiet waits until the node's raft log has not moved for a while.
func waitQuiet(t *testing.T, n *node.Node) {
	t.Helper()
	last, since := lastIndex(n), time.Now()
	testwait.Eventually(t, testcluster.DefaultWait, "a quiet raft log", func() (bool, string) {
		if i := lastIndex(n); i != last {
			last, since = i, time.Now()
		}
		return time.Since(since) >= 500*time.Millisecond, fmt.Sprintf("last index %d", last)
	})
}
