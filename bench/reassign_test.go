package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
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
		_ = json.NewEncoder(w).Encode(f.members)
	case r.URL.Path == "/v1/resources" && r.Method == http.MethodPost:
		var items []map[string]any
		if err := json.NewDecoder(r.Body).Decode(&items); err != nil || len(items) > 10000 {
			http.Error(w, fmt.Sprintf("bad batch: %v, %d items", err, len(items)), http.StatusBadRequest)
			return
		}
		for _, it := range items {
			if len(it) != 1 || it["id"] == "" {
				http.Error(w, fmt.Sprintf("bad item %v", it), http.StatusBadRequest)
				return
			}
			f.owners[it["id"].(string)] = ""
		}
		f.batches = append(f.batches, len(items))
		fmt.Fprint(w, `{"revision":1,"changed":1}`)
	case r.URL.Path == "/v1/resources":
		var rs []resourceOwner
		for id, o := range f.owners {
			rs = append(rs, resourceOwner{ID: id, Owner: o})
		}
		_ = json.NewEncoder(w).Encode(rs)
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
