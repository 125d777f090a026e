package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/heartbeat-sidecar/heartbeat/gateway"
	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// waitTimeout bounds every wait of these tests.
const waitTimeout = testcluster.DefaultWait

// httpClient is shared by the tests' plain requests.
var httpClient = &http.Client{Timeout: time.Minute}

// reply is one answer to a request.
type reply struct {
	code   int
	body   string
	header http.Header
}

// do sends a request (body "" for none) and returns the answer.
func do(t *testing.T, method, url, body string) reply {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, url, err)
	}
	return reply{code: resp.StatusCode, body: string(b), header: resp.Header}
}

// ok fails the test unless the answer is a 200 whose body decodes (strictly)
// into m.
func (r reply) ok(t *testing.T, what string, m proto.Message) {
	t.Helper()
	if r.code != http.StatusOK {
		t.Fatalf("%s: %d %s", what, r.code, r.body)
	}
	if m == nil {
		return
	}
	if err := protojson.Unmarshal([]byte(r.body), m); err != nil {
		t.Fatalf("%s: %v in %s", what, err, r.body)
	}
}

// errorBody decodes an error answer; ok is false when it is not one.
func (r reply) errorBody() (gateway.ErrorBody, bool) {
	var e gateway.ErrorBody
	dec := json.NewDecoder(strings.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return e, false
	}
	return e, e.Error != "" && e.Code == r.code && e.Status != "" && strings.HasPrefix(r.header.Get("Content-Type"), "application/json")
}

// dial connects to a node's client port for a test's own gateway.
func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// serveGateway serves a gateway of its own over the client port addr, with
// cfg's tunables (Conn is set here); it returns the base URL.
func serveGateway(t *testing.T, addr string, cfg gateway.Config) string {
	t.Helper()
	cfg.Conn = dial(t, addr)
	h, err := gateway.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// sseMsg is one message of a server-sent-event stream as a client parses it.
type sseMsg struct {
	event, id, data string
	idOnly          bool   // an "id:" block without data: it only moves Last-Event-ID
	comment         string // a comment line (": text"); the other fields are empty
}

// decode unmarshals the message's data (protojson) into m.
func (s sseMsg) decode(t *testing.T, m proto.Message) {
	t.Helper()
	if err := protojson.Unmarshal([]byte(s.data), m); err != nil {
		t.Fatalf("%s event data %q: %v", s.event, s.data, err)
	}
}

// sseClient reads one stream in a goroutine of its own; close ends it.
type sseClient struct {
	t      *testing.T
	resp   *http.Response
	msgs   chan sseMsg
	cancel context.CancelFunc
	tr     *http.Transport
	wg     sync.WaitGroup
	lastID string // the Last-Event-ID a browser would hold, as far as read
}

// openSSE opens a stream and checks that it answers 200 text/event-stream.
// The stream is closed at the end of the test.
func openSSE(t *testing.T, url string, header http.Header) *sseClient {
	t.Helper()
	c, r := tryOpenSSE(t, url, header)
	if c == nil {
		t.Fatalf("GET %s: %d %s, want a 200 event stream", url, r.code, r.body)
	}
	return c
}

// tryOpenSSE opens a stream; on an answer other than 200 text/event-stream
// it returns nil with the answer.
func tryOpenSSE(t *testing.T, url string, header http.Header) (*sseClient, reply) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	tr := &http.Transport{DisableKeepAlives: true}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		tr.CloseIdleConnections()
		return nil, reply{code: resp.StatusCode, body: string(b), header: resp.Header}
	}
	c := &sseClient{t: t, resp: resp, msgs: make(chan sseMsg, 1024), cancel: cancel, tr: tr}
	c.wg.Add(1)
	go c.read()
	t.Cleanup(c.close)
	return c, reply{code: resp.StatusCode, header: resp.Header}
}

// read parses the stream into messages until it ends.
func (c *sseClient) read() {
	defer c.wg.Done()
	defer close(c.msgs)
	r := bufio.NewReader(c.resp.Body)
	var m sseMsg
	var hasID bool
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if m.data == "" && hasID {
				m.idOnly = true
			}
			if m != (sseMsg{}) {
				c.msgs <- m
			}
			m, hasID = sseMsg{}, false
		case strings.HasPrefix(line, ":"):
			c.msgs <- sseMsg{comment: strings.TrimSpace(line[1:])}
		default:
			k, v, _ := strings.Cut(line, ":")
			v = strings.TrimPrefix(v, " ")
			switch k {
			case "event":
				m.event = v
			case "id":
				m.id, hasID = v, true
			case "data":
				m.data += v
			}
		}
	}
}

// next returns the next event (comments and id-only blocks skipped, the
// latter noted in lastID), failing the test if none comes within
// waitTimeout or the stream ends.
func (c *sseClient) next() sseMsg {
	c.t.Helper()
	for {
		m, ok := c.nextAny(waitTimeout)
		if !ok {
			c.t.Fatal("event stream ended or was silent")
		}
		if m.comment == "" && !m.idOnly {
			return m
		}
	}
}

// nextAny returns the next message (comments and id-only blocks included);
// ok is false when the stream ended or nothing came within d.
func (c *sseClient) nextAny(d time.Duration) (sseMsg, bool) {
	select {
	case m, ok := <-c.msgs:
		if ok && m.id != "" {
			c.lastID = m.id
		}
		return m, ok
	case <-time.After(d):
		return sseMsg{}, false
	}
}

// poll returns a message already received, if any, without waiting.
func (c *sseClient) poll() (sseMsg, bool) {
	select {
	case m, ok := <-c.msgs:
		return m, ok
	default:
		return sseMsg{}, false
	}
}

// until returns the first event that satisfies cond, failing the test if
// none comes within waitTimeout.
func (c *sseClient) until(what string, cond func(sseMsg) bool) sseMsg {
	c.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			c.t.Fatalf("no event %s within %v", what, waitTimeout)
		}
		m, ok := c.nextAny(left)
		if !ok {
			c.t.Fatalf("event stream ended (or was silent) before an event %s", what)
		}
		if m.comment == "" && !m.idOnly && cond(m) {
			return m
		}
	}
}

// ended waits until the stream ends, returning the events it sent before.
func (c *sseClient) ended(d time.Duration) ([]sseMsg, bool) {
	var got []sseMsg
	deadline := time.After(d)
	for {
		select {
		case m, ok := <-c.msgs:
			if !ok {
				return got, true
			}
			got = append(got, m)
		case <-deadline:
			return got, false
		}
	}
}

func (c *sseClient) close() {
	c.cancel()
	c.resp.Body.Close()
	go func() { // unblock read if it waits on a full channel
		for range c.msgs {
		}
	}()
	c.wg.Wait()
	c.tr.CloseIdleConnections()
}
