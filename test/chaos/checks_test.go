package chaos

import (
	"strings"
	"testing"
	"time"
)

func msd(v int) time.Duration { return time.Duration(v) * time.Millisecond }

// ev builds a status event from at to until (ms).
func ev(node string, at, until int, role Role, term, token uint64, leader string, isSelf bool) Event {
	return Event{Node: node, Source: SourceStatus, At: msd(at), Until: msd(until), Role: role, Term: term,
		Token: token, Leader: leader, IsSelf: isSelf, CommitIndex: term * 3}
}

func watch(node string, at int, term, token uint64, leader string, isSelf bool) Event {
	return Event{Node: node, Source: SourceWatch, At: msd(at), Until: msd(at), Term: term, Token: token, Leader: leader, IsSelf: isSelf}
}

// cleanHistory: n1 leads term 2; a quiet window; n1 is killed at 1s; n2 wins
// term 3 at 1.25s; n1 comes back at 3s as a follower.
func cleanHistory() Snapshot {
	s := Snapshot{Length: msd(4000), Nodes: []string{"n1", "n2", "n3"}}
	s.Events = []Event{
		ev("n1", 0, 1000, RoleLeader, 2, 2, "n1", true),
		watch("n1", 0, 2, 2, "n1", true),
		ev("n2", 0, 1150, RoleFollower, 2, 2, "n1", false),
		watch("n2", 0, 2, 2, "n1", false),
		ev("n3", 0, 1240, RoleFollower, 2, 2, "n1", false),
		ev("n1", 1010, 2990, RoleDown, 0, 0, "", false),
		ev("n2", 1200, 1230, RoleCandidate, 3, 2, "", false),
		ev("n2", 1250, 4000, RoleLeader, 3, 3, "n2", true),
		watch("n2", 1245, 3, 3, "n2", true),
		ev("n3", 1260, 4000, RoleFollower, 3, 3, "n2", false),
		ev("n1", 3000, 3040, RoleFollower, 3, 0, "", false),
		ev("n1", 3050, 4000, RoleFollower, 3, 3, "n2", false),
	}
	s.Faults = []Fault{
		{Kind: KindQuiet, Target: "none", Run: 1, Start: 0, Injected: 0, End: msd(900), Settled: msd(900),
			OldLeader: "n1", OldTerm: 2, OldToken: 2, Expect: ExpectStable},
		{Kind: KindKill, Target: "leader", Run: 1, Nodes: []string{"n1"}, OldLeader: "n1", OldTerm: 2, OldToken: 2,
			Start: msd(990), Injected: msd(1020), End: msd(3000), Settled: msd(3500), Expect: ExpectFailover, Bound: time.Second},
	}
	s.sort()
	return s
}

func TestCleanHistoryPasses(t *testing.T) {
	s := cleanHistory()
	if vs := CheckAll(s, DefaultCheckOptions()); len(vs) != 0 {
		t.Fatalf("clean history has violations: %v", vs)
	}
}

func TestCheckersCatchPlantedViolations(t *testing.T) {
	tests := []struct {
		name  string
		plant func(*Snapshot)
		check func(Snapshot) []Violation
		want  string // substring of the violation message
	}{
		{
			name: "S1 two nodes lead the same term",
			plant: func(s *Snapshot) {
				s.Events = append(s.Events, ev("n3", 3600, 3700, RoleLeader, 3, 3, "n3", true))
			},
			check: CheckS1,
			want:  "n3 leads term 3, already led by n2",
		},
		{
			name: "S1 state=leader with a consistent term counts as a claim",
			plant: func(s *Snapshot) {
				s.Events = append(s.Events, ev("n3", 3600, 3700, RoleLeader, 3, 3, "n3", false))
			},
			check: CheckS1,
			want:  "n3 leads term 3",
		},
		{
			name: "S1 watch claim",
			plant: func(s *Snapshot) {
				s.Events = append(s.Events, watch("n1", 3600, 3, 3, "n1", true))
			},
			check: CheckS1,
			want:  "n1 leads term 3, already led by n2",
		},
		{
			name: "S2 token decreases on one node",
			plant: func(s *Snapshot) {
				s.Events = append(s.Events, ev("n3", 4000, 4100, RoleFollower, 3, 2, "n1", false))
				s.Length = msd(4200)
			},
			check: func(s Snapshot) []Violation { return CheckS2(s, msd(50)) },
			want:  "status token fell from 3",
		},
		{
			name: "S2 leader claims with a stale token",
			plant: func(s *Snapshot) {
				s.Events = append(s.Events, ev("n1", 3500, 3510, RoleLeader, 2, 2, "n1", true))
			},
			check: func(s Snapshot) []Violation { return CheckS2(s, msd(50)) },
			want:  "claims leadership with token 2 after n2 reported token 3",
		},
		{
			name: "two leaders claim at once",
			plant: func(s *Snapshot) {
				// n1 keeps claiming well into n2's leadership
				s.Events[0].Until = msd(1400)
			},
			check: func(s Snapshot) []Violation { return CheckNoTwoLeaders(s, msd(50)) },
			want:  "both claim leadership",
		},
		{
			name: "L1 failover slower than the bound",
			plant: func(s *Snapshot) {
				s.Faults[1].Bound = msd(100)
			},
			check: CheckL1,
			want:  "new leader known to all after 0.260s, bound 0.100s",
		},
		{
			name: "L1 a survivor never learns the new leader",
			plant: func(s *Snapshot) {
				for i := range s.Events {
					if s.Events[i].Node == "n3" && s.Events[i].Token == 3 {
						s.Events[i].Token, s.Events[i].Leader = 2, ""
					}
				}
			},
			check: CheckL1,
			want:  "missing: [n3]",
		},
		{
			name: "L2 term change in a quiet window",
			plant: func(s *Snapshot) {
				s.Events = append(s.Events, ev("n3", 500, 600, RoleFollower, 3, 2, "n1", false))
			},
			check: CheckL2,
			want:  "term 3, was 2",
		},
		{
			name: "L2 candidate during a short pause",
			plant: func(s *Snapshot) {
				s.Events = append(s.Events, ev("n2", 400, 410, RoleCandidate, 2, 2, "", false))
			},
			check: CheckL2,
			want:  "became candidate",
		},
		{
			name: "S4 commit index lost after kill-all",
			plant: func(s *Snapshot) {
				s.Faults[1].Recovered = 100 // only 9 is seen after
			},
			check: CheckS4,
			want:  "commit index 100 acknowledged before, highest after restart 9",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := cleanHistory()
			if vs := tt.check(s); len(vs) != 0 {
				t.Fatalf("clean history already fails: %v", vs)
			}
			tt.plant(&s)
			s.sort()
			vs := tt.check(s)
			if len(vs) == 0 {
				t.Fatalf("planted violation not caught")
			}
			var found bool
			for _, v := range vs {
				found = found || strings.Contains(v.Msg, tt.want)
			}
			if !found {
				t.Fatalf("violations %v do not mention %q", vs, tt.want)
			}
			// CheckAll sees it too and attributes it to a window.
			all := CheckAll(s, DefaultCheckOptions())
			if len(all) == 0 {
				t.Fatalf("CheckAll missed it")
			}
		})
	}
}

func TestL2AllowsPreVoteOfTargetButNotTermChange(t *testing.T) {
	s := cleanHistory()
	s.Faults[0].Nodes = []string{"n3"} // the quiet window becomes a fault on n3
	s.Events = append(s.Events, ev("n3", 400, 450, RoleCandidate, 2, 2, "", false))
	s.sort()
	if vs := CheckL2(s); len(vs) != 0 {
		t.Fatalf("pre-vote of the target flagged: %v", vs)
	}
	s.Events = append(s.Events, ev("n3", 500, 550, RoleCandidate, 3, 2, "", false))
	s.sort()
	if vs := CheckL2(s); len(vs) != 1 || !strings.Contains(vs[0].Msg, "term 3, was 2") {
		t.Fatalf("term change of the target: %v", vs)
	}
}

func TestS2IgnoresRaftStateOfALeaderWhoseLeaseLapsed(t *testing.T) {
	// The chaos run's case: n1 was paused as leader of term 2; n2 won term 3;
	// on thaw n1 still says state=leader, term 2, but is_leader=false (its
	// lease lapsed) until it hears of term 3. That hands nothing out.
	s := cleanHistory()
	var kept []Event
	for _, e := range s.Events {
		if e.Node != "n1" || e.At < msd(3000) {
			kept = append(kept, e) // n1 comes back from its pause below
		}
	}
	s.Events = append(kept, ev("n1", 3500, 3510, RoleLeader, 2, 2, "n1", false))
	s.sort()
	if vs := CheckS2(s, msd(50)); len(vs) != 0 {
		t.Fatalf("raft state of a lapsed leader flagged: %v", vs)
	}
	s.Events = append(s.Events, ev("n1", 3520, 3530, RoleLeader, 2, 2, "n1", true))
	s.sort()
	if vs := CheckS2(s, msd(50)); len(vs) != 1 || !strings.Contains(vs[0].Msg, "claims leadership with token 2") {
		t.Fatalf("stale is_self claim: %v", vs)
	}
}

func TestTwoLeadersTolerance(t *testing.T) {
	s := cleanHistory()
	// n1's last claim overlaps n2's first by 30 ms: within the 50 ms tolerance.
	s.Events[0].Until = msd(1280)
	if vs := CheckNoTwoLeaders(s, msd(50)); len(vs) != 0 {
		t.Fatalf("30 ms overlap flagged with 50 ms tolerance: %v", vs)
	}
	if vs := CheckNoTwoLeaders(s, msd(10)); len(vs) != 1 {
		t.Fatalf("30 ms overlap not flagged with 10 ms tolerance: %v", vs)
	}
}

func TestViolationAttributedToFault(t *testing.T) {
	s := cleanHistory()
	s.Events = append(s.Events, ev("n3", 3600, 3700, RoleLeader, 3, 3, "n3", true))
	s.sort()
	vs := CheckAll(s, DefaultCheckOptions())
	if len(vs) == 0 {
		t.Fatal("no violation")
	}
	for _, v := range vs {
		if v.Fault != 1 {
			t.Errorf("%v attributed to fault %d, want 1", v, v.Fault)
		}
	}
}

// TestS2DelayedWatchEvent: a watch event that a burst delivered late (after
// a net-disconnect; the CI run's case: n5's stale claim of token 8 arrived
// 930 ms after n4 reported token 9) does not time a claim; the same claim
// from a status poll does, from the moment the poll was sent.
func TestS2DelayedWatchEvent(t *testing.T) {
	s := cleanHistory()
	s.Events = append(s.Events, watch("n1", 3500, 2, 2, "n1", true))
	s.sort()
	claims := func(vs []Violation) int {
		n := 0
		for _, v := range vs {
			if strings.Contains(v.Msg, "claims leadership") {
				n++
			}
		}
		return n
	}
	if vs := CheckS2(s, msd(50)); claims(vs) != 0 {
		t.Fatalf("a late-delivered watch claim was flagged: %v", vs)
	}
	s = cleanHistory()
	poll := ev("n1", 3500, 3510, RoleLeader, 2, 2, "n1", true)
	s.Events = append(s.Events, poll)
	s.sort()
	if vs := CheckS2(s, msd(50)); claims(vs) != 1 {
		t.Fatalf("a stale status claim: %v", vs)
	}
	// A poll sent before n2's token 3 was reported (its answer arriving
	// late) may have been answered before it: not a violation.
	s = cleanHistory()
	poll.Latency = msd(2400)
	s.Events = append(s.Events, poll)
	s.sort()
	if vs := CheckS2(s, msd(50)); claims(vs) != 0 {
		t.Fatalf("a slow poll sent before the new token: %v", vs)
	}
}
