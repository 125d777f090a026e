package election_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
)

func TestLeaderElected(t *testing.T) {
	for _, n := range []int{3, 5} {
		t.Run(fmt.Sprintf("%d nodes", n), func(t *testing.T) {
			c := testcluster.StartElections(t, n, testcluster.ElectionOptions{FastFailover: true})
			li := c.WaitLeader(15 * time.Second)
			l := c.Node(li).Node.Leadership()
			if l.State != "leader" || l.LeaderID != c.Node(li).ID || l.LeaderAddr != string(c.Node(li).Addr) {
				t.Fatalf("leader's own view is wrong: %+v", l)
			}
			if l.FencingToken != l.Term || l.FencingToken == 0 {
				t.Fatalf("fencing token %d, want the leader's term %d", l.FencingToken, l.Term)
			}
			if l.IsLeader && !l.LeaseUntil.After(time.Now().Add(-time.Second)) {
				t.Fatalf("IsLeader with a lease long past: %v", l.LeaseUntil)
			}
			// waitLeader saw exactly one; from then on no two nodes may ever
			// claim leadership at once, and the followers stay followers.
			for round := 0; round < 50; round++ {
				count := 0
				for _, i := range c.Alive() {
					v := c.Node(i).Node.Leadership()
					if v.IsLeader {
						count++
					}
					if i != li && (v.State != "follower" || v.IsLeader || v.LeaderID != c.Node(li).ID) {
						t.Fatalf("node %s: %+v, want a follower of %s", c.Node(i).ID, v, c.Node(li).ID)
					}
				}
				if count > 1 {
					t.Fatalf("%d nodes report IsLeader:%s", count, c.Describe())
				}
				time.Sleep(10 * time.Millisecond)
			}
			// On a loaded machine a heartbeat can be late enough for the
			// lease to lapse for a moment: poll.
			testwait.Eventually(t, 5*time.Second, "the leader's lease_valid gauge at 1", func() (bool, string) {
				return c.Metric(li, "heartbeat_lease_valid") == 1, "lease_valid gauge never 1 on the leader"
			})
			if got := c.Metric(li, "heartbeat_raft_state"); got != float64(raft.Leader) {
				t.Fatalf("raft_state gauge = %v on the leader", got)
			}
		})
	}
}

func TestLeaderKilledNewLeaderHigherTerm(t *testing.T) {
	c := testcluster.StartElections(t, 3, testcluster.ElectionOptions{FastFailover: false})
	li := c.WaitLeader(15 * time.Second)
	old := c.Node(li).Node.Leadership()
	c.Kill(li)
	ni := c.WaitLeader(15 * time.Second)
	now := c.Node(ni).Node.Leadership()
	if ni == li || now.Term <= old.Term || now.FencingToken <= old.FencingToken {
		t.Fatalf("new leader %+v after old %+v", now, old)
	}
	if got := triggers(c); got != 0 {
		t.Fatalf("fast failover fired %v times with FastFailover off", got)
	}
}

// TestFastFailover: with 3 s heartbeat and election timeouts a normal
// election after a crash takes more than 3 s; the held-stream path replaces a
// killed leader far sooner.
func TestFastFailover(t *testing.T) {
	// Under -race on a busy shared machine one node's stand (a TimeoutNow
	// through raft's main loop, vote requests, the voters' main loops) has
	// been seen to take a few hundred milliseconds, far above the default
	// 20ms rank step; a wide step keeps the followers' turns apart here (a
	// second stand processed after the first won deposes it). The benchmark
	// measures the defaults.
	slow := func(cfg *election.Config) {
		cfg.LeaseDuration = 2 * time.Second
		cfg.FailoverRankStep = 400 * time.Millisecond
		cfg.ConfirmTimeout = 500 * time.Millisecond
	}
	t.Run("on", func(t *testing.T) {
		t.Parallel()
		c := testcluster.StartElections(t, 5, testcluster.ElectionOptions{Heartbeat: 3 * time.Second, FastFailover: true, Tweak: slow})
		li := c.WaitLeader(30 * time.Second)
		old := c.Node(li).Node.Leadership()
		// Let followers open their held streams to the leader.
		waitHeld(t, c, li)
		c.Kill(li) // its sockets close at the end of kill
		start := time.Now()
		var took time.Duration
		testwait.Eventually(t, 1500*time.Millisecond, "every survivor to name a new leader", func() (bool, string) {
			for _, i := range c.Alive() {
				l := c.Node(i).Node.Leadership()
				if l.LeaderID == "" || l.LeaderID == old.LeaderID || l.FencingToken <= old.FencingToken {
					return false, c.Describe()
				}
			}
			took = time.Since(start)
			return true, c.Describe()
		})
		t.Logf("every survivor named a new leader %v after the kill", took)
		if got := triggers(c); got < 1 {
			t.Fatalf("fast-failover trigger count %v, want >= 1", got)
		}
	})
	t.Run("off", func(t *testing.T) {
		t.Parallel()
		c := testcluster.StartElections(t, 3, testcluster.ElectionOptions{Heartbeat: 3 * time.Second, FastFailover: false, Tweak: slow})
		li := c.WaitLeader(30 * time.Second)
		old := c.Node(li).Node.Leadership()
		c.Kill(li)
		start := time.Now()
		ni := c.WaitLeader(30 * time.Second)
		took := time.Since(start)
		t.Logf("without fast failover a new leader took %v", took)
		if l := c.Node(ni).Node.Leadership(); l.FencingToken <= old.FencingToken {
			t.Fatalf("new leader %+v not newer than %+v", l, old)
		}
		if got := triggers(c); got != 0 {
			t.Fatalf("fast-failover trigger count %v with FastFailover off", got)
		}
		// A follower's timer fires no sooner than HeartbeatTimeout (3s) after
		// it last heard the leader; a much quicker leader would mean something
		// other than raft's timers stood.
		if took < 1500*time.Millisecond {
			t.Fatalf("new leader after %v without fast failover: faster than raft's timers allow", took)
		}
	})
}

// waitHeld waits until every live follower has been inside Hold on the
// leader for 300ms without interruption: on loopback its stream is open by
// then (a dial takes well under a millisecond).
func waitHeld(t *testing.T, c *testcluster.ElectionCluster, li int) {
	t.Helper()
	testwait.Eventually(t, 10*time.Second, "every follower holding the leader for 300ms", func() (bool, string) {
		for _, i := range c.Alive() {
			if i == li {
				continue
			}
			n := c.Node(i).Node
			since := election.HoldSince(n)
			if n.Leadership().LeaderID != c.Node(li).ID || since == 0 ||
				time.Since(time.Unix(0, since)) < 300*time.Millisecond {
				return false, c.Describe()
			}
		}
		return true, c.Describe()
	})
}

func TestIsolatedLeaderLosesLease(t *testing.T) {
	// Raft's own step-down (LeaderLeaseTimeout) waits a full second; the
	// election lease is 200ms. So there is a window in which raft still says
	// Leader and the node must already say IsLeader=false.
	c := testcluster.StartElections(t, 3, testcluster.ElectionOptions{Heartbeat: time.Second, FastFailover: true, Tweak: func(cfg *election.Config) {
		cfg.LeaseDuration = 200 * time.Millisecond
		cfg.LeaderLeaseTimeout = time.Second
	}})
	li := c.WaitLeader(15 * time.Second)
	old := c.Node(li).Node.Leadership()
	w := c.Node(li).Node.Watch()
	defer w.Close()
	if v := recv(t, w); !v.IsLeader {
		t.Fatalf("watcher's first view %+v, want the leader's", v)
	}
	c.Isolate(li)
	start := time.Now()
	sawWindow := false
	var lapsed time.Duration
	testwait.Eventually(t, 200*time.Millisecond+2*time.Second, "the isolated leader to stop claiming leadership", func() (bool, string) {
		l := c.Node(li).Node.Leadership()
		if !l.IsLeader {
			lapsed = time.Since(start)
			if c.Node(li).Node.Raft().State() == raft.Leader {
				sawWindow = true
			}
			return true, c.Describe()
		}
		return false, c.Describe()
	})
	t.Logf("isolated leader stopped claiming leadership %v after the cut (raft still leader: %v)", lapsed, sawWindow)
	if !sawWindow {
		t.Errorf("IsLeader turned false only when raft stepped down; the lease did not act first")
	}
	// The lapse is published to watchers.
	for v := recv(t, w); v.IsLeader; v = recv(t, w) {
	}
	// The majority elects another leader with a higher fencing token.
	var ni int
	testwait.Eventually(t, 15*time.Second, "another leader in the majority", func() (bool, string) {
		ni = c.Leader()
		return ni >= 0 && ni != li, c.Describe()
	})
	if l := c.Node(ni).Node.Leadership(); l.FencingToken <= old.FencingToken {
		t.Fatalf("new leader's token %d not above old %d", l.FencingToken, old.FencingToken)
	}
	c.Heal(li)
	c.WaitLeader(15 * time.Second)
}

func TestPreVoteIsolatedFollowerDoesNotRaiseTerm(t *testing.T) {
	c := testcluster.StartElections(t, 3, testcluster.ElectionOptions{FastFailover: true})
	li := c.WaitLeader(15 * time.Second)
	before := c.Node(li).Node.Leadership()
	fi := (li + 1) % 3
	startElections := c.Metric(fi, "heartbeat_raft_elections_started_total")
	c.Isolate(fi)
	// Wait until the isolated follower has timed out, become a candidate and
	// heard nothing from the leader for several heartbeat timeouts.
	testwait.Eventually(t, 20*time.Second, "the isolated follower to stand and time out", func() (bool, string) {
		n := c.Node(fi).Node
		return c.Metric(fi, "heartbeat_raft_elections_started_total") >= startElections+1 &&
			n.Leadership().LeaderID == "" &&
			time.Since(n.Raft().LastContact()) > 4*election.DefaultHeartbeatTimeout, c.Describe()
	})
	if got := c.Node(fi).Node.Leadership().Term; got != before.Term {
		t.Fatalf("isolated follower raised its term to %d (leader's %d): pre-vote is off", got, before.Term)
	}
	c.Heal(fi)
	testwait.Eventually(t, 15*time.Second, "the healed follower to follow the leader again", func() (bool, string) {
		return c.Node(fi).Node.Leadership().LeaderID == before.LeaderID, c.Describe()
	})
	after := c.Node(li).Node.Leadership()
	if after.Term != before.Term || !after.IsLeader {
		t.Fatalf("leader after heal %+v, before %+v: term raised or leadership lost", after, before)
	}
}

func TestFullRestartKeepsLog(t *testing.T) {
	c := testcluster.StartElections(t, 3, testcluster.ElectionOptions{FastFailover: true})
	li := c.WaitLeader(15 * time.Second)
	var want []string
	for i := 0; i < 20; i++ {
		e := fmt.Sprintf("entry-%d", i)
		if _, err := c.Node(li).Node.Apply(testcluster.ContextWithin(t, 5*time.Second), []byte(e)); err != nil {
			t.Fatalf("apply %d: %v", i, err)
		}
		want = append(want, e)
	}
	waitApplied(t, c, want)
	for i := 0; i < c.Len(); i++ {
		c.Kill(i)
	}
	for i := 0; i < c.Len(); i++ {
		c.Restart(i)
	}
	li = c.WaitLeader(15 * time.Second)
	waitApplied(t, c, want)
	if _, err := c.Node(li).Node.Apply(testcluster.ContextWithin(t, 5*time.Second), []byte("after")); err != nil {
		t.Fatalf("apply after restart: %v", err)
	}
	waitApplied(t, c, append(want, "after"))
}

// waitApplied waits until every live node's FSM holds exactly want.
func waitApplied(t *testing.T, c *testcluster.ElectionCluster, want []string) {
	t.Helper()
	testwait.Eventually(t, 15*time.Second, "every live node to apply the entries", func() (bool, string) {
		s := ""
		ok := true
		for _, i := range c.Alive() {
			got := entries(c, i)
			ok = ok && slices.Equal(got, want)
			s += fmt.Sprintf("\n  %s: %d entries", c.Node(i).ID, len(got))
		}
		return ok, s
	})
}

func TestJoinRemove(t *testing.T) {
	c := testcluster.StartElections(t, 3, testcluster.ElectionOptions{FastFailover: true, Extra: 2})
	li := c.WaitLeader(15 * time.Second)
	lead := c.Node(li).Node
	n4, n5 := c.Node(3), c.Node(4)
	if l := n4.Node.Leadership(); l.LeaderID != "" {
		t.Fatalf("unlisted node knows a leader before joining: %+v", l)
	}
	if _, err := lead.Apply(testcluster.ContextWithin(t, 5*time.Second), []byte("before-join")); err != nil {
		t.Fatal(err)
	}

	// Join on a follower: ErrNotLeader naming the leader.
	fi := (li + 1) % 3
	err := c.Node(fi).Node.Join(testcluster.ContextWithin(t, 5*time.Second), n4.ID, string(n4.Addr), true)
	var nle *election.NotLeaderError
	if !errors.Is(err, election.ErrNotLeader) || !errors.As(err, &nle) {
		t.Fatalf("join on follower: %v, want election.ErrNotLeader", err)
	}
	if nle.LeaderID != c.Node(li).ID || nle.LeaderAddr != string(c.Node(li).Addr) {
		t.Fatalf("NotLeaderError names %s@%s, want %s@%s", nle.LeaderID, nle.LeaderAddr, c.Node(li).ID, c.Node(li).Addr)
	}

	if err := lead.Join(testcluster.ContextWithin(t, 10*time.Second), n4.ID, string(n4.Addr), true); err != nil {
		t.Fatalf("join voter: %v", err)
	}
	if err := lead.Join(testcluster.ContextWithin(t, 10*time.Second), n4.ID, string(n4.Addr), true); err != nil {
		t.Fatalf("join again (idempotent): %v", err)
	}
	if err := lead.Join(testcluster.ContextWithin(t, 10*time.Second), n5.ID, string(n5.Addr), false); err != nil {
		t.Fatalf("join non-voter: %v", err)
	}
	err = lead.Join(testcluster.ContextWithin(t, 5*time.Second), n4.ID, "127.0.0.1:1", true)
	if !errors.Is(err, election.ErrIDInUse) {
		t.Fatalf("same id, other address: %v, want election.ErrIDInUse", err)
	}
	err = lead.Join(testcluster.ContextWithin(t, 5*time.Second), "n9", string(n4.Addr), true)
	if !errors.Is(err, election.ErrAddressInUse) {
		t.Fatalf("other id, same address: %v, want election.ErrAddressInUse", err)
	}

	members, err := lead.Members()
	if err != nil {
		t.Fatal(err)
	}
	suffrage := func() map[string]string {
		ms, err := lead.Members()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, m := range ms {
			got[m.ID] = m.Suffrage
		}
		return got
	}
	// n4 asked to be a voter: a learner first (the leader reports it as
	// staging until it promotes it); n5 is a non-voter.
	if got := suffrage(); len(got) != 5 || got["n4"] != "staging" && got["n4"] != "voter" || got["n5"] != "nonvoter" {
		t.Fatalf("members %+v: want n4 staging (or voter already) and n5 non-voter among 5", members)
	}
	// The joined nodes follow the leader and receive the log; the leader
	// then promotes n4, never n5.
	testwait.Eventually(t, 10*time.Second, "the joined nodes to follow the leader and get the log, n4 promoted", func() (bool, string) {
		for _, tn := range []*testcluster.ElectionNode{n4, n5} {
			l := tn.Node.Leadership()
			if l.LeaderID != c.Node(li).ID || !slices.Contains(tn.FSM.(*testcluster.LogFSM).Entries(), "before-join") {
				return false, c.Describe()
			}
		}
		got := suffrage()
		p := c.Metric(li, "heartbeat_learner_promotions_total")
		return got["n4"] == "voter" && p == 1, fmt.Sprintf("%v, promotions %v", got, p)
	})
	if got := suffrage(); got["n5"] != "nonvoter" {
		t.Fatalf("n5 joined as a non-voter and is %q now", got["n5"])
	}

	if err := lead.Remove(testcluster.ContextWithin(t, 10*time.Second), n4.ID); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if err := lead.Remove(testcluster.ContextWithin(t, 10*time.Second), n4.ID); err != nil {
		t.Fatalf("remove again (idempotent): %v", err)
	}
	members, _ = lead.Members()
	for _, m := range members {
		if m.ID == n4.ID {
			t.Fatalf("n4 still a member after Remove: %+v", members)
		}
	}
	if err := c.Node(fi).Node.Remove(testcluster.ContextWithin(t, 5*time.Second), n5.ID); !errors.Is(err, election.ErrNotLeader) {
		t.Fatalf("remove on follower: %v, want election.ErrNotLeader", err)
	}
	if err := transferTo(lead, testcluster.ContextWithin(t, 5*time.Second), n5.ID); !errors.Is(err, election.ErrNotVoter) {
		t.Fatalf("transfer to non-voter: %v, want election.ErrNotVoter", err)
	}
	if err := transferTo(lead, testcluster.ContextWithin(t, 5*time.Second), "nobody"); !errors.Is(err, election.ErrUnknownMember) {
		t.Fatalf("transfer to unknown: %v, want election.ErrUnknownMember", err)
	}
}

func TestGracefulShutdownHandsOff(t *testing.T) {
	// Heartbeat timeout 3s: an election after a silent loss would take
	// more than 3s, so a quick new leader proves the hand-off.
	c := testcluster.StartElections(t, 3, testcluster.ElectionOptions{Heartbeat: 3 * time.Second, FastFailover: true, Tweak: func(cfg *election.Config) {
		cfg.LeaseDuration = 2 * time.Second
	}})
	li := c.WaitLeader(30 * time.Second)
	old := c.Node(li).Node.Leadership()
	waitHeld(t, c, li)
	w := c.Node(li).Node.Watch()
	defer w.Close()
	if first := recv(t, w); !first.IsLeader {
		t.Fatalf("watcher's first view %+v, want the current (leader) view", first)
	}

	start := time.Now()
	// Shutdown, then the transport's close as its owner does; followers
	// got goodbye.
	if err := c.Shutdown(testcluster.ContextWithin(t, 10*time.Second), li); err != nil {
		t.Fatalf("shutdown: %v", err)
	}

	var took time.Duration
	testwait.Eventually(t, 2*time.Second, "a new leader after the hand-off", func() (bool, string) {
		ni := c.Leader()
		if ni < 0 || c.Node(ni).Node.Leadership().FencingToken <= old.FencingToken {
			return false, c.Describe()
		}
		took = time.Since(start)
		return true, c.Describe()
	})
	t.Logf("new leader %v after Shutdown began", took)
	c.WaitLeader(5 * time.Second)
	if got := triggers(c); got != 0 {
		t.Fatalf("fast failover fired %v times on a graceful hand-off", got)
	}
	// The watcher saw the leader give up its claim, then the channel closed.
	var last election.Leadership
	for l := range w.C() {
		last = l
	}
	if last.State != "shutdown" || last.IsLeader {
		t.Fatalf("last view %+v, want shutdown", last)
	}
}

func TestWatchFollowsChanges(t *testing.T) {
	c := testcluster.StartElections(t, 3, testcluster.ElectionOptions{FastFailover: true})
	li := c.WaitLeader(15 * time.Second)
	fi := (li + 1) % 3
	w := c.Node(fi).Node.Watch()
	defer w.Close()
	first := recv(t, w)
	if first.LeaderID != c.Node(li).ID {
		t.Fatalf("first view %+v, want current leader %s", first, c.Node(li).ID)
	}
	c.Kill(li)
	deadline := time.After(15 * time.Second)
	for {
		select {
		case l, ok := <-w.C():
			if !ok {
				t.Fatal("watch channel closed")
			}
			if l.LeaderID != "" && l.LeaderID != first.LeaderID {
				if l.FencingToken <= first.FencingToken {
					t.Fatalf("new leader view with token %d <= %d", l.FencingToken, first.FencingToken)
				}
				return
			}
		case <-deadline:
			t.Fatalf("no new-leader view:%s", c.Describe())
		}
	}
}

func TestUnreachableBootstrapPeers(t *testing.T) {
	c := testcluster.StartElections(t, 3, testcluster.ElectionOptions{FastFailover: true, NoStart: map[int]bool{1: true, 2: true}})
	// The others' transports are closed: their addresses refuse.
	for _, i := range []int{1, 2} {
		c.Kill(i)
	}
	n := c.Node(0).Node
	// It times out, stands (pre-vote), gets no answer and stays a candidate.
	testwait.Eventually(t, 15*time.Second, "the lone node to stand and stay a candidate", func() (bool, string) {
		return c.Metric(0, "heartbeat_raft_elections_started_total") >= 1 &&
			n.Leadership().State == "candidate", c.Describe()
	})
	l := n.Leadership()
	if l.LeaderID != "" || l.IsLeader || l.FencingToken != 0 {
		t.Fatalf("lone node claims a leader: %+v", l)
	}
	if _, err := n.Apply(testcluster.ContextWithin(t, time.Second), []byte("x")); !errors.Is(err, election.ErrNotLeader) || !errors.Is(err, election.ErrNoLeader) {
		t.Fatalf("apply without leader: %v, want election.ErrNotLeader and election.ErrNoLeader", err)
	}
}

// TestBrokenStreamToLiveLeaderDoesNotDepose: a follower whose held stream
// breaks while the leader lives (a reset connection) must not stand: first
// its redial succeeds; then, with redials failing too, no other member
// confirms the loss.
func TestBrokenStreamToLiveLeaderDoesNotDepose(t *testing.T) {
	c := testcluster.StartElections(t, 3, testcluster.ElectionOptions{Heartbeat: 3 * time.Second, FastFailover: true, Tweak: func(cfg *election.Config) {
		cfg.LeaseDuration = 2 * time.Second
		cfg.ConfirmTimeout = 500 * time.Millisecond
	}})
	li := c.WaitLeader(30 * time.Second)
	before := c.Node(li).Node.Leadership()
	fi := (li + 1) % 3
	f := c.Node(fi)
	for _, refuse := range []bool{false, true} {
		waitHeld(t, c, li)
		f.Hook.SetRefuse(refuse)
		if !f.Hook.BreakHold() {
			t.Fatal("no Hold running to break")
		}
		broke := time.Now()
		// The follower decides "no crash", backs off and holds the leader
		// again.
		testwait.Eventually(t, 10*time.Second, "the follower to hold the leader again (or fail over)", func() (bool, string) {
			since := election.HoldSince(f.Node)
			return triggers(c) > 0 || since != 0 && time.Unix(0, since).After(broke), c.Describe()
		})
		f.Hook.SetRefuse(false)
		if got := triggers(c); got != 0 {
			t.Fatalf("refuse=%v: fast failover fired %v times against a live leader", refuse, got)
		}
		if l := c.Node(li).Node.Leadership(); l.Term != before.Term || !l.IsLeader {
			t.Fatalf("refuse=%v: leader %+v, was %+v", refuse, l, before)
		}
	}
}

// TestTransfer hands leadership to a named voter and then to any voter. The
// leader stops claiming leadership while a transfer runs (the target is
// elected by votes that ignore the old leader's lease), and a sampler checks
// that no two nodes ever claim it at once.
func TestTransfer(t *testing.T) {
	c := testcluster.StartElections(t, 3, testcluster.ElectionOptions{FastFailover: true})
	li := c.WaitLeader(15 * time.Second)

	stop := make(chan struct{})
	overlap := make(chan string, 1)
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			var claim []string
			for i := 0; i < c.Len(); i++ {
				if tn := c.Node(i); tn.Node.Leadership().IsLeader {
					claim = append(claim, tn.ID)
				}
			}
			if len(claim) > 1 {
				select {
				case overlap <- fmt.Sprint(claim):
				default:
				}
			}
			time.Sleep(time.Millisecond)
		}
	}()
	defer func() {
		close(stop)
		sampler.Wait()
		select {
		case who := <-overlap:
			t.Errorf("two nodes claimed leadership at once: %s", who)
		default:
		}
	}()

	target := (li + 1) % 3
	old := c.Node(li).Node

	// A transfer to an unreachable target fails after raft's election
	// timeout; meanwhile the leader, still raft leader, claims nothing, and
	// it claims leadership again after the failure.
	c.Isolate(target)
	failed := make(chan error, 1)
	go func() { failed <- transferTo(old, testcluster.ContextWithin(t, 10*time.Second), c.Node(target).ID) }()
	testwait.Eventually(t, 5*time.Second, "the leader to stop claiming during the transfer", func() (bool, string) {
		l := old.Leadership()
		return l.State == "leader" && !l.IsLeader, c.Describe()
	})
	if err := <-failed; err == nil {
		t.Fatal("transfer to an isolated target succeeded")
	}
	c.Heal(target)
	testwait.Eventually(t, 5*time.Second, "the leader to claim again after the failed transfer", func() (bool, string) { return old.Leadership().IsLeader, c.Describe() })
	c.WaitLeader(15 * time.Second) // the target follows again

	// raft keeps the failed transfer "in progress" until its TimeoutNow call
	// to the (then isolated) target gives up, and a transfer can time out
	// while the target is still catching up: retry until the target leads.
	var err error
	testwait.Eventually(t, 20*time.Second, "the target to lead after retried transfers", func() (bool, string) {
		if c.Node(target).Node.Leadership().IsLeader {
			return true, fmt.Sprintf("last transfer error: %v%s", err, c.Describe())
		}
		err = transferTo(old, testcluster.ContextWithin(t, 10*time.Second), c.Node(target).ID)
		return err == nil, fmt.Sprintf("last transfer error: %v%s", err, c.Describe())
	})
	if got := c.WaitLeader(15 * time.Second); got != target {
		t.Fatalf("leader after transfer is %s, want %s", c.Node(got).ID, c.Node(target).ID)
	}
	if err := transferTo(old, testcluster.ContextWithin(t, 5*time.Second), ""); !errors.Is(err, election.ErrNotLeader) {
		t.Fatalf("transfer from the old leader: %v, want election.ErrNotLeader", err)
	}
	if err := transferTo(c.Node(target).Node, testcluster.ContextWithin(t, 10*time.Second), ""); err != nil {
		t.Fatalf("transfer to any voter: %v", err)
	}
	if got := c.WaitLeader(15 * time.Second); got == target {
		t.Fatalf("leader still %s after transfer to any voter", c.Node(got).ID)
	}
	if got := triggers(c); got != 0 {
		t.Fatalf("fast failover fired %v times during planned transfers", got)
	}
}

// TestStopWhileApplying stops a single-node cluster (Close and Shutdown)
// while writers keep applying: every Apply returns, and no goroutine waits
// on a raft future after the stop (raft drops the committed entries still
// queued for its FSM at shutdown without answering their futures, so stop
// lets the futures in flight resolve first; goleak in TestMain checks).
func TestStopWhileApplying(t *testing.T) {
	for _, graceful := range []bool{false, true} {
		for round := 0; round < 5; round++ {
			c := testcluster.StartElections(t, 1, testcluster.ElectionOptions{})
			li := c.WaitLeader(10 * time.Second)
			n := c.Node(li).Node
			// A slow FSM: committed entries queue up for it, as they do
			// for the membership FSM under load.
			c.Node(li).FSM.(*testcluster.LogFSM).SetDelay(2 * time.Millisecond)
			var wg sync.WaitGroup
			var applied atomic.Int64
			for w := 0; w < 32; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						if _, err := n.Apply(context.Background(), []byte("x")); err != nil {
							return
						}
						applied.Add(1)
					}
				}()
			}
			for applied.Load() < 50 {
				time.Sleep(time.Millisecond)
			}
			var err error
			if graceful {
				err = n.Shutdown(testcluster.ContextWithin(t, 5*time.Second))
			} else {
				err = n.Close()
			}
			if err != nil {
				t.Fatalf("stop (graceful %v): %v", graceful, err)
			}
			done := make(chan struct{})
			go func() { wg.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatalf("an Apply did not return after the stop (graceful %v)", graceful)
			}
			c.Forget(li)
		}
	}
}

// triggers sums the fast-failover trigger counters of the live nodes.
func triggers(c *testcluster.ElectionCluster) float64 {
	var sum float64
	for _, i := range c.Alive() {
		sum += c.Metric(i, "heartbeat_fast_failover_triggers_total")
	}
	return sum
}

// entries returns what node i's state machine (a LogFSM) has applied.
func entries(c *testcluster.ElectionCluster, i int) []string {
	return c.Node(i).FSM.(*testcluster.LogFSM).Entries()
}

// recv returns the next view of w, failing the test after 5s.
func recv(t *testing.T, w *election.Watcher) election.Leadership {
	t.Helper()
	select {
	case l, ok := <-w.C():
		if !ok {
			t.Fatal("watcher channel closed")
		}
		return l
	case <-time.After(5 * time.Second):
		t.Fatal("no view within 5s")
	}
	return election.Leadership{}
}

// transferTo runs TransferLeadership and keeps its error only.
func transferTo(n *election.Node, ctx context.Context, id string) error {
	_, err := n.TransferLeadership(ctx, id)
	return err
}
