package bench

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

// timeline builds synthetic poll data: t0 plus milliseconds.
type timeline struct {
	t0      time.Time
	samples []Sample
}

func (tl *timeline) at(ms float64) time.Time {
	return tl.t0.Add(time.Duration(ms * float64(time.Millisecond)))
}

// polls records node answering "state, leader" every 2 ms in [fromMs, toMs).
func (tl *timeline) polls(node string, fromMs, toMs float64, state, leader string, term uint64) {
	for ms := fromMs; ms < toMs; ms += 2 {
		tl.samples = append(tl.samples, Sample{Node: node, At: tl.at(ms), OK: true,
			Status: Status{ID: node, State: state, Term: term, Leader: StatusPeer{ID: leader}}})
	}
}

// fails records failed polls of node every 2 ms in [fromMs, toMs).
func (tl *timeline) fails(node string, fromMs, toMs float64) {
	for ms := fromMs; ms < toMs; ms += 2 {
		tl.samples = append(tl.samples, Sample{Node: node, At: tl.at(ms)})
	}
}

var survivors = []string{"n2", "n3", "n4", "n5"}

// crashTimeline: n1 leads and answers until 99 ms, is killed at 100 ms; n3 wins; the
// survivors learn of n3 at 130, 134, 150 and 170 ms (the last one decides: 170-98 = 72 ms).
func crashTimeline() *timeline {
	tl := &timeline{t0: time.Unix(1_700_000_000, 0)}
	tl.polls("n1", 0, 100, "leader", "n1", 2) // last OK answer at 98 ms
	tl.fails("n1", 100, 400)
	learn := map[string]float64{"n2": 130, "n3": 134, "n4": 150, "n5": 170}
	for _, s := range survivors {
		state := "follower"
		if s == "n3" {
			state = "leader"
		}
		tl.polls(s, 0, 110, "follower", "n1", 2)
		tl.polls(s, 110, learn[s], "candidate", "", 3) // no leader known
		tl.polls(s, learn[s], 400, state, "n3", 3)
	}
	return tl
}

func TestComputeFailover(t *testing.T) {
	tl := crashTimeline()
	fault := Fault{Victim: "n1", Survivors: survivors, At: tl.at(100)}
	fo, err := ComputeFailover(fault, tl.samples)
	if err != nil {
		t.Fatal(err)
	}
	if fo.NewLeader != "n3" || !fo.LastAnswer.Equal(tl.at(98)) || !fo.Converged.Equal(tl.at(170)) ||
		fo.Duration != 72*time.Millisecond {
		t.Errorf("failover = %+v, want n3, last answer 98 ms, converged 170 ms, 72 ms", fo)
	}
	if fo.Silence() != 2*time.Millisecond {
		t.Errorf("silence before the fault = %v, want 2ms", fo.Silence())
	}

	// Poll data arrives from several goroutines: order must not matter.
	shuffled := append([]Sample(nil), tl.samples...)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	if fo2, err := ComputeFailover(fault, shuffled); err != nil || fo2.Duration != fo.Duration {
		t.Errorf("shuffled samples: %v, %v; want %v", fo2.Duration, err, fo.Duration)
	}

	// Samples of other nodes (a sixth node that is not a survivor) are ignored.
	extra := append(append([]Sample(nil), tl.samples...), Sample{Node: "n9", At: tl.at(200), OK: true})
	if fo3, err := ComputeFailover(fault, extra); err != nil || fo3.Duration != fo.Duration {
		t.Errorf("extra node: %v, %v", fo3.Duration, err)
	}
}

func TestComputeFailoverPlantedBadCases(t *testing.T) {
	fault := func(tl *timeline) Fault { return Fault{Victim: "n1", Survivors: survivors, At: tl.at(100)} }
	for _, tc := range []struct {
		name    string
		plant   func(tl *timeline)
		wantErr error
		wantMs  float64
	}{
		{
			// n5 briefly believes n4 won (a split view) until 250 ms: agreement only then.
			name: "split view holds the moment back",
			plant: func(tl *timeline) {
				tl.samples = dropNode(tl.samples, "n5", tl.at(170), tl.at(250))
				tl.polls("n5", 170, 250, "follower", "n4", 3)
			},
			wantMs: 250 - 98,
		},
		{
			// n4 keeps naming the dead leader: never converged.
			name: "survivor stuck on the victim",
			plant: func(tl *timeline) {
				tl.samples = dropNode(tl.samples, "n4", tl.at(110), tl.at(400))
				tl.polls("n4", 110, 400, "follower", "n1", 2)
			},
			wantErr: ErrNotConverged,
		},
		{
			// n2's polls fail from 160 to 300 ms (its HTTP server stalls): its latest poll
			// failed, so it does not count as naming anyone until it answers again.
			name: "failed survivor poll holds the moment back",
			plant: func(tl *timeline) {
				tl.samples = dropNode(tl.samples, "n2", tl.at(160), tl.at(300))
				tl.fails("n2", 160, 300)
			},
			wantMs: 300 - 98,
		},
		{
			name:    "victim never answered",
			plant:   func(tl *timeline) { tl.samples = dropNode(tl.samples, "n1", tl.at(0), tl.at(400)) },
			wantErr: ErrNoLastAnswer,
		},
		{
			// The victim's answers after the fault (a SIGSTOP that raced a reply) move the
			// last answer later, never earlier.
			name:   "late victim reply moves last answer",
			plant:  func(tl *timeline) { tl.polls("n1", 110, 112, "leader", "n1", 2) },
			wantMs: 170 - 110,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tl := crashTimeline()
			tc.plant(tl)
			fo, err := ComputeFailover(fault(tl), tl.samples)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v (failover %+v)", err, tc.wantErr, fo)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := float64(fo.Duration) / 1e6; got != tc.wantMs {
				t.Errorf("failover = %v ms, want %v ms", got, tc.wantMs)
			}
		})
	}
}

// dropNode removes node's samples in [from, to).
func dropNode(ss []Sample, node string, from, to time.Time) []Sample {
	out := ss[:0:0]
	for _, s := range ss {
		if s.Node == node && !s.At.Before(from) && s.At.Before(to) {
			continue
		}
		out = append(out, s)
	}
	return out
}

func TestComputeFailoverIgnoresAgreementBeforeTheFault(t *testing.T) {
	// Survivors already name n3 before the fault (the victim was not their leader): the
	// moment is the first sample at or after the fault, not earlier.
	tl := &timeline{t0: time.Unix(1_700_000_000, 0)}
	tl.polls("n1", 0, 100, "leader", "n1", 2)
	for _, s := range survivors {
		tl.polls(s, 0, 200, "follower", "n3", 2)
	}
	fo, err := ComputeFailover(Fault{Victim: "n1", Survivors: survivors, At: tl.at(101)}, tl.samples)
	if err != nil {
		t.Fatal(err)
	}
	if fo.Converged.Before(tl.at(101)) {
		t.Errorf("converged at %v, before the fault", fo.Converged.Sub(tl.t0))
	}
}

func TestStableLeader(t *testing.T) {
	ids := []string{"n1", "n2", "n3"}
	mk := func(states ...string) map[string]Sample {
		m := map[string]Sample{}
		for i, st := range states {
			state, leader, _ := cut(st)
			m[ids[i]] = Sample{Node: ids[i], OK: state != "down", Status: Status{State: state, Leader: StatusPeer{ID: leader}}}
		}
		return m
	}
	for _, tc := range []struct {
		name   string
		latest map[string]Sample
		want   string
	}{
		{"stable", mk("follower:n2", "leader:n2", "follower:n2"), "n2"},
		{"split", mk("follower:n2", "leader:n2", "follower:n1"), ""},
		{"leader does not say so", mk("follower:n2", "follower:n2", "follower:n2"), ""},
		{"candidate", mk("candidate:n2", "leader:n2", "follower:n2"), ""},
		{"node down", mk("down:n2", "leader:n2", "follower:n2"), ""},
		{"no leader", mk("follower:", "follower:", "follower:"), ""},
		{"missing node", map[string]Sample{"n1": {OK: true, Status: Status{State: "leader", Leader: StatusPeer{ID: "n1"}}}}, ""},
	} {
		got, ok := StableLeader(ids, tc.latest)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("%s: StableLeader = %q, %v; want %q", tc.name, got, ok, tc.want)
		}
	}
}

func cut(s string) (string, string, bool) {
	for i := range s {
		if s[i] == ':' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}
