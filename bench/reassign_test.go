package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// fakeHBNode serves the parts of Heartbeat's HTTP API the reassign and busy phases read.
type fakeHBNode struct {
	mu      sync.Mutex
	members []member
	owners  map[string]string
	batches []int // sizes of the POST /v1/resources bodies
}

func (f *fakeHBNode) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.URL.Path == "/v1/members":
		resp := &heartbeatpb.ListMembersResponse{}
		for _, m := range f.members {
			resp.Members = append(resp.Members, &heartbeatpb.Member{NodeId: m.ID, State: heartbeatpb.MemberStateOf(m.State), Owned: uint32(m.Owned)})
		}
		writeProto(w, resp)
	case r.URL.Path == "/v1/resources" && r.Method == http.MethodPost:
		body, _ := io.ReadAll(r.Body)
		var req heartbeatpb.RegisterResourcesRequest
		if err := protojson.Unmarshal(body, &req); err != nil || len(req.GetResources()) > 10000 {
			http.Error(w, fmt.Sprintf("bad batch: %v, %d items", err, len(req.GetResources())), http.StatusBadRequest)
			return
		}
		for _, it := range req.GetResources() {
			if it.GetId() == "" || it.GetWeight() != 0 || len(it.GetLabels()) != 0 {
				http.Error(w, fmt.Sprintf("bad item %v", it), http.StatusBadRequest)
				return
			}
			f.owners[it.GetId()] = ""
		}
		f.batches = append(f.batches, len(req.GetResources()))
		fmt.Fprint(w, `{"revision":"1","changed":1}`)
	case r.URL.Path == "/v1/resources":
		resp := &heartbeatpb.ListResourcesResponse{}
		for id, o := range f.owners {
			resp.Resources = append(resp.Resources, &heartbeatpb.Resource{Id: id, OwnerNodeId: o})
		}
		writeProto(w, resp)
	default:
		http.NotFound(w, r)
	}
}

func TestRegisterAndOwners(t *testing.T) {
	f := &fakeHBNode{owners: map[string]string{}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	ctx := context.Background()
	c := &http.Client{Timeout: 10 * time.Second}
	defer c.CloseIdleConnections()
	if err := register(ctx, c, addr, 25001); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(f.batches) != "[10000 10000 5001]" {
		t.Errorf("batches %v, want 10000-resource calls (the API's limit) and the rest", f.batches)
	}
	owners, err := fetchOwners(ctx, c, addr)
	if err != nil || len(owners) != 25001 {
		t.Fatalf("owners: %d %v", len(owners), err)
	}
	if _, ok := owners["r0025000"]; !ok {
		t.Error("last resource missing")
	}
	// A rejected call is an error, not a silent short registration.
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, `{"error":"no"}`, http.StatusServiceUnavailable)
	}))
	defer bad.Close()
	if err := register(ctx, c, strings.TrimPrefix(bad.URL, "http://"), 5); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("rejected batch: %v", err)
	}
}

func TestMemberStatesFeedFalseDeaths(t *testing.T) {
	alive := []member{{ID: "n1", State: "alive"}, {ID: "n2", State: "alive"}}
	f1 := &fakeHBNode{members: alive}
	f2 := &fakeHBNode{members: alive}
	s1, s2 := httptest.NewServer(f1), httptest.NewServer(f2)
	defer s1.Close()
	defer s2.Close()
	c := &Cluster{Procs: []*Proc{
		{Spec: NodeSpec{ID: "n1", HTTPAddr: strings.TrimPrefix(s1.URL, "http://")}},
		{Spec: NodeSpec{ID: "n2", HTTPAddr: strings.TrimPrefix(s2.URL, "http://")}},
		{Spec: NodeSpec{ID: "n3", HTTPAddr: "127.0.0.1:1"}}, // down: no answer, no count
	}}
	var d FalseDeathCounter
	observe := func() {
		for id, st := range memberStates(context.Background(), c, time.Second) {
			d.Observe(id, st)
		}
	}
	observe()
	if d.Count != 0 {
		t.Fatalf("healthy cluster: %d false deaths %v", d.Count, d.Events)
	}
	f2.mu.Lock()
	f2.members = []member{{ID: "n1", State: "suspect"}, {ID: "n2", State: "alive"}} // planted
	f2.mu.Unlock()
	observe()
	observe()
	if d.Count != 1 || d.Events[0] != "n2 sees n1 suspect" {
		t.Errorf("one suspicion: %d %v", d.Count, d.Events)
	}
}

// writeProto answers with m in protojson, as the gateway does.
func writeProto(w http.ResponseWriter, m proto.Message) {
	b, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}
