package gateway_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/gateway"
	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
	"github.com/heartbeat-sidecar/heartbeat/membership"
	"github.com/heartbeat-sidecar/heartbeat/node"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// register registers count resources prefix-000.. through base in one call.
func register(t *testing.T, base, prefix string, count int) uint64 {
	t.Helper()
	var items []string
	for i := 0; i < count; i++ {
		items = append(items, fmt.Sprintf(`{"id":"%s-%03d","weight":%d}`, prefix, i, 1+i%3))
	}
	var wr heartbeatpb.RegisterResourcesResponse
	do(t, "POST", base+"/v1/resources", `{"resources":[`+strings.Join(items, ",")+`]}`).ok(t, "register "+prefix, &wr)
	return wr.GetRevision()
}

// TestWatchAssignments: the assignment stream starts with "start" at the
// current revision, then sends each change, named by its kind; a revision
// is marked complete with its id (on "start", then before the next
// revision's first event), so a resume from Last-Event-ID (or
// from_revision) never misses a change; node_id filters; idle streams get
// keep-alive comments.
func TestWatchAssignments(t *testing.T) {
	c := testcluster.Start(t, 1, testcluster.Options{})
	n := c.Leader()
	// A gateway of the test's own on the node's client port, with a short
	// keep-alive.
	cfg := gateway.DefaultConfig()
	cfg.SSEKeepAlive = 200 * time.Millisecond
	base := serveGateway(t, n.ClientAddr(), cfg)

	w := openSSE(t, base+"/v1/watch/assignments", nil)
	start := w.next()
	var a heartbeatpb.WatchAssignmentsResponse
	start.decode(t, &a)
	r0 := n.Membership().Revision()
	if start.event != "start" || a.GetKind() != heartbeatpb.ChangeKind_CHANGE_KIND_START || a.GetRevision() > r0 || start.id != fmt.Sprint(a.GetRevision()) || a.GetRead() == nil {
		t.Fatalf("first event %+v (%v), want start at revision <= %d", start, &a, r0)
	}
	from := a.GetRevision()

	register(t, base, "w", 3)
	got := readChanges(t, w, 3)
	// The last revision is marked once a later one starts: register one
	// more and read up to its first event.
	register(t, base, "v", 1)
	w.until("v-000 registered", func(m sseMsg) bool { return strings.Contains(m.data, `"v-000"`) })
	checkIDs(t, got, w.lastID)

	// An idle stream gets a keep-alive comment.
	for deadline := time.Now().Add(waitTimeout); ; {
		m, ok := w.nextAny(time.Until(deadline))
		if !ok {
			t.Fatal("no keep-alive comment on an idle stream")
		}
		if m.comment == "keep-alive" {
			break
		}
	}

	// Resume from the start event's id: the same events again. The header
	// wins over the query parameter.
	for _, tc := range []struct {
		name   string
		query  string
		header http.Header
	}{
		{"Last-Event-ID", "", http.Header{"Last-Event-ID": {fmt.Sprint(from)}}},
		{"from_revision", "?from_revision=" + fmt.Sprint(from), nil},
		{"header wins", "?from_revision=" + fmt.Sprint(r0+1000), http.Header{"Last-Event-ID": {fmt.Sprint(from)}}},
	} {
		r := openSSE(t, base+"/v1/watch/assignments"+tc.query, tc.header)
		if s := r.next(); s.event != "start" || s.id != fmt.Sprint(from) {
			t.Errorf("%s: first event %+v, want start at %d", tc.name, s, from)
		}
		again := readChanges(t, r, 3)
		if fmt.Sprint(events(again)) != fmt.Sprint(events(got)) {
			t.Errorf("%s: resumed stream\n%v\nwant\n%v", tc.name, events(again), events(got))
		}
		r.close()
	}

	// Resuming from the last complete revision the client holds sends
	// nothing it saw in full.
	last := w.lastID
	r := openSSE(t, base+"/v1/watch/assignments", http.Header{"Last-Event-ID": {last}})
	if s := r.next(); s.event != "start" || s.id != last {
		t.Errorf("resume from %s: first event %+v", last, s)
	}
	register(t, base, "x", 1)
	for _, m := range readUntil(t, r, "x-000") {
		var e heartbeatpb.WatchAssignmentsResponse
		m.decode(t, &e)
		if strings.HasPrefix(e.GetResourceId(), "w-") {
			t.Errorf("after resuming from %s: an event of a revision seen in full: %+v", last, m)
		}
	}
	r.close()

	// node_id keeps only the changes that give a resource to (or take one
	// from) that member: here the assignments.
	f := openSSE(t, base+"/v1/watch/assignments?node_id=n1&from_revision="+fmt.Sprint(from), nil)
	if s := f.next(); s.event != "start" {
		t.Fatalf("filtered: first event %+v", s)
	}
	for i := 0; i < 3; i++ {
		m := f.next()
		var e heartbeatpb.WatchAssignmentsResponse
		m.decode(t, &e)
		if m.event != "assigned" || e.GetOwnerNodeId() != "n1" || e.GetEpoch() == 0 || !strings.HasPrefix(e.GetResourceId(), "w-") {
			t.Errorf("filtered event %d: %+v %v", i, m, &e)
		}
	}
	f.close()
}

// readChanges reads events until `resources` resources have been both
// registered and assigned.
func readChanges(t *testing.T, w *sseClient, resources int) []sseMsg {
	t.Helper()
	var got []sseMsg
	assigned := 0
	for assigned < resources {
		m := w.next()
		var e heartbeatpb.WatchAssignmentsResponse
		m.decode(t, &e)
		if m.event != heartbeatpb.Short(e.GetKind()) || e.GetRevision() == 0 {
			t.Fatalf("event %+v: data %v", m, &e)
		}
		switch e.GetKind() {
		case heartbeatpb.ChangeKind_CHANGE_KIND_REGISTERED:
		case heartbeatpb.ChangeKind_CHANGE_KIND_ASSIGNED:
			if e.GetOwnerNodeId() == "" || e.GetEpoch() != e.GetRevision() {
				t.Errorf("assigned event %v", &e)
			}
			assigned++
		default:
			t.Fatalf("unexpected event %+v", m)
		}
		got = append(got, m)
	}
	return got
}

// readUntil reads events up to the one that names resource id.
func readUntil(t *testing.T, w *sseClient, id string) []sseMsg {
	t.Helper()
	var got []sseMsg
	for {
		m := w.next()
		got = append(got, m)
		if strings.Contains(m.data, `"`+id+`"`) {
			return got
		}
	}
}

// events is the comparable part of a run of events (an event's data holds
// no time, so two streams' events of one revision range are equal).
func events(ms []sseMsg) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.event + " " + m.data
	}
	return out
}

// checkIDs: no event but "start" carries an id; the ids the client was
// given (lastID, the last of them) name a revision that is complete: at
// least the last revision of evs.
func checkIDs(t *testing.T, evs []sseMsg, lastID string) {
	t.Helper()
	var prev uint64
	for i, m := range evs {
		var e heartbeatpb.WatchAssignmentsResponse
		m.decode(t, &e)
		if e.GetRevision() < prev {
			t.Errorf("revision went down at event %d: %d after %d", i, e.GetRevision(), prev)
		}
		prev = e.GetRevision()
		if m.id != "" {
			t.Errorf("event %d (%s) has id %q: only revisions known complete are marked", i, m.event, m.id)
		}
	}
	if id, err := strconv.ParseUint(lastID, 10, 64); err != nil || id < prev {
		t.Errorf("Last-Event-ID %q after a later revision began, want >= %d", lastID, prev)
	}
}

// TestWatchFellBehind: a watch from a revision the change feed no longer
// holds is refused with 400 (OUT_OF_RANGE) before it streams: list again
// and resume from the listing's revision. A slow leader or members watch
// is told so with fell_behind on the next event instead (rpc/api tests).
func TestWatchFellBehind(t *testing.T) {
	c := testcluster.Start(t, 1, testcluster.Options{Tweak: func(cfg *node.Config) {
		cfg.Membership.FeedCapacity = membership.MaxBatch
	}})
	n := c.Leader()
	base := "http://" + n.HTTPAddr()
	from := n.Membership().Revision()
	register(t, base, "a", membership.MaxBatch/2)
	register(t, base, "b", membership.MaxBatch/2)
	testwait.Eventually(t, testcluster.DefaultWait, "the feed past "+fmt.Sprint(from), func() (bool, string) {
		_, err := n.Membership().Changes(from, 1)
		return err != nil, fmt.Sprint(err)
	})
	_, r := tryOpenSSE(t, base+"/v1/watch/assignments?from_revision="+fmt.Sprint(from), nil)
	e, ok := r.errorBody()
	if r.code != 400 || !ok || e.Status != "OUT_OF_RANGE" || !strings.Contains(e.Error, "list the resources again") {
		t.Errorf("watch from a compacted revision: %d %s", r.code, r.body)
	}
	// From the listing's revision it streams.
	var list heartbeatpb.ListResourcesResponse
	do(t, "GET", base+"/v1/resources", "").ok(t, "list", &list)
	w := openSSE(t, fmt.Sprintf("%s/v1/watch/assignments?from_revision=%d", base, list.GetRevision()), nil)
	if s := w.next(); s.event != "start" || s.id != fmt.Sprint(list.GetRevision()) {
		t.Errorf("watch from the listing: first event %+v", s)
	}
}

// TestWatchShutdown: open watches (reading ones and one that reads
// nothing) do not hold up Shutdown; the reading ones end with an "error"
// event (503), then the stream ends.
func TestWatchShutdown(t *testing.T) {
	c := testcluster.Start(t, 1, testcluster.Options{})
	n := c.Leader()
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
	c.Forget("n1")
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

// TestWatchSlowReader: a client that opens an assignment watch and never
// reads makes the gateway's write block (seen in the goroutine dump);
// meanwhile the node commits writes and another watcher keeps up, and the
// end of the gateway's context cuts the stalled write at once.
func TestWatchSlowReader(t *testing.T) {
	c := testcluster.Start(t, 1, testcluster.Options{})
	n := c.Leader()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	cfg := gateway.DefaultConfig()
	cfg.SSEWriteTimeout = 10 * time.Minute // the stalled write stays blocked until the stop cuts it
	cfg.Context = ctx
	base := serveGateway(t, n.ClientAddr(), cfg)
	addr := strings.TrimPrefix(base, "http://")

	stalled := dialStalled(t, addr, "/v1/watch/assignments")
	defer stalled.Close()
	reader := openSSE(t, base+"/v1/watch/assignments", nil)
	reader.next()

	// catchUp waits until every resource is owned and the reading watcher
	// has seen the latest resource change.
	var seen uint64
	catchUp := func() {
		testwait.Eventually(t, testcluster.DefaultWait, "settled and seen by the reading watcher", func() (bool, string) {
			var unowned int
			var rev uint64
			n.Membership().Read(func(s *membership.State) { unowned, rev = s.NumUnowned(), s.Revision() })
			for {
				m, ok := reader.poll()
				if !ok {
					break
				}
				var e heartbeatpb.WatchAssignmentsResponse
				if m.data != "" {
					m.decode(t, &e)
					seen = max(seen, e.GetRevision())
				}
			}
			pending := 0
			evs, err := n.Membership().Changes(seen, 0)
			if err != nil {
				return false, err.Error()
			}
			for _, e := range evs {
				if e.Revision > seen && e.Kind != membership.EventMember && e.Kind != membership.EventMemberRemoved {
					pending++
				}
			}
			return unowned == 0 && pending == 0, fmt.Sprintf("%d unowned, revision %d, reader at %d, %d resource events unseen", unowned, rev, seen, pending)
		})
	}

	// Long ids make the events big: a few batches overflow every buffer
	// between the node, the gateway and the stalled client.
	pad := strings.Repeat("p", 200)
	total := 0
	// Batches of a quarter of the maximum: each commits well within the
	// write timeout even on a loaded machine (a full batch of these long
	// ids took over 15 s there under -race).
	for batch := 0; !writeBlocked(); batch++ {
		if batch == 32 {
			t.Fatalf("the stalled stream's write never blocked after %d resources", total)
		}
		var items []string
		for i := 0; i < membership.MaxBatch/4; i++ {
			items = append(items, fmt.Sprintf(`{"id":"%s-%d-%d"}`, pad, batch, i))
		}
		began := time.Now()
		do(t, "POST", base+"/v1/resources", `{"resources":[`+strings.Join(items, ",")+`]}`).ok(t, fmt.Sprint("register batch ", batch), nil)
		total += len(items)
		t.Logf("batch %d committed in %v", batch, time.Since(began))
		catchUp()
	}

	// The node still commits.
	began := time.Now()
	do(t, "POST", base+"/v1/resources", `{"resources":[{"id":"after-stall"}]}`).ok(t, "register while a watcher stalls", nil)
	if took := time.Since(began); took > 10*time.Second {
		t.Errorf("a write took %v while a watcher stalls", took)
	}
	catchUp()
	if !writeBlocked() {
		t.Fatal("the stalled client's write no longer blocks")
	}
	stop() // the node stops: the stalled write is cut within the final write's bound
	testwait.Eventually(t, testcluster.DefaultWait, "the stalled handler to return", func() (bool, string) { return !writeBlocked(), "still blocked" })
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
