package gateway_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
	"github.com/heartbeat-sidecar/heartbeat/membership"
	"github.com/heartbeat-sidecar/heartbeat/node"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// TestHTTPAPI runs the HTTP face of a 3-node cluster (every call through a
// follower, which forwards writes): bad input, resources, members, reads
// and their freshness, the leadership, and join / remove / leave.
func TestHTTPAPI(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{FaultNet: true})
	c.Leader()
	follower := c.Followers()[0]
	base := "http://" + follower.HTTPAddr()

	t.Run("bad input", func(t *testing.T) { testBadInput(t, c, base) })
	t.Run("resources", func(t *testing.T) { testResources(t, c, base) })
	t.Run("members", func(t *testing.T) { testMembers(t, c, base) })
	t.Run("read modes", func(t *testing.T) { testReadModes(t, c, follower) })
	t.Run("leader", func(t *testing.T) { testLeader(t, c, base) })
	t.Run("leadership changes", func(t *testing.T) { testLeadershipChanges(t, c, base) })
	t.Run("join, remove, leave", func(t *testing.T) { testJoinRemoveLeave(t, c, base) })
}

// testBadInput: every malformed request is refused with its HTTP status and
// a JSON error body, and nothing of it is applied.
func testBadInput(t *testing.T, c *testcluster.Cluster, base string) {
	leader := c.Leader()
	long := strings.Repeat("x", membership.MaxResourceIDLen+1)
	var tooMany []string
	for i := 0; i <= membership.MaxBatch; i++ {
		tooMany = append(tooMany, fmt.Sprintf(`{"id":"many-%d"}`, i))
	}
	batch := func(items ...string) string { return `{"resources":[` + strings.Join(items, ",") + `]}` }
	revBefore := leader.Membership().Revision()
	cases := []struct {
		name, method, path, body string
		code                     int
	}{
		// Resources.
		{"oversized id", "POST", "/v1/resources", batch(`{"id":"` + long + `"}`), 400},
		{"empty id", "POST", "/v1/resources", batch(`{"id":""}`), 400},
		{"control char in id", "POST", "/v1/resources", batch(`{"id":"a\u0001b"}`), 400},
		{"weight too big", "POST", "/v1/resources", batch(`{"id":"bad-w","weight":1001}`), 400},
		{"negative weight", "POST", "/v1/resources", batch(`{"id":"bad-w","weight":-1}`), 400},
		{"unknown field", "POST", "/v1/resources", batch(`{"id":"bad-w","wieght":3}`), 400},
		{"unknown top-level field", "POST", "/v1/resources", `{"resource":[]}`, 400},
		{"not JSON", "POST", "/v1/resources", `weight=3`, 400},
		{"a bare list (the old shape)", "POST", "/v1/resources", `[{"id":"good-1"}]`, 400},
		{"trailing data", "POST", "/v1/resources", batch(`{"id":"good-1"}`) + ` {}`, 400},
		{"empty batch", "POST", "/v1/resources", batch(), 400},
		{"no body", "POST", "/v1/resources", "", 400},
		{"too many", "POST", "/v1/resources", batch(tooMany...), 413},
		{"one bad in a batch", "POST", "/v1/resources", batch(`{"id":"good-1"}`, `{"id":"good-2","weight":5000}`, `{"id":"good-3"}`), 400},
		{"duplicate in a batch", "POST", "/v1/resources", batch(`{"id":"good-1"}`, `{"id":"good-1"}`), 400},
		{"delete unknown", "DELETE", "/v1/resources/no-such", "", 404},
		{"delete with a body", "DELETE", "/v1/resources/good-1", `{"ids":["x"]}`, 400},
		{"wrong method", "PATCH", "/v1/resources/x", "", 405},
		{"wrong method on list", "DELETE", "/v1/resources", "", 405},
		{"delete: empty id", "DELETE", "/v1/resources/", "", 404},
		{"assignments of unknown node", "GET", "/v1/assignments?node_id=nobody", "", 404},
		{"old query name", "GET", "/v1/assignments?node=n1", "", 400},
		{"unknown query parameter", "GET", "/v1/status?verbose=1", "", 400},
		{"repeated singular parameter", "GET", "/v1/assignments?node_id=n1&node_id=n2", "", 400},
		{"stale on a write", "POST", "/v1/resources?stale", batch(`{"id":"good-1"}`), 400},
		// Members.
		{"drain unknown node", "PUT", "/v1/members/nobody/drain", `{"draining":true}`, 404},
		{"drain: path and body disagree", "PUT", "/v1/members/n1/drain", `{"node_id":"n2","draining":true}`, 400},
		{"ttl too small", "POST", "/v1/app/heartbeat", `{"ttl":"0.005s"}`, 400},
		{"ttl the old field", "POST", "/v1/app/heartbeat", `{"ttl_ms":"60000"}`, 400},
		{"get unknown", "GET", "/v1/resources/no-such", "", 404},
		{"join: the old voter field", "POST", "/v1/members", `{"node_id":"n9","peer_address":"127.0.0.1:1","voter":false}`, 400},
		{"priority: too high", "PUT", "/v1/members/n1/priority", `{"priority":101}`, 400},
		{"priority: negative", "PUT", "/v1/members/n1/priority", `{"priority":-1}`, 400},
		{"priority: a string", "PUT", "/v1/members/n1/priority", `{"priority":"high"}`, 400},
		{"priority: not JSON", "PUT", "/v1/members/n1/priority", `priority=5`, 400},
		{"priority: trailing data", "PUT", "/v1/members/n1/priority", `{"priority":5} {}`, 400},
		{"priority: unknown member", "PUT", "/v1/members/nobody/priority", `{"priority":5}`, 404},
		{"priority: POST", "POST", "/v1/members/n1/priority", `{"priority":5}`, 405},
		{"member: unknown sub-path", "GET", "/v1/members/n1/bogus", ``, 404},
		{"member: GET", "GET", "/v1/members/n1", ``, 405},
		{"remove: unknown member", "DELETE", "/v1/members/nobody", ``, 404},
		{"remove: empty id", "DELETE", "/v1/members/", ``, 404},
		{"join: not JSON", "POST", "/v1/members", `[`, 400},
		{"join: missing id", "POST", "/v1/members", `{"peer_address":"127.0.0.1:1"}`, 400},
		{"join: missing address", "POST", "/v1/members", `{"node_id":"n9"}`, 400},
		{"join: unknown field", "POST", "/v1/members", `{"node_id":"n9","peer_address":"127.0.0.1:1","vote":true}`, 400},
		{"join: id taken", "POST", "/v1/members", fmt.Sprintf(`{"node_id":"n1","peer_address":%q}`, "127.0.0.1:1"), 409},
		{"join: address taken", "POST", "/v1/members", fmt.Sprintf(`{"node_id":"n9","peer_address":%q}`, c.Node("n2").PeerAddr()), 409},
		{"leave: a body", "POST", "/v1/leave", `{"force":true}`, 400},
		{"leave: GET", "GET", "/v1/leave", ``, 405},
		// Leadership.
		{"transfer: not JSON", "POST", "/v1/leader/transfer", `{"node_id":`, 400},
		{"transfer: no body", "POST", "/v1/leader/transfer", ``, 400},
		{"transfer: missing id", "POST", "/v1/leader/transfer", `{}`, 400},
		{"transfer: the old field", "POST", "/v1/leader/transfer", `{"id":"n1"}`, 400},
		{"transfer: unknown id", "POST", "/v1/leader/transfer", `{"node_id":"nobody"}`, 404},
		{"step-down: a body", "POST", "/v1/leader/step-down", `{"now":true}`, 400},
		{"step-down: GET", "GET", "/v1/leader/step-down", ``, 405},
		{"leader: POST", "POST", "/v1/leader", ``, 405},
		{"leader: bad consistency", "GET", "/v1/leader?consistency=sometimes", ``, 400},
		// Watches.
		{"watch: POST", "POST", "/v1/watch/leader", ``, 405},
		{"watch assignments: bad revision", "GET", "/v1/watch/assignments?from_revision=soon", ``, 400},
		{"watch assignments: bad Last-Event-ID", "GET", "/v1/watch/assignments", ``, 400},
		{"watch assignments: ahead", "GET", "/v1/watch/assignments?from_revision=999999999", ``, 400},
		// Unknown paths.
		{"unknown path", "GET", "/nope", ``, 404},
		{"unknown version", "GET", "/v2/status", ``, 404},
		{"old drain route", "POST", "/v1/drain?node=n1", ``, 404},
		{"status: POST", "POST", "/v1/status", ``, 405},
	}
	for _, tc := range cases {
		req, err := http.NewRequest(tc.method, base+tc.path, strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		if tc.name == "watch assignments: bad Last-Event-ID" {
			req.Header.Set("Last-Event-ID", "soon")
		}
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		r := reply{code: resp.StatusCode, header: resp.Header, body: readAll(t, resp)}
		if e, ok := r.errorBody(); r.code != tc.code || !ok {
			t.Errorf("%s: %s %s: %d %s (%+v), want %d with a JSON error", tc.name, tc.method, tc.path, r.code, r.body, e, tc.code)
		}
		if tc.code == 405 && r.header.Get("Allow") == "" {
			t.Errorf("%s: 405 without Allow", tc.name)
		}
	}
	// Nothing was committed by any refused request.
	for _, id := range []string{"good-1", "good-3", "bad-w", "many-0"} {
		if _, ok := resourceOf(leader, id); ok {
			t.Errorf("%s exists after a refused request", id)
		}
	}
	if n := len(leader.Membership().View().Resources); n != 0 {
		t.Errorf("%d resources after refused requests (revision %d -> %d)", n, revBefore, leader.Membership().Revision())
	}
	if l := c.Leader(); l.ID() != leader.ID() {
		t.Errorf("leader moved from %s to %s after refused requests", leader.ID(), l.ID())
	}
	ms, err := leader.Members()
	if err != nil || len(ms) != 3 {
		t.Errorf("members after refused requests: %+v %v", ms, err)
	}
	for _, m := range ms {
		if m.LeaderPriority != 0 || m.Draining {
			t.Errorf("%+v after refused requests", m)
		}
	}
}

// testResources: a batch registers all or none; ids with '/' work in the
// path (escaped); listings and assignments; a body over the limit is 413.
func testResources(t *testing.T, c *testcluster.Cluster, base string) {
	leader := c.Leader()
	var wr heartbeatpb.RegisterResourcesResponse
	do(t, "POST", base+"/v1/resources", `{"resources":[{"id":"solo/one","weight":7,"labels":{"zone":"a"}},{"id":"r-1"},{"id":"r-2","weight":2}]}`).
		ok(t, "register a batch", &wr)
	if wr.GetRevision() == 0 || wr.GetChanged() != 3 {
		t.Errorf("register: %v", &wr)
	}
	// Read-your-writes through the follower that forwarded: consistent
	// by default.
	var list heartbeatpb.ListResourcesResponse
	testwait.Eventually(t, testcluster.DefaultWait, "the batch assigned", func() (bool, string) {
		do(t, "GET", base+"/v1/resources", "").ok(t, "list", &list)
		owned := 0
		for _, r := range list.GetResources() {
			if r.GetOwnerNodeId() != "" && r.GetEpoch() > 0 {
				owned++
			}
		}
		return owned == 3, fmt.Sprint(list.GetResources())
	})
	if list.GetRevision() < wr.GetRevision() || list.GetRead() == nil {
		t.Errorf("listing at revision %d (read %v) after a write at %d", list.GetRevision(), list.GetRead(), wr.GetRevision())
	}
	for _, r := range list.GetResources() {
		if r.GetId() == "solo/one" && (r.GetWeight() != 7 || r.GetLabels()["zone"] != "a") {
			t.Errorf("solo/one listed as %v", r)
		}
	}
	// Assignments: of this node by default, and of another by name.
	var mine heartbeatpb.ListAssignmentsResponse
	do(t, "GET", base+"/v1/assignments", "").ok(t, "assignments", &mine)
	var all int
	for _, id := range []string{"n1", "n2", "n3"} {
		var theirs heartbeatpb.ListAssignmentsResponse
		do(t, "GET", base+"/v1/assignments?node_id="+id, "").ok(t, "assignments of "+id, &theirs)
		for _, r := range theirs.GetResources() {
			if r.GetOwnerNodeId() != id {
				t.Errorf("assignments of %s list %v", id, r)
			}
		}
		all += len(theirs.GetResources())
	}
	if all != 3 {
		t.Errorf("assignments of n1..n3 list %d resources, want 3", all)
	}

	// Get by id, escaped '/': the id is "solo/one".
	var got heartbeatpb.GetResourceResponse
	do(t, "GET", base+"/v1/resources/solo%2Fone", "").ok(t, "get solo/one", &got)
	if r := got.GetResource(); r.GetId() != "solo/one" || r.GetWeight() != 7 || r.GetLabels()["zone"] != "a" || got.GetRead() == nil {
		t.Errorf("GET solo/one: %v", &got)
	}
	var dr heartbeatpb.DeleteResourcesResponse
	do(t, "DELETE", base+"/v1/resources/solo%2Fone", "").ok(t, "delete solo/one", &dr)
	if _, ok := resourceOf(leader, "solo/one"); ok {
		t.Error("solo/one still registered after DELETE")
	}
	if r := do(t, "DELETE", base+"/v1/resources/solo%2Fone", ""); r.code != 404 {
		t.Errorf("second DELETE: %d %s", r.code, r.body)
	}

	// An oversized body is refused before it is decoded.
	big := `{"resources":[{"id":"x","labels":{"k":"` + strings.Repeat("v", 33<<20) + `"}}]}`
	if r := do(t, "POST", base+"/v1/resources", big); r.code != 413 || !strings.Contains(r.body, "body over") {
		t.Errorf("oversized body: %d %.200s", r.code, r.body)
	}
	if r := do(t, "GET", base+"/v1/resources/solo%2Fone", ""); r.code != 404 {
		t.Errorf("GET after DELETE: %d %s", r.code, r.body)
	}
}

// testMembers: the member list, drain and undrain of a member by name,
// the application heartbeat.
func testMembers(t *testing.T, c *testcluster.Cluster, base string) {
	var ms heartbeatpb.ListMembersResponse
	do(t, "GET", base+"/v1/members", "").ok(t, "members", &ms)
	if len(ms.GetMembers()) != 3 || ms.GetRead() == nil {
		t.Fatalf("members: %v", &ms)
	}
	for _, m := range ms.GetMembers() {
		if m.GetState() != heartbeatpb.MemberState_MEMBER_STATE_ALIVE || !m.GetAppHealthy() || m.GetDraining() || m.GetClientAddress() == "" || m.GetHttpAddress() == "" {
			t.Errorf("member %v", m)
		}
	}
	target := c.Leader().ID()
	var wr heartbeatpb.SetDrainResponse
	do(t, "PUT", base+"/v1/members/"+target+"/drain", `{"draining":true}`).ok(t, "drain", &wr)
	testwait.Eventually(t, testcluster.DefaultWait, target+" drained", func() (bool, string) {
		ms, err := c.Leader().Members()
		for _, m := range ms {
			if m.ID == target {
				return m.Draining, fmt.Sprintf("%+v", m)
			}
		}
		return false, fmt.Sprint(err)
	})
	do(t, "PUT", base+"/v1/members/"+target+"/drain", `{"draining":false}`).ok(t, "undrain", &wr)
	testwait.Eventually(t, testcluster.DefaultWait, target+" undrained", func() (bool, string) {
		ms, err := c.Leader().Members()
		for _, m := range ms {
			if m.ID == target {
				return !m.Draining, fmt.Sprintf("%+v", m)
			}
		}
		return false, fmt.Sprint(err)
	})
	var hb heartbeatpb.AppHeartbeatResponse
	do(t, "POST", base+"/v1/app/heartbeat", `{"ttl":"60s"}`).ok(t, "app heartbeat", &hb)
	if !hb.GetAppHealthy() || hb.GetState() != heartbeatpb.MemberState_MEMBER_STATE_ALIVE {
		t.Errorf("app heartbeat: %v", &hb)
	}
}

// testReadModes: every read is consistent by default (it sees a write
// acknowledged through another node just before, and says so in its
// headers), stale when asked (?stale, ?consistency=stale) and marked so; a
// bad mode is 400; a follower cut off from the leader answers a consistent
// read 503 with a reason, never its old state, and a stale one 200 with
// X-Heartbeat-Known-Leader false once it has lost the leader.
func testReadModes(t *testing.T, c *testcluster.Cluster, f *node.Node) {
	leader := c.Leader()
	lbase, fbase := "http://"+leader.HTTPAddr(), "http://"+f.HTTPAddr()
	reads := []string{"/v1/status", "/v1/members", "/v1/resources", "/v1/resources/seen", "/v1/assignments", "/v1/leader"}

	do(t, "POST", lbase+"/v1/resources", `{"resources":[{"id":"seen"}]}`).ok(t, "register on the leader", nil)
	for _, path := range reads {
		r := do(t, "GET", fbase+path, "")
		h := r.header
		if r.code != 200 || h.Get("X-Heartbeat-Consistent") != "true" || h.Get("X-Heartbeat-Known-Leader") != "true" ||
			h.Get("X-Heartbeat-Revision") == "" || h.Get("X-Heartbeat-Last-Contact-Ms") == "" || h.Get("X-Heartbeat-Leader-Node-Id") != leader.ID() {
			t.Errorf("consistent GET %s on a follower: %d %v %s", path, r.code, h, r.body)
		}
		if path == "/v1/resources" && !strings.Contains(r.body, `"seen"`) {
			t.Errorf("a consistent listing on a follower misses a write acknowledged before it: %s", r.body)
		}
		for _, q := range []string{"?stale", "?stale=true", "?consistency=stale", "?consistency=CONSISTENCY_STALE", "?consistency=Stale"} {
			r := do(t, "GET", fbase+path+q, "")
			if r.code != 200 || r.header.Get("X-Heartbeat-Consistent") != "false" {
				t.Errorf("GET %s%s: %d consistent=%q %s", path, q, r.code, r.header.Get("X-Heartbeat-Consistent"), r.body)
			}
		}
		for _, q := range []string{"?stale=false", "?consistency=consistent"} {
			if r := do(t, "GET", fbase+path+q, ""); r.code != 200 || r.header.Get("X-Heartbeat-Consistent") != "true" {
				t.Errorf("GET %s%s: %d consistent=%q", path, q, r.code, r.header.Get("X-Heartbeat-Consistent"))
			}
		}
		for _, q := range []string{"?consistency=sometimes", "?stale=maybe", "?stale&consistency=consistent"} {
			if r := do(t, "GET", fbase+path+q, ""); r.code != 400 {
				t.Errorf("GET %s%s: %d %s, want 400", path, q, r.code, r.body)
			}
		}
	}
	// HEAD answers like GET, without a body.
	if r := do(t, "HEAD", fbase+"/v1/status", ""); r.code != 200 || r.body != "" || r.header.Get("X-Heartbeat-Revision") == "" {
		t.Errorf("HEAD /v1/status: %d %v %q", r.code, r.header, r.body)
	}

	c.Isolate(f.ID())
	testwait.Eventually(t, testcluster.DefaultWait, f.ID()+" loses the leader", func() (bool, string) {
		s := f.Status()
		return s.Leader.ID == "", "still follows " + s.Leader.ID
	})
	for _, path := range reads {
		if r := do(t, "GET", fbase+path, ""); r.code != 503 || !strings.Contains(r.body, "leader") {
			t.Errorf("consistent GET %s on a cut-off follower: %d %s, want 503 naming the missing leader", path, r.code, r.body)
		}
		r := do(t, "GET", fbase+path+"?stale", "")
		if path == "/v1/assignments" || path == "/v1/resources/seen" {
			continue // as before the gateway: only these four are checked stale
		}
		if r.code != 200 || r.header.Get("X-Heartbeat-Known-Leader") != "false" || r.header.Get("X-Heartbeat-Consistent") != "false" {
			t.Errorf("stale GET %s on a cut-off follower: %d %v %s", path, r.code, r.header, r.body)
		}
	}
	c.Heal(f.ID())
	c.Ready()
}

// testLeader: GET /v1/leader on a follower names the leader with its
// addresses; on the leader it says so, with the lease.
func testLeader(t *testing.T, c *testcluster.Cluster, base string) {
	leader := c.Leader()
	var resp heartbeatpb.GetLeaderResponse
	testwait.Eventually(t, testcluster.DefaultWait, "GET /v1/leader with the leader's addresses", func() (bool, string) {
		r := do(t, "GET", base+"/v1/leader", "")
		r.ok(t, "GET /v1/leader", &resp)
		l := resp.GetLeadership().GetLeader()
		return l.GetClientAddress() != "" && l.GetNodeId() == leader.ID(), r.body
	})
	li := resp.GetLeadership()
	l := li.GetLeader()
	if l.GetPeerAddress() != leader.PeerAddr() || l.GetClientAddress() != leader.ClientAddr() || l.GetHttpAddress() != leader.HTTPAddr() ||
		li.GetTerm() == 0 || li.GetFencingToken() == 0 || li.GetIsLeader() || li.GetLeaseUntil() != nil || resp.GetRead() == nil {
		t.Errorf("GET /v1/leader on a follower: %v, want leader %s", &resp, leader.ID())
	}
	do(t, "GET", "http://"+leader.HTTPAddr()+"/v1/leader", "").ok(t, "GET /v1/leader on the leader", &resp)
	if li := resp.GetLeadership(); !li.GetIsLeader() || li.GetLeaseUntil() == nil || li.GetLeaseRemaining() == nil || li.GetLeader().GetNodeId() != leader.ID() {
		t.Errorf("GET /v1/leader on the leader: %v", &resp)
	}
	// Every field is in the answer, zero values too (EmitUnpopulated).
	r := do(t, "GET", base+"/v1/status", "")
	for _, k := range []string{`"node_id"`, `"state"`, `"term"`, `"leader"`, `"fencing_token"`, `"is_leader"`, `"commit_index"`, `"cluster_id"`, `"read"`} {
		if !strings.Contains(r.body, k) {
			t.Errorf("/v1/status lacks %s: %s", k, r.body)
		}
	}
}

// testLeadershipChanges: a priority change shows on the members watch; a
// transfer and a step-down show on the leader watch with rising fencing
// tokens.
func testLeadershipChanges(t *testing.T, c *testcluster.Cluster, base string) {
	leader := c.Leader()
	leaders := openSSE(t, base+"/v1/watch/leader", nil)
	members := openSSE(t, base+"/v1/watch/members", nil)

	first := leaders.next()
	var le heartbeatpb.WatchLeaderResponse
	first.decode(t, &le)
	li := le.GetLeadership()
	if first.event != "leader" || li.GetLeader().GetNodeId() != leader.ID() || li.GetFencingToken() == 0 || li.GetObserved() == nil {
		t.Fatalf("first leader event %+v: %v", first, &le)
	}
	m0 := members.next()
	var mi heartbeatpb.WatchMembersResponse
	m0.decode(t, &mi)
	if m0.event != "members" || len(mi.GetMembers()) != 3 || mi.GetRevision() == 0 || m0.id != fmt.Sprint(mi.GetRevision()) || mi.GetRead() == nil {
		t.Fatalf("first members event %+v: %v", m0, &mi)
	}

	// The leader's own priority: no transfer follows (nobody is higher).
	var wr heartbeatpb.SetLeaderPriorityResponse
	do(t, "PUT", base+"/v1/members/"+leader.ID()+"/priority", `{"priority":50}`).ok(t, "PUT priority", &wr)
	members.until("with the new priority", func(m sseMsg) bool {
		var mi heartbeatpb.WatchMembersResponse
		m.decode(t, &mi)
		for _, mm := range mi.GetMembers() {
			if mm.GetNodeId() == leader.ID() && mm.GetLeaderPriority() == 50 {
				return mi.GetRevision() >= wr.GetRevision()
			}
		}
		return false
	})
	// Back to 0, so that leadership can move freely below.
	do(t, "PUT", base+"/v1/members/"+leader.ID()+"/priority", `{"priority":0}`).ok(t, "PUT priority 0", nil)

	// Transfer to the follower asked.
	var target *node.Node
	for _, f := range c.Followers() {
		if f.ID() != leader.ID() {
			target = f
			break
		}
	}
	var tr heartbeatpb.TransferLeadershipResponse
	do(t, "POST", base+"/v1/leader/transfer", fmt.Sprintf(`{"node_id":%q}`, target.ID())).ok(t, "transfer", &tr)
	if ch := tr.GetChange(); ch.GetPreviousNodeId() != leader.ID() || ch.GetLeader().GetNodeId() != target.ID() || ch.GetFencingToken() <= li.GetFencingToken() {
		t.Errorf("transfer to %s: %v (token before %d)", target.ID(), &tr, li.GetFencingToken())
	}
	ev := leaders.until("naming "+target.ID(), func(m sseMsg) bool {
		var l heartbeatpb.WatchLeaderResponse
		m.decode(t, &l)
		return l.GetLeadership().GetLeader().GetNodeId() == target.ID()
	})
	var after heartbeatpb.WatchLeaderResponse
	ev.decode(t, &after)
	if after.GetLeadership().GetFencingToken() <= li.GetFencingToken() {
		t.Errorf("fencing token after the transfer %d, not above %d", after.GetLeadership().GetFencingToken(), li.GetFencingToken())
	}

	// Step down (an empty body is the empty request): another voter leads.
	var sd heartbeatpb.StepDownResponse
	do(t, "POST", base+"/v1/leader/step-down", "").ok(t, "step-down", &sd)
	if sd.GetChange().GetPreviousNodeId() != target.ID() {
		t.Errorf("step-down: %v, want previous %s", &sd, target.ID())
	}
	leaders.until("naming a leader other than "+target.ID(), func(m sseMsg) bool {
		var l heartbeatpb.WatchLeaderResponse
		m.decode(t, &l)
		id := l.GetLeadership().GetLeader().GetNodeId()
		return id != "" && id != target.ID() && l.GetLeadership().GetFencingToken() > after.GetLeadership().GetFencingToken()
	})
	if l := c.Leader(); l.ID() == target.ID() {
		t.Errorf("%s still leads after stepping down", l.ID())
	}
}

// testJoinRemoveLeave: a node added over HTTP as a non-voter starts, joins
// and registers; it then leaves over its own HTTP port and stops; a second
// added (never started) is removed with DELETE.
func testJoinRemoveLeave(t *testing.T, c *testcluster.Cluster, base string) {
	addrs := testcluster.FreeAddrs(t, 2)
	var jr heartbeatpb.JoinResponse
	do(t, "POST", base+"/v1/members", fmt.Sprintf(`{"node_id":"n4","peer_address":%q,"nonvoter":true}`, addrs[0])).ok(t, "join n4", &jr)
	if jr.GetRevision() == 0 {
		t.Errorf("join n4: %v", &jr)
	}
	// The node asked decides on its own copy of the configuration: wait
	// until it has applied the change. A repeat is then a no-op.
	applied := func(id string) {
		t.Helper()
		testwait.Eventually(t, testcluster.DefaultWait, id+" in the configuration of the node asked", func() (bool, string) {
			var ms heartbeatpb.ListMembersResponse
			do(t, "GET", base+"/v1/members", "").ok(t, "members", &ms)
			for _, m := range ms.GetMembers() {
				if m.GetNodeId() == id {
					return m.GetSuffrage() == heartbeatpb.Suffrage_SUFFRAGE_NONVOTER, m.String()
				}
			}
			return false, id + " not listed"
		})
	}
	applied("n4")
	do(t, "POST", base+"/v1/members", fmt.Sprintf(`{"node_id":"n4","peer_address":%q,"nonvoter":true}`, addrs[0])).ok(t, "join n4 again", &jr)
	if jr.GetRevision() != 0 {
		t.Errorf("join n4 again: %v, want revision 0", &jr)
	}
	n4 := c.Join("n4", addrs[0], false)
	c.WaitMembers()

	// n4 leaves through its own HTTP port.
	var lr heartbeatpb.LeaveResponse
	do(t, "POST", "http://"+n4.HTTPAddr()+"/v1/leave", "").ok(t, "leave n4", &lr)
	if lr.GetNodeId() != "n4" {
		t.Errorf("leave: %v", &lr)
	}
	testwait.Eventually(t, testcluster.DefaultWait, "n4 left and out of the raft configuration", func() (bool, string) {
		ms, err := c.Leader().Members()
		if err != nil {
			return false, err.Error()
		}
		for _, m := range ms {
			if m.ID == "n4" {
				return m.State == "left" && m.Suffrage == "", fmt.Sprintf("%+v", m)
			}
		}
		return true, "n4 not listed"
	})
	select {
	case <-n4.Left():
	default:
		t.Error("Left() not closed after a successful leave")
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := n4.Shutdown(ctx); err != nil {
		t.Errorf("n4 shutdown after leaving: %v", err)
	}
	c.Forget("n4")

	// n5 is added but never started; DELETE removes it.
	do(t, "POST", base+"/v1/members", fmt.Sprintf(`{"node_id":"n5","peer_address":%q,"nonvoter":true}`, addrs[1])).ok(t, "join n5", &jr)
	applied("n5")
	var rr heartbeatpb.RemoveResponse
	do(t, "DELETE", base+"/v1/members/n5", "").ok(t, "remove n5", &rr)
	if rr.GetRevision() == 0 {
		t.Errorf("remove n5: %v", &rr)
	}
	testwait.Eventually(t, testcluster.DefaultWait, "n5 out of the raft configuration", func() (bool, string) {
		ms, err := c.Leader().Members()
		if err != nil {
			return false, err.Error()
		}
		for _, m := range ms {
			if m.ID == "n5" && m.Suffrage != "" {
				return false, fmt.Sprintf("%+v", m)
			}
		}
		return true, ""
	})
}

// resourceOf reads resource id from n's committed state.
func resourceOf(n *node.Node, id string) (membership.Resource, bool) {
	var r membership.Resource
	var ok bool
	n.Membership().Read(func(s *membership.State) { r, ok = s.Resource(id) })
	return r, ok
}

// readAll reads and closes a response body.
func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String()
		}
	}
}
