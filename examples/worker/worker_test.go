package main

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/heartbeat-sidecar/heartbeat/client"
	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
	"github.com/heartbeat-sidecar/heartbeat/node"
)

// numResources registered by the cluster test.
const numResources = 30

// waitTimeout bounds every wait of these tests (testwait.Eventually,
// ContextWithin) and of their cluster. It is generous, above
// testcluster.DefaultWait: the machine is shared and -race is slow.
const waitTimeout = 45 * time.Second

// TestWorkersOnCluster runs one worker beside each node of a 3-node cluster
// and follows them through a follower cut off from its peers, a follower
// crash and restart, and a leader crash:
//   - each worker works on exactly its node's assignments (same ids, same
//     epochs), and the workers' sets partition the registered resources;
//   - a cut-off follower's worker stops all its work once the node's
//     ownership lease runs out, and a crashed node's worker at once (its
//     KeepAlive stream breaks), while the other workers take over every
//     resource; healed or restarted, the node's worker works on its share
//     again;
//   - no two workers ever work on one resource at once (the old work ended
//     before the new began), and each resource's fenced ledger has epochs
//     that never go down, each written by one node;
//   - the leader-only job runs in exactly one worker, the leader's, with the
//     leader's fencing token; after the leader crashes it runs in the new
//     leader's worker with a larger token;
//   - the fenced ledger's tokens never go down and each has one writer.
func TestWorkersOnCluster(t *testing.T) {
	c := startCluster(t, 3)
	ledger := filepath.Join(t.TempDir(), "ledger")
	h := &history{}
	workers := map[string]*runningWorker{}
	for _, n := range c.Live() {
		workers[n.ID()] = startWorker(t, c, n.ID(), ledger, h)
	}
	everyone := func() []string { return nodeIDs(c.Live()) }

	all := register(t, c, numResources)
	waitLogged(t, "every worker owns its node's assignments, together all resources", func() (bool, string) {
		return checkPartition(c, workers, all, everyone())
	})
	for id, w := range workers {
		if len(w.Owned()) == 0 {
			t.Errorf("worker %s owns nothing; want a share of %d resources over 3 nodes", id, numResources)
		}
	}
	leader := c.Leader().ID()
	firstToken := waitLeaderJob(t, c, workers, leader, 0)
	followers := nodeIDs(c.Followers())

	// Cut a follower off from its peers: its sidecar still answers its
	// worker, but its ownership lease is no longer renewed, so the worker
	// stops everything; the others take over once the node is declared dead.
	cut := followers[0]
	c.Isolate(cut)
	others := slices.DeleteFunc(everyone(), func(id string) bool { return id == cut })
	waitLogged(t, "the cut-off node's worker stops; the others own everything", func() (bool, string) {
		if got := workers[cut].Owned(); len(got) != 0 {
			return false, fmt.Sprintf("%s's worker still works on %v", cut, got)
		}
		return checkPartition(c, workers, all, others)
	})
	if err := checkSpans(h.snapshot()); err != nil {
		t.Fatalf("after cutting %s off: %v", cut, err)
	}
	c.Heal(cut)
	waitLogged(t, "the healed node's worker owns its share again", func() (bool, string) {
		if len(workers[cut].Owned()) == 0 {
			return false, cut + "'s worker owns nothing yet"
		}
		return checkPartition(c, workers, all, everyone())
	})

	// Crash a follower: its worker stops at once, the others take over.
	crashed := followers[1]
	c.Kill(crashed)
	waitLogged(t, "the crashed node's worker stops; the others own everything", func() (bool, string) {
		if got := workers[crashed].Owned(); len(got) != 0 {
			return false, fmt.Sprintf("%s's worker still works on %v", crashed, got)
		}
		return checkPartition(c, workers, all, everyone())
	})
	// Restart it on the same addresses: its worker's keep-alive stream
	// reconnects and it works on the node's new share.
	c.Restart(crashed)
	c.WaitMembers()
	waitLogged(t, "the restarted node's worker owns its share again", func() (bool, string) {
		if len(workers[crashed].Owned()) == 0 {
			return false, crashed + "'s worker owns nothing yet"
		}
		return checkPartition(c, workers, all, everyone())
	})

	// Crash the leader: the job moves to the new leader's worker.
	c.Kill(leader)
	newLeader := c.Leader().ID()
	secondToken := waitLeaderJob(t, c, workers, newLeader, firstToken)
	t.Logf("leader job: %s token %d, then %s token %d", leader, firstToken, newLeader, secondToken)
	waitLogged(t, "the crashed leader's worker stops; the others own everything", func() (bool, string) {
		if got := workers[leader].Owned(); len(got) != 0 {
			return false, fmt.Sprintf("%s's worker still works on %v", leader, got)
		}
		return checkPartition(c, workers, all, everyone())
	})

	for _, w := range workers {
		if err := w.stop(); err != nil {
			t.Errorf("worker %s: Run returned %v", w.ID(), err)
		}
	}
	spans := h.snapshot()
	if err := checkSpans(spans); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d spans of work checked: no two workers on one resource at once", len(spans))
	checkShardLedgers(t, ledger+".shards", all)
	records, err := ReadLedger(ledger)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckLedger(records); err != nil {
		t.Fatal(err)
	}
	writers := map[uint64]string{}
	for _, r := range records {
		writers[r.Token] = r.Node
	}
	if writers[firstToken] != leader || writers[secondToken] != newLeader {
		t.Fatalf("ledger writers by token = %v; want %d by %s and %d by %s", writers, firstToken, leader, secondToken, newLeader)
	}
}

// waitLogged is testwait.Eventually bounded by waitTimeout that also
// logs cond's explanation whenever it changes (at most every 2s), so that a
// failure shows how the wait went.
func waitLogged(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	var last string
	var logged time.Time
	testwait.Eventually(t, waitTimeout, what, func() (bool, string) {
		ok, why := cond()
		if !ok && why != last && time.Since(logged) > 2*time.Second {
			t.Logf("waiting for %s: %s", what, why)
			last, logged = why, time.Now()
		}
		return ok, why
	})
}

// nodeIDs returns the ids of nodes.
func nodeIDs(nodes []*node.Node) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.ID()
	}
	return out
}

// checkShardLedgers checks the ledger of every resource in all: it exists
// (the resource was worked on), its epochs never go down and each epoch
// has one writer.
func checkShardLedgers(t *testing.T, dir string, all []string) {
	t.Helper()
	for _, id := range all {
		records, err := ReadLedger(filepath.Join(dir, "r-"+url.PathEscape(id)))
		if err != nil {
			t.Errorf("%s: %v", id, err)
			continue
		}
		if len(records) == 0 {
			t.Errorf("%s: no record in its ledger", id)
		}
		if err := CheckLedger(records); err != nil {
			t.Errorf("%s: %v", id, err)
		}
	}
}

// register registers n resources shard-0..shard-(n-1) through a client over
// every node and returns their ids.
func register(t *testing.T, c *testcluster.Cluster, n int) []string {
	t.Helper()
	cfg := client.DefaultConfig()
	cfg.Endpoints = c.Endpoints("n1")
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "register", Level: hclog.Warn, Output: c.Log()})
	cl, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var specs []client.ResourceSpec
	var ids []string
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("shard-%d", i)
		specs = append(specs, client.ResourceSpec{ID: id})
		ids = append(ids, id)
	}
	if _, err := cl.Register(testcluster.ContextWithin(t, waitTimeout), specs...); err != nil {
		t.Fatal(err)
	}
	return ids
}

// checkPartition reports whether the worker of every node in ids owns
// exactly its node's assignments (as that node's state says), and their
// sets are disjoint and cover all.
func checkPartition(c *testcluster.Cluster, workers map[string]*runningWorker, all, ids []string) (bool, string) {
	owner := map[string]string{}
	for _, id := range ids {
		got, want := workers[id].Owned(), assignments(c, id)
		if !maps.Equal(got, want) {
			lease := time.Until(c.Node(id).Election().OwnershipLease()).Round(time.Millisecond)
			return false, fmt.Sprintf("worker %s owns %v; its node assigns it %v (ownership lease: %v left)", id, got, want, lease)
		}
		for rid := range got {
			if o, ok := owner[rid]; ok {
				return false, fmt.Sprintf("%s owned by the workers of %s and %s", rid, o, id)
			}
			owner[rid] = id
		}
	}
	var missing []string
	for _, rid := range all {
		if owner[rid] == "" {
			missing = append(missing, rid)
		}
	}
	if len(missing) > 0 || len(owner) != len(all) {
		sort.Strings(missing)
		return false, fmt.Sprintf("no worker of %v owns %v (%d owned of %d)", ids, missing, len(owner), len(all))
	}
	return true, ""
}

// waitLeaderJob waits until the leader job runs in want's worker alone,
// with want's fencing token (above `above`), and has written two records
// with it to the ledger; it returns the token.
func waitLeaderJob(t *testing.T, c *testcluster.Cluster, workers map[string]*runningWorker, want string, above uint64) uint64 {
	t.Helper()
	var token uint64
	waitLogged(t, "the leader job running in "+want+"'s worker only", func() (bool, string) {
		token = 0
		for id, w := range workers {
			tok := w.LeaderToken()
			switch {
			case tok != 0 && id != want:
				return false, fmt.Sprintf("leader job also runs in %s's worker (token %d)", id, tok)
			case id == want:
				token = tok
			}
		}
		st := c.Node(want).Status()
		switch {
		case token == 0:
			return false, "no leader job in " + want + "'s worker"
		case token != st.FencingToken:
			return false, fmt.Sprintf("job token %d, node's fencing token %d", token, st.FencingToken)
		case token <= above:
			return false, fmt.Sprintf("token %d not above %d", token, above)
		}
		return true, ""
	})
	waitLogged(t, "ledger records with token "+fmt.Sprint(token), func() (bool, string) {
		records, err := ReadLedger(workers[want].ledger.Path())
		if err != nil {
			return false, err.Error()
		}
		n := 0
		for _, r := range records {
			if r.Token == token && r.Node == want {
				n++
			}
		}
		return n >= 2, fmt.Sprintf("%d records with token %d by %s", n, token, want)
	})
	return token
}

// TestWorkerWithoutSidecar: a worker whose sidecar never answers does not
// start working, and Run returns once its context ends, with every
// goroutine stopped (goleak checks).
func TestWorkerWithoutSidecar(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Endpoints = testcluster.FreeAddrs(t, 1)
	cfg.LedgerPath = filepath.Join(t.TempDir(), "ledger")
	cfg.TTL = 300 * time.Millisecond
	w, err := NewWorker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(testcluster.ContextWithin(t, waitTimeout), time.Second)
	defer cancel()
	err = w.Run(ctx)
	if err == nil {
		t.Fatal("Run returned nil without a sidecar; want an error saying it never answered")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Run took %v to return after its context ended", d)
	}
	if len(w.Owned()) != 0 || w.LeaderToken() != 0 {
		t.Fatalf("worker without sidecar owns %v, token %d", w.Owned(), w.LeaderToken())
	}
}

// TestCheckSpans feeds the overlap checker planted violations.
func TestCheckSpans(t *testing.T) {
	at := func(ms int) time.Time {
		return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Add(time.Duration(ms) * time.Millisecond)
	}
	sp := func(worker, res string, epoch uint64, start, end int) span {
		s := span{worker: worker, resource: res, epoch: epoch, start: at(start)}
		if end >= 0 {
			s.end = at(end)
		}
		return s
	}
	tests := []struct {
		name    string
		spans   []span
		wantErr string
	}{
		{"empty", nil, ""},
		{"one after the other", []span{sp("n2", "a", 9, 300, -1), sp("n1", "a", 7, 0, 100), sp("n1", "b", 8, 50, 400), sp("n3", "a", 8, 150, 250)}, ""},
		{"overlap", []span{sp("n1", "a", 7, 0, 200), sp("n2", "a", 9, 150, 300)}, "a: n2 on a@9"},
		{"touching", []span{sp("n1", "a", 7, 0, 200), sp("n2", "a", 9, 200, 300)}, "overlaps"},
		{"after one that still runs", []span{sp("n1", "a", 7, 0, -1), sp("n2", "a", 9, 500, 600)}, "overlaps n1 on a@7"},
		{"inside a long one", []span{sp("n1", "a", 7, 0, 1000), sp("n2", "a", 8, 100, 200), sp("n3", "a", 9, 300, 400)}, "n2 on a@8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkSpans(tt.spans)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("checkSpans = %v; want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("checkSpans = %v; want an error containing %q", err, tt.wantErr)
			}
		})
	}
}
