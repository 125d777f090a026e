package chaos

import (
	"testing"
	"time"
)

func TestMeasureKillLeader(t *testing.T) {
	s := cleanHistory()
	m := Measure(s, 1)
	want := Measurement{Fault: 1, Kind: KindKill, Target: "leader", Run: 1, Ref: msd(1000),
		Detected: true, Detection: msd(200), Elected: true, NewLeader: msd(260), NoLeader: msd(250), TermChanges: 1}
	if m.Ref != want.Ref || m.Detected != want.Detected || m.Detection != want.Detection || m.Elected != want.Elected ||
		m.NewLeader != want.NewLeader || m.NoLeader != want.NoLeader || m.TermChanges != want.TermChanges {
		t.Fatalf("got %+v\nwant %+v", m, want)
	}
}

func TestMeasureQuietWindowHasNoElection(t *testing.T) {
	s := cleanHistory()
	m := Measure(s, 0)
	if m.Detected || m.Elected || m.TermChanges != 0 {
		t.Fatalf("quiet window measured as an election: %+v", m)
	}
}

func TestMeasureFromRestart(t *testing.T) {
	s := cleanHistory()
	// the same history, read as a kill-all whose restart is at 1.1 s
	s.Faults[1].Kind = KindKillAll
	s.Faults[1].End = msd(1100)
	m := Measure(s, 1)
	if m.Ref != msd(1100) {
		t.Fatalf("ref %s, want the restart", m.Ref)
	}
	// n1 learns token 3 at 3.05 s: every node counts after a full restart
	if !m.Elected || m.NewLeader != msd(1950) {
		t.Fatalf("got %+v", m)
	}
}

func TestMeasureFromContainersRunning(t *testing.T) {
	s := cleanHistory()
	s.Faults[1].Kind = KindKillMajority
	s.Faults[1].End = msd(1100)
	s.Faults[1].Restarted = msd(1200) // docker start returned
	m := Measure(s, 1)
	// n2 has led since 1.25 s, n3 knows at 1.26 s, n1 at 3.05 s
	if m.Ref != msd(1200) || !m.Elected || m.NewLeader != msd(1850) {
		t.Fatalf("got %+v", m)
	}
}

func TestPercentile(t *testing.T) {
	tests := []struct {
		in   []int
		p    float64
		want int
		ok   bool
	}{
		{nil, 50, 0, false},
		{[]int{7}, 99, 7, true},
		{[]int{5, 1, 3, 2, 4}, 50, 3, true},
		{[]int{5, 1, 3, 2, 4}, 99, 5, true},
		{[]int{5, 1, 3, 2, 4}, 100, 5, true},
		{[]int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 90, 9, true},
	}
	for _, tt := range tests {
		var ds []time.Duration
		for _, v := range tt.in {
			ds = append(ds, msd(v))
		}
		got, ok := Percentile(ds, tt.p)
		if ok != tt.ok || got != msd(tt.want) {
			t.Errorf("Percentile(%v, %v) = %v, %v; want %v, %v", tt.in, tt.p, got, ok, msd(tt.want), tt.ok)
		}
	}
}

func TestSummarize(t *testing.T) {
	s := cleanHistory()
	s.Events = append(s.Events, ev("n3", 3600, 3700, RoleLeader, 3, 3, "n3", true))
	s.sort()
	rows := Summarize(s, CheckAll(s, DefaultCheckOptions()))
	if len(rows) != 2 {
		t.Fatalf("rows %+v", rows)
	}
	k := rows[1]
	if k.Kind != KindKill || k.Runs != 1 || len(k.NewLeader) != 1 || k.Violations == 0 || k.TermChanges != 1 {
		t.Fatalf("kill row %+v", k)
	}
}
