package node

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/heartbeat-sidecar/heartbeat/internal/testport"
)

// decodeOK checks a 200 answer and decodes its JSON body into v.
func decodeOK(t *testing.T, what string, code int, body string, v any) {
	t.Helper()
	if code != http.StatusOK {
		t.Fatalf("%s: %d %s", what, code, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("%s: body %q: %v", what, body, err)
	}
}

// TestHTTPLeadership drives the leadership and cluster-change endpoints of a
// 3-node cluster over HTTP: bad input first (nothing of it applied), then
// GET /v1/leader, priority, transfer and step-down seen on the leader and
// members watches, a join, a remove and a leave.
func TestHTTPLeadership(t *testing.T) {
	c := startMemCluster(t, 3, 0)
	leader := c.leader()
	c.waitMembers()
	follower := c.follower()
	base := "http://" + follower.HTTPAddr()

	t.Run("bad input", func(t *testing.T) {
		cases := []struct {
			name, method, path, body string
			code                     int
		}{
			{"transfer: not JSON", "POST", "/v1/leader/transfer", `{"id":`, 400},
			{"transfer: no body", "POST", "/v1/leader/transfer", ``, 400},
			{"transfer: missing id", "POST", "/v1/leader/transfer", `{}`, 400},
			{"transfer: unknown field", "POST", "/v1/leader/transfer", `{"node":"n1"}`, 400},
			{"transfer: unknown id", "POST", "/v1/leader/transfer", `{"id":"nobody"}`, 404},
			{"step-down: a body", "POST", "/v1/leader/step-down", `{"now":true}`, 400},
			{"step-down: GET", "GET", "/v1/leader/step-down", ``, 405},
			{"leader: POST", "POST", "/v1/leader", ``, 405},
			{"priority: too high", "PUT", "/v1/members/n1/priority", `{"priority":101}`, 400},
			{"priority: negative", "PUT", "/v1/members/n1/priority", `{"priority":-1}`, 400},
			{"priority: missing", "PUT", "/v1/members/n1/priority", `{}`, 400},
			{"priority: a string", "PUT", "/v1/members/n1/priority", `{"priority":"high"}`, 400},
			{"priority: not JSON", "PUT", "/v1/members/n1/priority", `priority=5`, 400},
			{"priority: trailing data", "PUT", "/v1/members/n1/priority", `{"priority":5} {}`, 400},
			{"priority: unknown member", "PUT", "/v1/members/nobody/priority", `{"priority":5}`, 404},
			{"priority: POST", "POST", "/v1/members/n1/priority", `{"priority":5}`, 405},
			{"member: unknown sub-path", "GET", "/v1/members/n1/bogus", ``, 404},
			{"member: GET", "GET", "/v1/members/n1", ``, 405},
			{"remove: unknown member", "DELETE", "/v1/members/nobody", ``, 404},
			{"remove: empty id", "DELETE", "/v1/members/", ``, 400},
			{"join: not JSON", "POST", "/v1/members", `[`, 400},
			{"join: missing id", "POST", "/v1/members", `{"peer_address":"127.0.0.1:1"}`, 400},
			{"join: missing address", "POST", "/v1/members", `{"id":"n9"}`, 400},
			{"join: unknown field", "POST", "/v1/members", `{"id":"n9","peer_address":"127.0.0.1:1","vote":true}`, 400},
			{"join: id taken", "POST", "/v1/members", fmt.Sprintf(`{"id":"n1","peer_address":%q}`, "127.0.0.1:1"), 409},
			{"join: address taken", "POST", "/v1/members", fmt.Sprintf(`{"id":"n9","peer_address":%q}`, c.nodes["n2"].PeerAddr()), 409},
			{"leave: a body", "POST", "/v1/leave", `{"force":true}`, 400},
			{"leave: GET", "GET", "/v1/leave", ``, 405},
			{"watch: POST", "POST", "/v1/watch/leader", ``, 405},
			{"watch assignments: bad from", "GET", "/v1/watch/assignments?from=soon", ``, 400},
			{"watch assignments: unknown node", "GET", "/v1/watch/assignments?node=nobody", ``, 404},
		}
		for _, tc := range cases {
			code, body := httpBody(t, tc.method, base+tc.path, tc.body)
			var e struct {
				Error string `json:"error"`
				Code  int    `json:"code"`
			}
			if code != tc.code || json.Unmarshal([]byte(body), &e) != nil || e.Error == "" || e.Code != code {
				t.Errorf("%s: %s %s: %d %s, want %d with a JSON error", tc.name, tc.method, tc.path, code, body, tc.code)
			}
		}
		if l := c.leader(); l.ID() != leader.ID() {
			t.Errorf("leader moved from %s to %s after refused requests", leader.ID(), l.ID())
		}
		ms, err := follower.Members()
		if err != nil || len(ms) != 3 {
			t.Errorf("members after refused requests: %+v %v", ms, err)
		}
		for _, m := range ms {
			if m.LeaderPriority != 0 {
				t.Errorf("%s has priority %d after refused requests", m.ID, m.LeaderPriority)
			}
		}
	})

	t.Run("leader", func(t *testing.T) {
		var li LeaderInfo
		waitFor(t, "GET /v1/leader with the leader's addresses", func() (bool, string) {
			code, body := httpDo(t, "GET", base+"/v1/leader")
			decodeOK(t, "GET /v1/leader", code, body, &li)
			return li.Leader.ClientAddress != "", body
		})
		if li.Leader.ID != leader.ID() || li.Leader.Address != leader.PeerAddr() || li.Leader.ClientAddress != leader.ClientAddr() ||
			li.Leader.HTTPAddress != leader.HTTPAddr() || li.Term == 0 || li.FencingToken == 0 || li.IsSelf || li.LeaseUntil != nil {
			t.Errorf("GET /v1/leader on follower %s: %+v, want leader %s", follower.ID(), li, leader.ID())
		}
		code, body := httpDo(t, "GET", "http://"+leader.HTTPAddr()+"/v1/leader")
		decodeOK(t, "GET /v1/leader on the leader", code, body, &li)
		if !li.IsSelf || li.LeaseUntil == nil || li.Leader.ID != leader.ID() {
			t.Errorf("GET /v1/leader on the leader: %+v", li)
		}
	})

	t.Run("priority and leadership changes", func(t *testing.T) {
		testLeadershipChanges(t, c, base)
	})

	t.Run("join, remove, leave", func(t *testing.T) {
		testJoinRemoveLeave(t, c, base)
	})
}

// testLeadershipChanges: a priority change shows on the members watch; a
// transfer and a step-down show on the leader watch with rising fencing
// tokens.
func testLeadershipChanges(t *testing.T, c *cluster, base string) {
	leader := c.leader()
	leaders := openSSE(t, base+"/v1/watch/leader", nil)
	members := openSSE(t, base+"/v1/watch/members", nil)

	first := leaders.next()
	var li LeaderInfo
	first.decode(t, &li)
	if first.event != "leader" || li.Leader.ID != leader.ID() || li.FencingToken == 0 || li.Observed == nil {
		t.Fatalf("first leader event %+v: %+v", first, li)
	}
	m0 := members.next()
	var mi MembersInfo
	m0.decode(t, &mi)
	if m0.event != "members" || len(mi.Members) != 3 || mi.Revision == 0 || m0.id != fmt.Sprint(mi.Revision) {
		t.Fatalf("first members event %+v: %+v", m0, mi)
	}

	// The leader's own priority: no transfer follows (nobody is higher).
	code, body := httpBody(t, "PUT", base+"/v1/members/"+leader.ID()+"/priority", `{"priority":50}`)
	var wr writeResultJSON
	decodeOK(t, "PUT priority", code, body, &wr)
	if wr.Revision == 0 {
		t.Errorf("PUT priority: %s", body)
	}
	members.until("with the new priority", func(m sseMsg) bool {
		var mi MembersInfo
		m.decode(t, &mi)
		for _, mm := range mi.Members {
			if mm.ID == leader.ID() && mm.LeaderPriority == 50 {
				return mi.Revision >= wr.Revision
			}
		}
		return false
	})
	// Back to 0, so that leadership can move freely below.
	if code, body := httpBody(t, "PUT", base+"/v1/members/"+leader.ID()+"/priority", `{"priority":0}`); code != 200 {
		t.Fatalf("PUT priority 0: %d %s", code, body)
	}

	// Transfer to the follower asked.
	target := c.follower(leader.ID())
	code, body = httpBody(t, "POST", base+"/v1/leader/transfer", fmt.Sprintf(`{"id":%q}`, target.ID()))
	var ch LeadershipChange
	decodeOK(t, "transfer", code, body, &ch)
	if ch.Previous != leader.ID() || ch.Leader.ID != target.ID() || ch.FencingToken <= li.FencingToken {
		t.Errorf("transfer to %s: %+v (token before %d)", target.ID(), ch, li.FencingToken)
	}
	ev := leaders.until("naming "+target.ID(), func(m sseMsg) bool {
		var l LeaderInfo
		m.decode(t, &l)
		return l.Leader.ID == target.ID()
	})
	var after LeaderInfo
	ev.decode(t, &after)
	if after.FencingToken <= li.FencingToken {
		t.Errorf("fencing token after the transfer %d, not above %d", after.FencingToken, li.FencingToken)
	}
	if l := c.leader(); l.ID() != target.ID() {
		t.Fatalf("leader after the transfer: %s, want %s", l.ID(), target.ID())
	}

	// Step down: another voter leads.
	code, body = httpBody(t, "POST", base+"/v1/leader/step-down", "")
	decodeOK(t, "step-down", code, body, &ch)
	if ch.Previous != target.ID() {
		t.Errorf("step-down: %+v, want previous %s", ch, target.ID())
	}
	leaders.until("naming a leader other than "+target.ID(), func(m sseMsg) bool {
		var l LeaderInfo
		m.decode(t, &l)
		return l.Leader.ID != "" && l.Leader.ID != target.ID() && l.FencingToken > after.FencingToken
	})
	if l := c.leader(); l.ID() == target.ID() {
		t.Errorf("%s still leads after stepping down", l.ID())
	}
}

// testJoinRemoveLeave: a node added over HTTP as a non-voter starts, joins
// and registers; it then leaves over its own HTTP port and stops; a second
// added (never started) is removed with DELETE.
func testJoinRemoveLeave(t *testing.T, c *cluster, base string) {
	addrs := testport.Addrs(t, 2)
	code, body := httpBody(t, "POST", base+"/v1/members", fmt.Sprintf(`{"id":"n4","peer_address":%q,"voter":false}`, addrs[0]))
	var jr struct{ Index uint64 }
	decodeOK(t, "join n4", code, body, &jr)
	if jr.Index == 0 {
		t.Errorf("join n4: %s", body)
	}
	// The node asked decides on its own copy of the configuration: wait
	// until it has applied the change. A repeat is then a no-op.
	applied := func(id string) {
		t.Helper()
		waitFor(t, id+" in the configuration of the node asked", func() (bool, string) {
			code, body := httpDo(t, "GET", base+"/v1/members")
			var ms []Member
			decodeOK(t, "GET /v1/members", code, body, &ms)
			for _, m := range ms {
				if m.ID == id {
					return m.Suffrage == "nonvoter", fmt.Sprintf("%+v", m)
				}
			}
			return false, id + " not listed"
		})
	}
	applied("n4")
	code, body = httpBody(t, "POST", base+"/v1/members", fmt.Sprintf(`{"id":"n4","peer_address":%q,"voter":false}`, addrs[0]))
	decodeOK(t, "join n4 again", code, body, &jr)
	if jr.Index != 0 {
		t.Errorf("join n4 again: %s, want index 0", body)
	}
	n4 := c.join("n4", addrs[0], false)
	c.waitMembers()
	ms, err := c.follower("n4").Members()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.ID == "n4" && (m.Suffrage != "nonvoter" || m.Voter) {
			t.Errorf("n4 joined as %+v, want a non-voter", m)
		}
	}

	// n4 leaves through its own HTTP port.
	code, body = httpBody(t, "POST", "http://"+n4.HTTPAddr()+"/v1/leave", "")
	var lr struct {
		NodeID string `json:"node_id"`
	}
	decodeOK(t, "leave n4", code, body, &lr)
	if lr.NodeID != "n4" {
		t.Errorf("leave: %s", body)
	}
	waitFor(t, "n4 left and out of the raft configuration", func() (bool, string) {
		ms, err := c.leader().Members()
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
	// Run would now stop the node (the test does not use Run).
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

	// n5 is added but never started; DELETE removes it.
	code, body = httpBody(t, "POST", base+"/v1/members", fmt.Sprintf(`{"id":"n5","peer_address":%q,"voter":false}`, addrs[1]))
	decodeOK(t, "join n5", code, body, &jr)
	applied("n5")
	code, body = httpDo(t, "DELETE", base+"/v1/members/n5")
	var rr struct{ Index uint64 }
	decodeOK(t, "remove n5", code, body, &rr)
	if rr.Index == 0 {
		t.Errorf("remove n5: %s", body)
	}
	waitFor(t, "n5 out of the raft configuration", func() (bool, string) {
		ms, err := c.leader().Members()
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
