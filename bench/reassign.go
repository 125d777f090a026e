package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/heartbeat-sidecar/heartbeat/membership"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// regBatch is the number of resources per POST /v1/resources: the per-call limit of
// Heartbeat's HTTP API.
const regBatch = membership.MaxBatch

// reassignPoll is the period of each survivor's poll after a kill.
const reassignPoll = 15 * time.Millisecond

// ReassignResult is the reassign phase at one resource count, on its own fresh cluster.
type ReassignResult struct {
	Resources       int         `json:"resources"`
	RegisterSeconds float64     `json:"register_seconds"`
	RegisterPerSec  float64     `json:"register_per_sec"` // resources/s, batches of 10,000
	AssignedSeconds float64     `json:"assigned_seconds"` // registration start -> all assigned on every node
	Reassign        Summary     `json:"reassign"`         // SIGKILL -> no survivor shows the victim owning anything
	Moves           []MoveCheck `json:"moves"`
	MovedExact      bool        `json:"moved_exact"` // every measured kill moved exactly the victim's resources
	MaxRSSMB        float64     `json:"max_rss_mb"`  // VmRSS, max over nodes and readings
	Errors          []string    `json:"errors,omitempty"`
}

// member is one entry of GET /v1/members (the fields the benchmark reads).
type member struct {
	ID    string
	State string // alive, suspect, dead, left
	Owned int
}

// getJSON does one GET and decodes the protojson answer into m.
func getJSON(ctx context.Context, c *http.Client, url string, m proto.Message) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, bytes.TrimSpace(body))
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	return lenient.Unmarshal(body, m)
}

// fetchMembers returns a node's member list.
func fetchMembers(ctx context.Context, c *http.Client, addr string) ([]member, error) {
	var resp heartbeatpb.ListMembersResponse
	if err := getJSON(ctx, c, nodeURL(addr, "/v1/members?stale"), &resp); err != nil {
		return nil, err
	}
	ms := make([]member, 0, len(resp.GetMembers()))
	for _, m := range resp.GetMembers() {
		ms = append(ms, member{ID: m.GetNodeId(), State: heartbeatpb.Short(m.GetState()), Owned: int(m.GetOwned())})
	}
	return ms, nil
}

// fetchOwners returns resource id -> owner as one node sees it.
func fetchOwners(ctx context.Context, c *http.Client, addr string) (map[string]string, error) {
	var resp heartbeatpb.ListResourcesResponse
	if err := getJSON(ctx, c, nodeURL(addr, "/v1/resources?stale"), &resp); err != nil {
		return nil, err
	}
	out := make(map[string]string, len(resp.GetResources()))
	for _, r := range resp.GetResources() {
		out[r.GetId()] = r.GetOwnerNodeId()
	}
	return out, nil
}

// register POSTs n resources "r0000000".. in batches of regBatch to addr.
func register(ctx context.Context, c *http.Client, addr string, n int) error {
	for lo := 0; lo < n; lo += regBatch {
		batch := &heartbeatpb.RegisterResourcesRequest{}
		for i := lo; i < min(lo+regBatch, n); i++ {
			batch.Resources = append(batch.Resources, &heartbeatpb.ResourceSpec{Id: fmt.Sprintf("r%07d", i)})
		}
		body, err := protojson.Marshal(batch)
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, nodeURL(addr, "/v1/resources"), bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			return fmt.Errorf("register batch at %d: %w", lo, err)
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("register batch at %d: %s: %s", lo, resp.Status, bytes.TrimSpace(msg))
		}
	}
	return nil
}

// pollUntil calls check every interval until it returns true, an error, or timeout passes.
func pollUntil(ctx context.Context, interval, timeout time.Duration, what string, check func() (bool, string)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	last := ""
	for {
		ok, why := check()
		if ok {
			return nil
		}
		last = why
		select {
		case <-ctx.Done():
			if ctx.Err() == context.DeadlineExceeded {
				return fmt.Errorf("%s not within %v: %s", what, timeout, last)
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// settleFor is how long every node's view must stay the same (all members alive, every
// resource owned, identical owned counts on every node) before a kill: rebalancing toward a
// restarted node moves at most a few hundred resources per 50 ms tick, and a restarted node
// replays old entries before it catches up.
const settleFor = 1500 * time.Millisecond

// ownedView reads every running node's GET /v1/members and returns the owned counts (member
// -> owned) if every node shows every member in want alive, n resources owned in total, and
// the same counts as the others; otherwise ok is false and why says what differs.
func ownedView(ctx context.Context, c *Cluster, want []string, n int) (owned map[string]int, ok bool, why string) {
	client := c.HTTPClient(2 * time.Second)
	defer client.CloseIdleConnections()
	var first map[string]int
	for _, p := range c.Procs {
		if p.Exited() {
			continue
		}
		ms, err := fetchMembers(ctx, client, p.Spec.HTTPBase())
		if err != nil {
			return nil, false, fmt.Sprintf("%s: %v", p.Spec.ID, err)
		}
		view, total := map[string]int{}, 0
		states := map[string]string{}
		for _, m := range ms {
			view[m.ID], states[m.ID] = m.Owned, m.State
			total += m.Owned
		}
		for _, id := range want {
			if states[id] != "alive" {
				return nil, false, fmt.Sprintf("%s sees %s %q", p.Spec.ID, id, states[id])
			}
		}
		if total != n {
			return nil, false, fmt.Sprintf("%s sees %d of %d assigned", p.Spec.ID, total, n)
		}
		if first == nil {
			first = view
		} else if !maps.Equal(first, view) {
			return nil, false, fmt.Sprintf("%s sees owned %v, another node %v", p.Spec.ID, view, first)
		}
	}
	return first, true, ""
}

// waitSettled waits until ownedView holds with unchanged counts for settleFor, and returns
// those counts.
func waitSettled(ctx context.Context, c *Cluster, want []string, n int, timeout time.Duration, what string) (map[string]int, error) {
	var cur map[string]int
	var since time.Time
	err := pollUntil(ctx, 100*time.Millisecond, timeout, what, func() (bool, string) {
		owned, ok, why := ownedView(ctx, c, want, n)
		switch {
		case !ok:
			cur = nil
			return false, why
		case cur == nil || !maps.Equal(cur, owned):
			cur, since = owned, time.Now()
			return false, fmt.Sprintf("owned counts changing: %v", owned)
		}
		return time.Since(since) >= settleFor, fmt.Sprintf("owned %v for %v", owned, time.Since(since))
	})
	return cur, err
}

// maxRSS reads VmRSS of every running node and returns the largest, in MiB.
func maxRSS(c *Cluster) float64 {
	var mb float64
	for _, p := range c.Procs {
		if p.Exited() {
			continue
		}
		if s, err := ReadProc(p.PID()); err == nil {
			mb = max(mb, round2(float64(s.RSSBytes)/(1<<20)))
		}
	}
	return mb
}

// Reassign runs the reassign phase for each resource count on its own fresh cluster of sys
// (a Heartbeat system): register n resources, then kills SIGKILLs of a follower that owns
// resources, each timed until every survivor shows the victim owning nothing, and checked
// against the owners before the kill. Only ctx's cancellation aborts it.
func (r *Runner) Reassign(ctx context.Context, sys System, counts []int, kills int) []ReassignResult {
	var out []ReassignResult
	for _, n := range counts {
		if n <= 0 || ctx.Err() != nil {
			continue
		}
		res := ReassignResult{Resources: n}
		if err := r.reassignOne(ctx, sys, n, kills, &res); err != nil {
			res.Errors = append(res.Errors, err.Error())
			r.progress(sys.Name, "reassign %d: %v", n, err)
		}
		out = append(out, res)
	}
	return out
}

// freshCluster starts a fresh cluster of sys under dir, waits until every
// member is alive under one stable leader, and returns it with that leader;
// the caller closes it (also on error, when it is not nil).
func (r *Runner) freshCluster(ctx context.Context, sys System, dir, what string) (*Cluster, string, error) {
	r.progress(sys.Name, "%s: starting a fresh %d-node cluster, logs under %s", what, r.cfg.Nodes, dir)
	c, err := StartCluster(sys, r.cfg.Nodes, r.cfg.BasePort, dir)
	if err != nil {
		return nil, "", err
	}
	if err := r.waitFirstLeader(ctx, c); err != nil {
		return c, "", err
	}
	ids := c.IDs()
	if _, err := waitSettled(ctx, c, ids, 0, r.cfg.StartTimeout, "all members alive"); err != nil {
		return c, "", err
	}
	leader, ok := StableLeader(ids, snapshot(ctx, c, r.cfg.PollTimeout))
	if !ok {
		return c, "", fmt.Errorf("no stable leader before registering")
	}
	return c, leader, nil
}

func (r *Runner) reassignOne(ctx context.Context, sys System, n, kills int, res *ReassignResult) error {
	dir := filepath.Join(r.cfg.WorkDir, fmt.Sprintf("%s-reassign-%d", sys.Name, n))
	c, leader, err := r.freshCluster(ctx, sys, dir, fmt.Sprintf("reassign %d", n))
	if c != nil {
		defer c.Close()
	}
	if err != nil {
		return err
	}
	ids := c.IDs()
	client := c.HTTPClient(60 * time.Second)
	defer client.CloseIdleConnections()
	start := time.Now()
	if err := register(ctx, client, c.Proc(leader).Spec.HTTPBase(), n); err != nil {
		return err
	}
	regDur := time.Since(start)
	res.RegisterSeconds = round2(regDur.Seconds())
	res.RegisterPerSec = float64(int(float64(n) / regDur.Seconds()))
	if err := pollUntil(ctx, 20*time.Millisecond, 2*time.Minute, "all resources assigned", func() (bool, string) {
		_, ok, why := ownedView(ctx, c, ids, n)
		return ok, why
	}); err != nil {
		return err
	}
	res.AssignedSeconds = round2(time.Since(start).Seconds())
	if _, err := waitSettled(ctx, c, ids, n, 2*time.Minute, "assignment settled"); err != nil {
		return err
	}
	res.MaxRSSMB = maxRSS(c)
	r.progress(sys.Name, "reassign %d: registered at %.0f resources/s, all assigned after %.2f s, RSS max %.1f MB",
		n, res.RegisterPerSec, res.AssignedSeconds, res.MaxRSSMB)

	var durs []time.Duration
	failed := 0
	res.MovedExact = true
	defer func() {
		res.Reassign = Summarize(durs, failed)
		res.MovedExact = res.MovedExact && len(res.Moves) > 0
	}()
	for k := 1; k <= kills; k++ {
		d, mc, err := r.killOne(ctx, c, n)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		res.MaxRSSMB = max(res.MaxRSSMB, maxRSS(c))
		line := ""
		if err != nil {
			failed++
			res.Errors = append(res.Errors, fmt.Sprintf("kill %d: %v", k, err))
			line = "FAILED: " + err.Error()
		} else {
			durs = append(durs, d)
			res.Moves = append(res.Moves, mc)
			res.MovedExact = res.MovedExact && mc.Exact
			line = fmt.Sprintf("%.1f ms, %d of the victim's %d resources moved, exact %v %v",
				ms(d), mc.Moved, mc.VictimHad, mc.Exact, mc.Examples)
		}
		r.progress(sys.Name, "reassign %d kill %d/%d: %s", n, k, kills, line)
		// Bring every node back and wait for the full cluster before the next kill.
		for _, p := range c.Procs {
			if p.Exited() {
				if err := p.Start(); err != nil {
					return err
				}
			}
		}
		if _, err := waitSettled(ctx, c, ids, n, 2*time.Minute, "cluster whole and rebalanced again"); err != nil {
			return err
		}
	}
	return nil
}

// killOne SIGKILLs a follower that owns resources and measures the reassignment.
func (r *Runner) killOne(ctx context.Context, c *Cluster, n int) (time.Duration, MoveCheck, error) {
	ids := c.IDs()
	owned, err := waitSettled(ctx, c, ids, n, r.cfg.StartTimeout, "settled before the kill")
	if err != nil {
		return 0, MoveCheck{}, err
	}
	leader, ok := StableLeader(ids, snapshot(ctx, c, r.cfg.PollTimeout))
	if !ok {
		return 0, MoveCheck{}, fmt.Errorf("no stable leader before the kill")
	}
	victim := ""
	for _, id := range ids { // the follower owning the most
		if id != leader && owned[id] > 0 && (victim == "" || owned[id] > owned[victim]) {
			victim = id
		}
	}
	if victim == "" {
		return 0, MoveCheck{}, fmt.Errorf("no follower owns resources: %v", owned)
	}
	var survivors []*Proc
	var survivorIDs []string
	for _, p := range c.Procs {
		if p.Spec.ID != victim {
			survivors = append(survivors, p)
			survivorIDs = append(survivorIDs, p.Spec.ID)
		}
	}
	big := c.HTTPClient(30 * time.Second)
	defer big.CloseIdleConnections()
	before, err := fetchOwners(ctx, big, c.Proc(leader).Spec.HTTPBase())
	if err != nil {
		return 0, MoveCheck{}, fmt.Errorf("owners before: %w", err)
	}

	// One poller per survivor, each on its own keep-alive connection, reading the victim's
	// owned count from /v1/members (a few hundred bytes; the victim's assignment list would
	// be n/5 entries per poll).
	pctx, stop := context.WithCancel(ctx)
	var mu sync.Mutex
	var samples []OwnedSample
	changed := make(chan struct{}, 1)
	var wg sync.WaitGroup
	for _, p := range survivors {
		wg.Go(func() {
			cl := c.HTTPClient(r.cfg.PollTimeout)
			defer cl.CloseIdleConnections()
			tick := time.NewTicker(reassignPoll)
			defer tick.Stop()
			for {
				s := OwnedSample{Node: p.Spec.ID, Sent: time.Now()}
				ms, err := fetchMembers(pctx, cl, p.Spec.HTTPBase())
				if pctx.Err() != nil {
					return
				}
				s.At, s.OK, s.VictimOwned = time.Now(), err == nil, -1
				for _, m := range ms {
					if m.ID == victim {
						s.VictimOwned = m.Owned
					}
				}
				mu.Lock()
				samples = append(samples, s)
				mu.Unlock()
				select {
				case changed <- struct{}{}:
				default:
				}
				select {
				case <-pctx.Done():
					return
				case <-tick.C:
				}
			}
		})
	}
	defer func() { stop(); wg.Wait() }()
	if err := sleepCtx(ctx, 3*reassignPoll); err != nil {
		return 0, MoveCheck{}, err
	}
	kill := time.Now()
	if err := c.Proc(victim).Signal(syscall.SIGKILL); err != nil {
		return 0, MoveCheck{}, err
	}
	deadline := time.After(r.cfg.FailoverTimeout)
	var d time.Duration
	for {
		mu.Lock()
		cur := append([]OwnedSample(nil), samples...)
		mu.Unlock()
		if _, got, err := ReassignMoment(kill, survivorIDs, cur); err == nil {
			d = got
			break
		}
		select {
		case <-ctx.Done():
			return 0, MoveCheck{}, ctx.Err()
		case <-deadline:
			return 0, MoveCheck{}, fmt.Errorf("%w within %v (victim %s)", ErrNotReassigned, r.cfg.FailoverTimeout, victim)
		case <-changed:
		}
	}
	stop()
	wg.Wait()
	_ = c.Proc(victim).Kill(10 * time.Second)

	// Cross-check the timed moment on the assignment lists, then compare all owners.
	for _, p := range survivors {
		var rs heartbeatpb.ListAssignmentsResponse
		if err := getJSON(ctx, big, p.Spec.HTTPBase()+"/v1/assignments?node_id="+victim, &rs); err != nil {
			return d, MoveCheck{}, fmt.Errorf("assignments of %s on %s: %w", victim, p.Spec.ID, err)
		}
		if n := len(rs.GetResources()); n != 0 {
			return d, MoveCheck{}, fmt.Errorf("%s still lists %d resources on %s after its owned count was 0", p.Spec.ID, n, victim)
		}
	}
	after, err := fetchOwners(ctx, big, survivors[0].Spec.HTTPBase())
	if err != nil {
		return d, MoveCheck{}, fmt.Errorf("owners after: %w", err)
	}
	return d, CheckMoves(victim, before, after), nil
}
