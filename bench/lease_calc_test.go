package bench

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// at is a time t0+ms milliseconds, on a fixed base.
var t0 = time.Unix(1_700_000_000, 0)

func at(msec int) time.Time { return t0.Add(time.Duration(msec) * time.Millisecond) }

// run builds a WorkInterval from start to end in ms after t0 (end < 0: still running).
func run(app, key string, start, end int) WorkInterval {
	w := WorkInterval{App: app, Key: key, Start: at(start)}
	if end >= 0 {
		w.End = at(end)
	}
	return w
}

func TestComputeHandover(t *testing.T) {
	const ms = time.Millisecond
	for _, tc := range []struct {
		name    string
		runs    []WorkInterval
		key     string
		pause   int // ms
		asOf    int // ms
		want    Handover
		overlap bool
		err     error
	}{
		{
			name: "old cancelled, then new starts: positive gap",
			runs: []WorkInterval{run("n1", "r1", 0, 300), run("n2", "r1", 800, -1)},
			key:  "r1", pause: 100, asOf: 900,
			want: Handover{Key: "r1", From: "n1", To: "n2", Gap: 500 * ms, ToCancel: 200 * ms, ToStart: 700 * ms},
		},
		{
			name: "new starts before old is cancelled: negative gap",
			runs: []WorkInterval{run("n1", "r1", 0, 900), run("n2", "r1", 800, -1)},
			key:  "r1", pause: 100, asOf: 1000,
			want:    Handover{Key: "r1", From: "n1", To: "n2", Gap: -100 * ms, ToCancel: 800 * ms, ToStart: 700 * ms},
			overlap: true,
		},
		{
			name: "new starts the instant old ends: zero gap is an overlap",
			runs: []WorkInterval{run("n1", LeaderKey, 0, 800), run("n2", LeaderKey, 800, -1)},
			key:  LeaderKey, pause: 100, asOf: 1000,
			want:    Handover{Key: LeaderKey, From: "n1", To: "n2", Gap: 0, ToCancel: 700 * ms, ToStart: 700 * ms},
			overlap: true,
		},
		{
			name: "old still running: counted until asOf, an overlap",
			runs: []WorkInterval{run("n1", "r1", 0, -1), run("n3", "r1", 800, -1)},
			key:  "r1", pause: 100, asOf: 1000,
			want:    Handover{Key: "r1", From: "n1", To: "n3", OldRunning: true, Gap: -200 * ms, ToCancel: 900 * ms, ToStart: 700 * ms},
			overlap: true,
		},
		{
			name: "history, other keys, the victim's own restart and a later mover are ignored",
			runs: []WorkInterval{
				run("n2", "r1", -500, -400), // an earlier holder, long before
				run("n1", "r1", -300, 250),  // the old run, over the pause
				run("n3", "r2", 260, -1),    // another key
				run("n1", "r1", 270, 280),   // the victim restarting it (same node: not a hand-over)
				run("n4", "r1", 900, -1),    // a later one
				run("n2", "r1", 600, 700),   // the first mover, listed out of order
			},
			key: "r1", pause: 100, asOf: 1000,
			want: Handover{Key: "r1", From: "n1", To: "n2", Gap: 350 * ms, ToCancel: 150 * ms, ToStart: 500 * ms},
		},
		{
			name: "victim had stopped before the pause",
			runs: []WorkInterval{run("n1", "r1", 0, 50), run("n2", "r1", 800, -1)},
			key:  "r1", pause: 100, asOf: 1000,
			err: ErrNoOldWork,
		},
		{
			name: "victim never ran it",
			runs: []WorkInterval{run("n2", "r1", 0, -1)},
			key:  "r1", pause: 100, asOf: 1000,
			err: ErrNoOldWork,
		},
		{
			name: "nobody has taken it over yet",
			runs: []WorkInterval{run("n1", "r1", 0, 300), run("n1", "r2", 0, 300), run("n2", "r2", 500, -1)},
			key:  "r1", pause: 100, asOf: 1000,
			err: ErrNoNewWork,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ComputeHandover(tc.runs, tc.key, "n1", at(tc.pause), at(tc.asOf))
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
			if got.Overlap() != tc.overlap {
				t.Errorf("Overlap() = %v, want %v", got.Overlap(), tc.overlap)
			}
		})
	}
}

func TestOverlaps(t *testing.T) {
	for _, tc := range []struct {
		name string
		runs []WorkInterval
		want []string // "key:appA,appB"
	}{
		{"one holder after another", []WorkInterval{
			run("n1", LeaderKey, 0, 100), run("n2", LeaderKey, 150, 300), run("n1", LeaderKey, 400, -1),
			run("n2", "r1", 0, 100), run("n3", "r1", 101, -1),
		}, nil},
		{"planted: two leaders at once", []WorkInterval{
			run("n1", LeaderKey, 0, 200), run("n2", LeaderKey, 150, 300),
		}, []string{LeaderKey + ":n1,n2"}},
		{"planted: touching runs", []WorkInterval{run("n1", "r1", 0, 100), run("n2", "r1", 100, 200)}, []string{"r1:n1,n2"}},
		{"planted: a run still going overlaps every later one", []WorkInterval{
			run("n1", "r1", 0, -1), run("n2", "r1", 100, 200), run("n3", "r1", 300, 400),
			run("n2", "r2", 0, -1), run("n3", "r3", 5, -1),
		}, []string{"r1:n1,n2", "r1:n1,n3"}},
		{"planted: one node twice at once", []WorkInterval{run("n1", "r1", 0, 100), run("n1", "r1", 50, 60)}, []string{"r1:n1,n1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, o := range Overlaps(tc.runs, at(1000)) {
				got = append(got, o.A.Key+":"+o.A.App+","+o.B.App)
				if o.For < 0 {
					t.Errorf("negative overlap length: %v", o)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestLeaseSettled(t *testing.T) {
	owners := map[string]string{"r1": "n2", "r2": "n3", "r3": ""}
	good := []WorkInterval{
		run("n2", LeaderKey, 0, 100), // ended: ignored
		run("n1", LeaderKey, 100, -1),
		run("n2", "r1", 0, -1),
		run("n3", "r2", 0, -1),
	}
	if ok, why := LeaseSettled(good, "n1", owners, at(500)); !ok {
		t.Fatalf("settled cluster: %s", why)
	}
	for _, tc := range []struct {
		name   string
		runs   []WorkInterval
		leader string
		want   string
	}{
		{"leader work on a follower", good, "n2", LeaderKey},
		{"resource on two nodes", append(slices.Clone(good), run("n4", "r2", 400, -1)), "n1", "r2"},
		{"owned resource not worked on", good[:3], "n1", "r2"},
		{"unowned resource worked on", append(slices.Clone(good), run("n2", "r3", 0, -1)), "n1", "r3"},
		{"unknown key", append(slices.Clone(good), run("n2", "zz", 0, -1)), "n1", "zz"},
		{"not yet started", append(slices.Clone(good[:3]), run("n3", "r2", 600, -1)), "n1", "r2"},
	} {
		if ok, why := LeaseSettled(tc.runs, tc.leader, owners, at(500)); ok || !strings.Contains(why, tc.want) {
			t.Errorf("%s: ok=%v why=%q, want not settled on %s", tc.name, ok, why, tc.want)
		}
	}
}

func TestOwnerVictim(t *testing.T) {
	ids := []string{"n1", "n2", "n3", "n4"}
	owners := map[string]string{"r3": "n2", "r1": "n2", "r2": "n1", "r4": "n4", "r5": ""}
	var got []string
	for k := 1; k <= 3; k++ {
		v, keys := ownerVictim(ids, "n1", owners, k)
		got = append(got, v+strings.Join(keys, "+"))
	}
	// n1 leads, n3 owns nothing: n2 and n4 in turn.
	if want := []string{"n2r1+r3", "n4r4", "n2r1+r3"}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if v, _ := ownerVictim(ids, "n1", map[string]string{"r1": "n1"}, 1); v != "" {
		t.Errorf("only the leader owns: victim %q", v)
	}
}

func TestPauseSetSummaryAndViolations(t *testing.T) {
	const ms = time.Millisecond
	l := &LeaseResult{
		Leader: PauseSet{Pauses: []PauseRun{
			{Victim: "n1", Handovers: []Handover{{Key: LeaderKey, Gap: 400 * ms, ToCancel: 180 * ms, ToStart: 580 * ms}}},
			{Victim: "n2", Error: "not handed over"},
		}},
		Owner: PauseSet{Pauses: []PauseRun{
			{Victim: "n3", Handovers: []Handover{{Key: "r1", Gap: 300 * ms}, {Key: "r2", Gap: 200 * ms}}},
		}},
	}
	l.Leader.summarize()
	l.Owner.summarize()
	if s := l.Leader; s.Handovers != 1 || s.Failed != 1 || s.Gap.MinMs != 400 || s.ToStart.P50Ms != 580 || s.NonPositive != 0 {
		t.Errorf("leader set: %+v", s)
	}
	if s := l.Owner; s.Handovers != 2 || s.Gap.MinMs != 200 || s.Gap.MaxMs != 300 {
		t.Errorf("owner set: %+v", s)
	}
	if v := l.Violations(); len(v) != 0 {
		t.Errorf("clean run: %v", v)
	}
	l.Owner.Pauses[0].Handovers[1].Gap = -5 * ms // planted
	l.Owner.summarize()
	if v := l.Violations(); len(v) != 1 || !strings.Contains(v[0], "r2") || l.Owner.NonPositive != 1 || l.Owner.Gap.MinMs != -5 {
		t.Errorf("planted negative gap: %v, %+v", v, l.Owner)
	}
}

func TestWorkLog(t *testing.T) {
	l := NewWorkLog()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 50 {
				l.End(l.Begin("n1", "r"+string(rune('a'+i)), uint64(i)))
			}
		})
	}
	wg.Wait()
	runs := l.Snapshot()
	if len(runs) != 400 {
		t.Fatalf("%d runs, want 400", len(runs))
	}
	for _, w := range runs {
		if w.End.IsZero() || w.End.Before(w.Start) {
			t.Fatalf("run %+v", w)
		}
	}
	if ov := Overlaps(runs, time.Now()); len(ov) != 0 {
		t.Errorf("sequential runs overlap: %v", ov[0])
	}
	select {
	case <-l.Changed():
	default:
		t.Error("no change token after changes")
	}
}

func TestRestarts(t *testing.T) {
	const ms = time.Millisecond
	runs := []WorkInterval{
		{App: "n1", Key: "r1", Fence: 3, Start: at(0), End: at(100)},
		{App: "n1", Key: "r1", Fence: 3, Start: at(130), End: at(200)}, // lapsed 30 ms, same epoch: a restart
		{App: "n1", Key: "r1", Fence: 4, Start: at(210), End: at(300)}, // a new epoch: not a restart
		{App: "n2", Key: "r1", Fence: 4, Start: at(400), End: at(500)}, // moved: not a restart
		{App: "n2", Key: "r1", Fence: 4, Start: at(505), End: time.Time{}},
		{App: "n1", Key: LeaderKey, Fence: 7, Start: at(0), End: at(50)},
		{App: "n1", Key: LeaderKey, Fence: 7, Start: at(60), End: time.Time{}},
		{App: "n3", Key: "r2", Fence: 1, Start: at(0), End: time.Time{}},
	}
	got := Restarts(runs)
	if want := []time.Duration{5 * ms, 10 * ms, 30 * ms}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if got := Restarts(nil); len(got) != 0 {
		t.Errorf("no runs: %v", got)
	}
}
