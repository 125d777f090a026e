package node

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/membership"
)

// TestHTTPWatchAssignments: the assignment stream starts with "start" at
// the current revision, then sends each change; ids mark whole revisions;
// a resume from Last-Event-ID (or from=) replays the same events; node=
// filters; idle streams get keep-alive comments.
func TestHTTPWatchAssignments(t *testing.T) {
	defer func(d time.Duration) { sseKeepAlive = d }(sseKeepAlive)
	sseKeepAlive = 200 * time.Millisecond

	c := startMemCluster(t, 1, 0)
	n := c.leader()
	c.waitMembers()
	base := "http://" + n.HTTPAddr()

	w := openSSE(t, base+"/v1/watch/assignments", nil)
	start := w.next()
	var a AssignmentEvent
	start.decode(t, &a)
	r0 := n.Membership().Revision()
	if start.event != "start" || a.Kind != "start" || a.Revision > r0 || start.id != fmt.Sprint(a.Revision) {
		t.Fatalf("first event %+v (%+v), want start at revision <= %d", start, a, r0)
	}
	from := a.Revision

	registerN(t, n, "w", 3)
	got := readChanges(t, w, 3)
	checkIDs(t, got)

	// An idle stream gets a keep-alive comment.
	for deadline := time.Now().Add(waitTimeout); ; {
		m, ok := w.nextAny(time.Until(deadline))
		if !ok {
			t.Fatal("no keep-alive comment on an idle stream")
		}
		if m.comment == "keep-alive" {
			break
		}
		if m.comment == "" && m.event != "lease" {
			t.Fatalf("unexpected event on an idle stream: %+v", m)
		}
	}

	// Resume from the start event's id: the same events again. The header
	// wins over a from parameter.
	for _, tc := range []struct {
		name   string
		query  string
		header http.Header
	}{
		{"Last-Event-ID", "", http.Header{"Last-Event-ID": {fmt.Sprint(from)}}},
		{"from", "?from=" + fmt.Sprint(from), nil},
		{"header wins", "?from=" + got[len(got)-1].id, http.Header{"Last-Event-ID": {fmt.Sprint(from)}}},
	} {
		r := openSSE(t, base+"/v1/watch/assignments"+tc.query, tc.header)
		if s := r.next(); s.event != "start" || s.id != fmt.Sprint(from) {
			t.Errorf("%s: first event %+v, want start at %d", tc.name, s, from)
		}
		again := readChanges(t, r, 3)
		if fmt.Sprint(again) != fmt.Sprint(got) {
			t.Errorf("%s: resumed stream\n%v\nwant\n%v", tc.name, again, got)
		}
		r.close()
	}
	// Resuming from the last id sends nothing old.
	last := got[len(got)-1].id
	r := openSSE(t, base+"/v1/watch/assignments", http.Header{"Last-Event-ID": {last}})
	if s := r.next(); s.event != "start" || s.id != last {
		t.Errorf("resume from %s: first event %+v", last, s)
	}
	registerN(t, n, "x", 1)
	if m := r.nextChange(); m.event != "registered" || !strings.Contains(m.data, `"x-000"`) {
		t.Errorf("after resuming from the last id, first change %+v, want x-000 registered", m)
	}
	r.close()

	// node= keeps only the changes that give a resource to (or take one
	// from) that member: here the assignments.
	f := openSSE(t, base+"/v1/watch/assignments?node=n1&from="+fmt.Sprint(from), nil)
	if s := f.next(); s.event != "start" {
		t.Fatalf("filtered: first event %+v", s)
	}
	for i := 0; i < 3; i++ {
		m := f.nextChange()
		var e AssignmentEvent
		m.decode(t, &e)
		if m.event != "assigned" || e.Owner != "n1" || e.Epoch == 0 || !strings.HasPrefix(e.ResourceID, "w-") {
			t.Errorf("filtered event %d: %+v %+v", i, m, e)
		}
	}
	f.close()
}

// readChanges reads events until `resources` resources have been both
// registered and assigned. It skips "lease" events and takes the lease out
// of the others (it depends on when they were sent), so that two streams'
// changes compare equal.
func readChanges(t *testing.T, w *sseClient, resources int) []sseMsg {
	t.Helper()
	var got []sseMsg
	assigned := 0
	for assigned < resources {
		m := w.nextChange()
		var e AssignmentEvent
		m.decode(t, &e)
		if e.LeaseRemainingMs != 0 {
			e.LeaseRemainingMs = 0
			b, err := json.Marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			m.data = string(b)
		}
		if m.event != e.Kind || e.Revision == 0 {
			t.Fatalf("event %+v: data %+v", m, e)
		}
		switch e.Kind {
		case "registered":
		case "assigned":
			if e.Owner == "" || e.Epoch != e.Revision {
				t.Errorf("assigned event %+v", e)
			}
			assigned++
		default:
			t.Fatalf("unexpected event %+v", m)
		}
		got = append(got, m)
	}
	return got
}

// checkIDs: within a run of events of one revision only the last has an
// id, and that id is the revision; revisions never go down.
func checkIDs(t *testing.T, evs []sseMsg) {
	t.Helper()
	revs := make([]uint64, len(evs))
	for i, m := range evs {
		var e AssignmentEvent
		m.decode(t, &e)
		revs[i] = e.Revision
	}
	for i, m := range evs {
		lastOfRev := i == len(evs)-1 || revs[i+1] != revs[i]
		switch {
		case i > 0 && revs[i] < revs[i-1]:
			t.Errorf("revision went down at event %d: %v", i, revs)
		case lastOfRev && m.id != strconv.FormatUint(revs[i], 10):
			t.Errorf("event %d (last of revision %d) has id %q", i, revs[i], m.id)
		case !lastOfRev && m.id != "":
			t.Errorf("event %d (not the last of revision %d) has id %q", i, revs[i], m.id)
		}
	}
}

func TestFeedStatus(t *testing.T) {
	err := feedStatus(fmt.Errorf("wrapped: %w", membership.ErrCompacted))
	if status.Code(err) != codes.OutOfRange || httpCode(status.Code(err)) != http.StatusBadRequest {
		t.Errorf("compacted: %v", err)
	}
	if err := feedStatus(membership.ErrClosed); status.Code(err) != codes.Internal {
		t.Errorf("other error: %v", err)
	}
}

// TestHTTPWatchShutdown: open watches (reading ones and one that reads
// nothing) do not hold up Shutdown; the reading ones end with an "error"
// event (503), then the stream ends.
func TestHTTPWatchShutdown(t *testing.T) {
	c := startMemCluster(t, 1, 0)
	n := c.leader()
	c.waitMembers()
	base := "http://" + n.HTTPAddr()
	var streams []*sseClient
	for _, path := range []string{"/v1/watch/leader", "/v1/watch/members", "/v1/watch/assignments"} {
		s := openSSE(t, base+path, nil)
		s.next()
		streams = append(streams, s)
	}
	stalled := dialStalled(t, n.HTTPAddr(), "/v1/watch/leader")
	defer stalled.Close()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	began := time.Now()
	if err := n.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	// The drain of a node that owns nothing is immediate; the rest is the
	// usual stop (election hand-off, transports) — far below a minute.
	took := time.Since(began)
	t.Logf("Shutdown took %v", took)
	if took > 10*time.Second {
		t.Errorf("Shutdown with open watches took %v", took)
	}
	for i, s := range streams {
		rest, ok := s.ended(waitTimeout)
		if !ok {
			t.Fatalf("stream %d still open after Shutdown", i)
		}
		if len(rest) == 0 || rest[len(rest)-1].event != "error" || !strings.Contains(rest[len(rest)-1].data, `"code":503`) {
			t.Errorf("stream %d ended with %+v, want a final error event with code 503", i, rest)
		}
	}
}

// TestHTTPWatchSlowReader: a client that opens an assignment watch and
// never reads makes the server's write block (seen in the goroutine dump);
// meanwhile the node commits writes and another watcher keeps up, and
// Shutdown still finishes promptly.
func TestHTTPWatchSlowReader(t *testing.T) {
	// No write timeout within the test: the stalled write must stay blocked
	// until Shutdown cuts it.
	defer func(d time.Duration) { sseWriteTimeout = d }(sseWriteTimeout)
	sseWriteTimeout = 10 * time.Minute

	c := startMemCluster(t, 1, 0)
	n := c.leader()
	c.waitMembers()
	base := "http://" + n.HTTPAddr()
	stalled := dialStalled(t, n.HTTPAddr(), "/v1/watch/assignments")
	defer stalled.Close()
	reader := openSSE(t, base+"/v1/watch/assignments", nil)
	reader.next()

	// catchUp waits until every resource is owned and the reading watcher
	// has seen the latest revision: its handler is then idle, so a write
	// still blocked is the stalled client's.
	var seen uint64
	catchUp := func() {
		waitFor(t, "settled and seen by the reading watcher", func() (bool, string) {
			var unowned int
			var rev uint64
			n.Membership().Read(func(s *membership.State) { unowned, rev = s.NumUnowned(), s.Revision() })
			for {
				select {
				case m, ok := <-reader.msgs:
					if !ok {
						return false, "reader stream ended"
					}
					if m.id != "" {
						seen, _ = strconv.ParseUint(m.id, 10, 64)
					}
					continue
				default:
				}
				break
			}
			// Caught up: no resource event after what the reader saw (a
			// member command may be the latest revision; it sends nothing).
			pending := 0
			if seen < rev {
				evs, err := n.Membership().Changes(seen, 0)
				if err != nil {
					return false, err.Error()
				}
				for _, e := range evs {
					if e.Revision > seen && e.Kind != membership.EventMember && e.Kind != membership.EventMemberRemoved {
						pending++
					}
				}
			}
			return unowned == 0 && pending == 0, fmt.Sprintf("%d unowned, revision %d, reader at %d, %d resource events unseen", unowned, rev, seen, pending)
		})
	}

	// Long ids make the events big: a few batches overflow every socket
	// buffer between the server and the stalled client.
	pad := strings.Repeat("p", 200)
	total := 0
	for batch := 0; !writeBlocked(); batch++ {
		if batch == 6 {
			t.Fatalf("the stalled stream's write never blocked after %d resources", total)
		}
		var items []string
		for i := 0; i < membership.MaxBatch; i++ {
			items = append(items, fmt.Sprintf(`{"id":"%s-%d-%d"}`, pad, batch, i))
		}
		began := time.Now()
		code, body := httpBody(t, "POST", base+"/v1/resources", "["+strings.Join(items, ",")+"]")
		if code != 200 {
			t.Fatalf("register batch %d: %d %s", batch, code, body)
		}
		total += len(items)
		t.Logf("batch %d committed in %v", batch, time.Since(began))
		catchUp()
	}

	// The node still commits, and reports a leader.
	began := time.Now()
	if code, body := httpBody(t, "PUT", base+"/v1/resources/after-stall", ""); code != 200 {
		t.Fatalf("PUT while a watcher stalls: %d %s", code, body)
	}
	if took := time.Since(began); took > 10*time.Second {
		t.Errorf("a write took %v while a watcher stalls", took)
	}
	catchUp()
	if !writeBlocked() {
		t.Fatal("the stalled client's write no longer blocks")
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	began = time.Now()
	if err := n.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	// The stalled write is cut within sseFinalWrite of the stop (HTTP
	// Shutdown waits for the handler; without the cut, that would be until
	// the write timeout or ctx).
	took := time.Since(began)
	t.Logf("Shutdown took %v", took)
	if took > 10*time.Second {
		t.Errorf("Shutdown with a stalled watcher took %v", took)
	}
	waitFor(t, "the stalled handler to return", func() (bool, string) { return !writeBlocked(), "still blocked" })
}

// dialStalled opens a watch on a raw connection with a small receive
// buffer and never reads from it.
func dialStalled(t *testing.T, addr, path string) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, addr); err != nil {
		t.Fatal(err)
	}
	return conn
}

// writeBlocked reports whether some goroutine waits in an SSE write on a
// full socket.
func writeBlocked() bool {
	buf := make([]byte, 16<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		header, _, _ := strings.Cut(g, "\n")
		if strings.Contains(header, "[IO wait") && strings.Contains(g, "(*sseWriter).write") {
			return true
		}
	}
	return false
}
