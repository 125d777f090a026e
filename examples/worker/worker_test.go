package main

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/heartbeat-sidecar/heartbeat/client"
	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
)

// numResources registered by the cluster test.
const numResources = 30

// waitTimeout bounds every wait of these tests (testcluster.WaitWithin,
// ContextWithin) and of their cluster. It is generous, above
// testcluster.DefaultWait: the machine is shared and -race is slow.
const waitTimeout = 45 * time.Second

// TestWorkersOnCluster runs one worker beside each node of a 3-node cluster
// and follows them through a follower crash, its restart and a leader crash:
//   - each worker works on exactly its node's assignments (same ids, same
//     epochs), and the workers' sets partition the registered resources;
//   - a crashed node's worker drops its whole set once its sidecar has been
//     silent for the TTL (also a worker that has no other endpoint to hear
//     of the reassignment from), while the other workers take over every
//     resource; restarted, the node's workers list again and work on its
//     share;
//   - the leader-only job runs in exactly one worker, the leader's, with the
//     leader's fencing token; after the leader crashes it runs in the new
//     leader's worker with a larger token;
//   - the fenced ledger's tokens never go down and each has one writer.
func TestWorkersOnCluster(t *testing.T) {
	c := startCluster(t, 3)
	ledger := filepath.Join(t.TempDir(), "ledger")
	workers := map[string]*runningWorker{}
	for _, n := range c.Live() {
		workers[n.ID()] = startWorker(t, c, n.ID(), ledger, false)
	}

	all := register(t, c, numResources)
	testcluster.WaitWithin(t, waitTimeout, "every worker owns its node's assignments, together all resources", func() (bool, string) {
		return checkPartition(c, workers, all)
	})
	for id, w := range workers {
		if len(w.Owned()) == 0 {
			t.Errorf("worker %s owns nothing; want a share of %d resources over 3 nodes", id, numResources)
		}
	}
	leader := c.Leader().ID()
	firstToken := waitLeaderJob(t, c, workers, leader, 0)

	// A second worker beside a follower, with no other endpoint: once its
	// node is gone it hears of no reassignment, so only the lost sidecar
	// (no heartbeat answered for the TTL) can make it drop its set.
	follower := c.Followers()[0].ID()
	alone := startWorker(t, c, follower, ledger, true)
	testcluster.WaitWithin(t, waitTimeout, "the second worker owns its node's assignments", func() (bool, string) {
		got, want := alone.Owned(), assignments(c, follower)
		return maps.Equal(got, want), fmt.Sprintf("owns %v; node assigns %v", got, want)
	})

	// Crash the follower: its workers drop everything, the others take over.
	c.Kill(follower)
	testcluster.WaitWithin(t, waitTimeout, "the crashed node's workers drop their sets; the others own everything", func() (bool, string) {
		for _, w := range []*runningWorker{workers[follower], alone} {
			if !w.SidecarLost() {
				return false, follower + "'s worker still thinks its sidecar is reachable"
			}
			if got := w.Owned(); len(got) != 0 {
				return false, fmt.Sprintf("%s's worker still owns %v", follower, got)
			}
		}
		return checkPartition(c, workers, all)
	})

	// Restart it on the same addresses: its worker lists again.
	c.Restart(follower)
	c.WaitMembers()
	testcluster.WaitWithin(t, waitTimeout, "the restarted node's worker owns its share again", func() (bool, string) {
		if workers[follower].SidecarLost() {
			return false, follower + "'s worker has not heard from its sidecar yet"
		}
		if len(workers[follower].Owned()) == 0 {
			return false, follower + "'s worker owns nothing yet"
		}
		if got, want := alone.Owned(), assignments(c, follower); !maps.Equal(got, want) {
			return false, fmt.Sprintf("second worker owns %v; node assigns %v", got, want)
		}
		return checkPartition(c, workers, all)
	})

	// Crash the leader: the job moves to the new leader's worker.
	c.Kill(leader)
	newLeader := c.Leader().ID()
	secondToken := waitLeaderJob(t, c, workers, newLeader, firstToken)
	t.Logf("leader job: %s token %d, then %s token %d", leader, firstToken, newLeader, secondToken)
	testcluster.WaitWithin(t, waitTimeout, "the crashed leader's worker drops its set; the others own everything", func() (bool, string) {
		if got := workers[leader].Owned(); len(got) != 0 {
			return false, fmt.Sprintf("%s's worker still owns %v", leader, got)
		}
		return checkPartition(c, workers, all)
	})

	for _, w := range append(slices.Collect(maps.Values(workers)), alone) {
		if err := w.stop(); err != nil {
			t.Errorf("worker %s: Run returned %v", w.ID(), err)
		}
	}
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

// checkPartition reports whether every live node's worker owns exactly its
// node's assignments (as that node's state says), and the live workers'
// sets are disjoint and cover all.
func checkPartition(c *testcluster.Cluster, workers map[string]*runningWorker, all []string) (bool, string) {
	owner := map[string]string{}
	for _, n := range c.Live() {
		id := n.ID()
		got, want := workers[id].Owned(), assignments(c, id)
		if !maps.Equal(got, want) {
			return false, fmt.Sprintf("worker %s owns %v; its node assigns it %v", id, got, want)
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
		return false, fmt.Sprintf("no live worker owns %v (%d owned of %d)", missing, len(owner), len(all))
	}
	return true, ""
}

// waitLeaderJob waits until the leader job runs in want's worker alone,
// with want's fencing token (above `above`), and has written two records
// with it to the ledger; it returns the token.
func waitLeaderJob(t *testing.T, c *testcluster.Cluster, workers map[string]*runningWorker, want string, above uint64) uint64 {
	t.Helper()
	var token uint64
	testcluster.WaitWithin(t, waitTimeout, "the leader job running in "+want+"'s worker only", func() (bool, string) {
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
	testcluster.WaitWithin(t, waitTimeout, "ledger records with token "+fmt.Sprint(token), func() (bool, string) {
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
