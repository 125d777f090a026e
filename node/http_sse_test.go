package node

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// sseMsg is one message of a server-sent-event stream as a client parses it.
type sseMsg struct {
	event, id, data string
	comment         string // a comment line (": text"); the other fields are empty
}

// decode unmarshals the message's data into v, failing the test if it is
// not JSON.
func (m sseMsg) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(m.data), v); err != nil {
		t.Fatalf("%s event data %q: %v", m.event, m.data, err)
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
}

// openSSE opens a stream and checks that it answers 200 text/event-stream.
// The stream is closed at the end of the test.
func openSSE(t *testing.T, url string, header http.Header) *sseClient {
	t.Helper()
	c, code, body := tryOpenSSE(t, url, header)
	if c == nil {
		t.Fatalf("GET %s: %d %s, want a 200 event stream", url, code, body)
	}
	return c
}

// tryOpenSSE opens a stream; on an answer other than 200 text/event-stream
// it returns nil with the status and body.
func tryOpenSSE(t *testing.T, url string, header http.Header) (*sseClient, int, string) {
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
		var b strings.Builder
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			b.WriteString(sc.Text())
		}
		resp.Body.Close()
		cancel()
		tr.CloseIdleConnections()
		return nil, resp.StatusCode, b.String()
	}
	c := &sseClient{t: t, resp: resp, msgs: make(chan sseMsg, 1024), cancel: cancel, tr: tr}
	c.wg.Add(1)
	go c.read()
	t.Cleanup(c.close)
	return c, resp.StatusCode, ""
}

// read parses the stream into messages until it ends.
func (c *sseClient) read() {
	defer c.wg.Done()
	defer close(c.msgs)
	r := bufio.NewReader(c.resp.Body)
	var m sseMsg
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if m != (sseMsg{}) {
				c.msgs <- m
			}
			m = sseMsg{}
		case strings.HasPrefix(line, ":"):
			c.msgs <- sseMsg{comment: strings.TrimSpace(line[1:])}
		default:
			k, v, _ := strings.Cut(line, ":")
			v = strings.TrimPrefix(v, " ")
			switch k {
			case "event":
				m.event = v
			case "id":
				m.id = v
			case "data":
				m.data += v
			}
		}
	}
}

// next returns the next event (comments skipped), failing the test if none
// comes within waitTimeout or the stream ends.
func (c *sseClient) next() sseMsg {
	c.t.Helper()
	for {
		m, ok := c.nextAny(waitTimeout)
		if !ok {
			c.t.Fatal("event stream ended or was silent")
		}
		if m.comment == "" {
			return m
		}
	}
}

// nextChange is next without the "lease" events that a watch of this
// node's assignments sends every 50 ms.
func (c *sseClient) nextChange() sseMsg {
	c.t.Helper()
	for {
		if m := c.next(); m.event != "lease" {
			return m
		}
	}
}

// nextAny returns the next message (comments included); ok is false when
// the stream ended or nothing came within d.
func (c *sseClient) nextAny(d time.Duration) (sseMsg, bool) {
	select {
	case m, ok := <-c.msgs:
		return m, ok
	case <-time.After(d):
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
		if m.comment == "" && cond(m) {
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
