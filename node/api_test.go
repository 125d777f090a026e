package node_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
	"github.com/heartbeat-sidecar/heartbeat/membership"
	"github.com/heartbeat-sidecar/heartbeat/node"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// httpBody sends a request with a body and returns the status and body.
func httpBody(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// testBadInput: every malformed request is refused with the right HTTP
// status / gRPC code and a message, and nothing of it is applied.
func testBadInput(t *testing.T, c *testcluster.Cluster) {
	n := c.Follower()
	base := "http://" + n.HTTPAddr()
	long := strings.Repeat("x", membership.MaxResourceIDLen+1)
	var tooMany []string
	for i := 0; i <= membership.MaxBatch; i++ {
		tooMany = append(tooMany, fmt.Sprintf(`{"id":"many-%d"}`, i))
	}
	revBefore := c.Leader().Membership().Revision()
	cases := []struct {
		name, method, path, body string
		code                     int
	}{
		{"oversized id", "PUT", "/v1/resources/" + long, "", 400},
		{"empty id", "PUT", "/v1/resources/", "", 400},
		{"control char in id", "PUT", "/v1/resources/a%01b", "", 400},
		{"weight zero", "PUT", "/v1/resources/bad-w", `{"weight":0}`, 400},
		{"weight too big", "PUT", "/v1/resources/bad-w", `{"weight":1001}`, 400},
		{"negative weight", "PUT", "/v1/resources/bad-w", `{"weight":-1}`, 400},
		{"unknown field", "PUT", "/v1/resources/bad-w", `{"wieght":3}`, 400},
		{"not JSON", "PUT", "/v1/resources/bad-w", `weight=3`, 400},
		{"id mismatch", "PUT", "/v1/resources/bad-w", `{"id":"other"}`, 400},
		{"empty batch", "POST", "/v1/resources", `[]`, 400},
		{"too many", "POST", "/v1/resources", "[" + strings.Join(tooMany, ",") + "]", 400},
		{"one bad in a batch", "POST", "/v1/resources", `[{"id":"good-1"},{"id":"good-2","weight":5000},{"id":"good-3"}]`, 400},
		{"duplicate in a batch", "POST", "/v1/resources", `[{"id":"good-1"},{"id":"good-1"}]`, 400},
		{"delete unknown", "DELETE", "/v1/resources/no-such", "", 404},
		{"get unknown", "GET", "/v1/resources/no-such", "", 404},
		{"assignments of unknown node", "GET", "/v1/assignments?node=nobody", "", 404},
		{"drain unknown node", "POST", "/v1/drain?node=nobody", "", 404},
		{"ttl too small", "POST", "/v1/app/heartbeat", `{"ttl_ms":5}`, 400},
		{"wrong method", "PATCH", "/v1/resources/x", "", 405},
		{"wrong method on list", "DELETE", "/v1/resources", "", 405},
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
	for _, id := range []string{"good-1", "good-3", "bad-w", "many-0"} {
		if code, _ := httpDo(t, "GET", base+"/v1/resources/"+id); code != 404 {
			t.Errorf("%s exists after a refused request: %d", id, code)
		}
	}

	client := heartbeatpb.NewCoordinatorClient(dialClient(t, n.ClientAddr()))
	specs := func(ids ...string) *heartbeatpb.RegisterResourcesRequest {
		r := &heartbeatpb.RegisterResourcesRequest{}
		for _, id := range ids {
			r.Resources = append(r.Resources, &heartbeatpb.ResourceSpec{Id: id})
		}
		return r
	}
	big := specs()
	for i := 0; i <= membership.MaxBatch; i++ {
		big.Resources = append(big.Resources, &heartbeatpb.ResourceSpec{Id: fmt.Sprint("g", i)})
	}
	grpcCases := []struct {
		name string
		call func() error
		code codes.Code
	}{
		{"empty id", func() error { _, err := client.RegisterResources(ctxT(t), specs("")); return err }, codes.InvalidArgument},
		{"oversized id", func() error { _, err := client.RegisterResources(ctxT(t), specs(long)); return err }, codes.InvalidArgument},
		{"no resources", func() error { _, err := client.RegisterResources(ctxT(t), specs()); return err }, codes.InvalidArgument},
		{"too many", func() error { _, err := client.RegisterResources(ctxT(t), big); return err }, codes.InvalidArgument},
		{"bad weight", func() error {
			_, err := client.RegisterResources(ctxT(t), &heartbeatpb.RegisterResourcesRequest{Resources: []*heartbeatpb.ResourceSpec{{Id: "ok"}, {Id: "w", Weight: 1001}}})
			return err
		}, codes.InvalidArgument},
		{"delete unknown", func() error {
			_, err := client.DeleteResources(ctxT(t), &heartbeatpb.DeleteResourcesRequest{Ids: []string{"r-000", "no-such"}})
			return err
		}, codes.NotFound},
		{"assignments of unknown node", func() error {
			_, err := client.ListAssignments(ctxT(t), &heartbeatpb.ListAssignmentsRequest{NodeId: "nobody"})
			return err
		}, codes.NotFound},
		{"drain unknown node", func() error {
			_, err := client.SetDrain(ctxT(t), &heartbeatpb.SetDrainRequest{NodeId: "nobody", Draining: true})
			return err
		}, codes.NotFound},
		{"ttl zero", func() error { _, err := client.AppHeartbeat(ctxT(t), &heartbeatpb.AppHeartbeatRequest{}); return err }, codes.InvalidArgument},
		{"forward a leader decision", func() error {
			_, err := client.ForwardCommand(ctxT(t), &heartbeatpb.ForwardCommandRequest{Command: membership.MustEncode(membership.MarkDeadCmd("n1"))})
			return err
		}, codes.PermissionDenied},
		{"forward garbage", func() error {
			_, err := client.ForwardCommand(ctxT(t), &heartbeatpb.ForwardCommandRequest{Command: []byte{0xff, 0x01}})
			return err
		}, codes.InvalidArgument},
	}
	for _, tc := range grpcCases {
		err := tc.call()
		if s, _ := status.FromError(err); s.Code() != tc.code || s.Message() == "" {
			t.Errorf("gRPC %s: %v, want %v", tc.name, err, tc.code)
		}
	}
	// "delete unknown" named an existing resource too: it must still exist.
	if code, _ := httpDo(t, "GET", base+"/v1/resources/r-000"); code != 200 {
		t.Errorf("r-000 was deleted by a refused batch: %d", code)
	}
	// Nothing was committed by any refused request.
	leader := c.Leader()
	if v := leader.Membership().View(); len(v.Resources) != 120 {
		t.Errorf("%d resources after refused requests, want 120 (revision %d -> %d)", len(v.Resources), revBefore, v.Revision)
	}
}

// testMembersAPI: /v1/members lists membership states; a single PUT and
// DELETE through a follower; assignments per node; drain and undrain.
func testMembersAPI(t *testing.T, c *testcluster.Cluster) {
	n := c.Follower()
	base := "http://" + n.HTTPAddr()
	code, body := httpDo(t, "GET", base+"/v1/members")
	var ms []node.Member
	if err := json.Unmarshal([]byte(body), &ms); err != nil || code != 200 || len(ms) != 5 {
		t.Fatalf("/v1/members: %d %s (%v)", code, body, err)
	}
	for _, m := range ms {
		if m.State != "alive" || !m.AppHealthy || m.Draining || m.Addresses.Peer == "" || m.Addresses.Client == "" ||
			m.Addresses.HTTP == "" || m.Voter != (m.ID != "n5") {
			t.Errorf("member %+v", m)
		}
	}

	if code, body := httpBody(t, "PUT", base+"/v1/resources/solo%2Fone", `{"weight":7,"labels":{"zone":"a"}}`); code != 200 {
		t.Fatalf("PUT: %d %s", code, body)
	}
	code, body = httpDo(t, "GET", base+"/v1/resources/solo%2Fone")
	var r node.Resource
	if err := json.Unmarshal([]byte(body), &r); err != nil || code != 200 || r.ID != "solo/one" || r.Weight != 7 || r.Labels["zone"] != "a" {
		t.Fatalf("GET solo/one: %d %s", code, body)
	}
	testwait.Eventually(t, waitTimeout, "solo/one assigned", func() (bool, string) {
		code, body := httpDo(t, "GET", base+"/v1/resources")
		var rs []node.Resource
		if err := json.Unmarshal([]byte(body), &rs); err != nil || code != 200 {
			return false, body
		}
		for _, r := range rs {
			if r.ID == "solo/one" {
				return r.Owner != "" && r.Epoch > 0, fmt.Sprintf("%+v", r)
			}
		}
		return false, "not listed"
	})
	if code, body := httpDo(t, "DELETE", base+"/v1/resources/solo%2Fone"); code != 200 {
		t.Fatalf("DELETE: %d %s", code, body)
	}
	if code, _ := httpDo(t, "GET", base+"/v1/resources/solo%2Fone"); code != 404 {
		t.Fatalf("GET after DELETE: %d", code)
	}

	// Assignments of this node (default) and of another, by name.
	code, body = httpDo(t, "GET", base+"/v1/assignments")
	var mine []node.Resource
	if err := json.Unmarshal([]byte(body), &mine); err != nil || code != 200 {
		t.Fatalf("/v1/assignments: %d %s", code, body)
	}
	if len(mine) != node.NumOwned(n, n.ID()) {
		t.Errorf("/v1/assignments lists %d, node owns %d", len(mine), node.NumOwned(n, n.ID()))
	}
	for _, r := range mine {
		if r.Owner != n.ID() {
			t.Errorf("/v1/assignments of %s lists %+v", n.ID(), r)
		}
	}

	// Drain the non-voter through a follower, then undrain it.
	if code, body := httpDo(t, "POST", base+"/v1/drain?node=n5"); code != 200 {
		t.Fatalf("drain n5: %d %s", code, body)
	}
	testwait.Eventually(t, waitTimeout, "n5 drained", func() (bool, string) {
		c := node.NumOwned(c.Node("n5"), "n5")
		return c == 0, fmt.Sprint(c, " owned")
	})
	if code, body := httpDo(t, "POST", base+"/v1/undrain?node=n5"); code != 200 {
		t.Fatalf("undrain n5: %d %s", code, body)
	}
	testwait.Eventually(t, waitTimeout, "n5 owns again", func() (bool, string) {
		c := node.NumOwned(c.Node("n5"), "n5")
		return c > 0, fmt.Sprint(c, " owned")
	})

	// Membership metrics.
	_, metrics := httpDo(t, "GET", base+"/metrics")
	for _, want := range []string{`heartbeat_membership_members{state="alive"} 5`, "heartbeat_membership_resources 120",
		"heartbeat_membership_reconciler_moves_total", "heartbeat_membership_self_app_healthy 1"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
