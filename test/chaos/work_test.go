package chaos

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func span(node, kind, res string, token uint64, start, end int) Work {
	return Work{Node: node, Kind: kind, Resource: res, Token: token, Start: msd(start), End: msd(end)}
}

func openRun(node, kind, res string, token uint64, start int) Work {
	return Work{Node: node, Kind: kind, Resource: res, Token: token, Start: msd(start), Open: true}
}

// cleanWork is an application beside cleanHistory's nodes: n1's leader job
// and r1 stop when n1 is killed (1.0s); n2 leads from 1.3s, n3 takes r1; n2
// renews a lapsed lease on r2 (same node: no handover); n1, back at 3s,
// takes r3 from n3.
func cleanWork() Snapshot {
	s := cleanHistory()
	s.Work = []Work{
		span("n1", WorkLeader, "", 2, 100, 1005),
		openRun("n2", WorkLeader, "", 3, 1300),
		span("n1", WorkResource, "r1", 5, 100, 1005),
		openRun("n3", WorkResource, "r1", 9, 1400),
		span("n2", WorkResource, "r2", 6, 100, 700),
		openRun("n2", WorkResource, "r2", 6, 750),
		span("n3", WorkResource, "r3", 7, 100, 2000),
		openRun("n1", WorkResource, "r3", 11, 3100),
		// another resource at the same time as r1 on other nodes: fine
		span("n2", WorkResource, "r4", 8, 100, 3000),
	}
	return s
}

func TestExclusiveWorkCleanHistoryPasses(t *testing.T) {
	s := cleanWork()
	if vs := CheckAll(s, DefaultCheckOptions()); len(vs) != 0 {
		t.Fatalf("clean history has violations: %v", vs)
	}
	var got []string
	for _, h := range Handovers(s) {
		got = append(got, fmt.Sprintf("%s %s %s->%s %s %v", h.Kind, h.Resource, h.From, h.To, ms(h.Gap), h.Interrupted))
	}
	want := "resource r2 n2->n2 50 true|leader  n1->n2 295 false|resource r1 n1->n3 395 false|resource r3 n3->n1 1100 false"
	if strings.Join(got, "|") != want {
		t.Fatalf("handovers %q, want %q", strings.Join(got, "|"), want)
	}
}

func TestExclusiveWorkCatchesPlantedOverlap(t *testing.T) {
	tests := []struct {
		name  string
		plant Work
		want  string // substring of the violation message; "" = no violation
	}{
		{"second leader job, same token", span("n3", WorkLeader, "", 2, 900, 1100),
			"leader job held by n1 (token 2, 0.100s..1.005s) and n3 (token 2, 0.900s..1.100s) at once for 0.105s"},
		{"second leader job, newer token, still running", openRun("n3", WorkLeader, "", 4, 3500),
			"leader job held by n2 (token 3, 1.300s..still running) and n3 (token 4, 3.500s..still running) at once for 0.500s"},
		{"resource taken before the old owner stopped", span("n3", WorkResource, "r1", 9, 1000, 1300),
			"resource r1 held by n1 (token 5, 0.100s..1.005s) and n3 (token 9, 1.000s..1.300s) at once for 0.005s"},
		{"a short overlap inside a long run", span("n5", WorkResource, "r4", 12, 2000, 2001),
			"resource r4 held by n2 (token 8, 0.100s..3.000s) and n5 (token 12, 2.000s..2.001s) at once for 0.001s"},
		{"starting exactly at the cancellation is no overlap", span("n3", WorkResource, "r2", 7, 700, 750), ""},
		{"the same node twice is no overlap", span("n2", WorkResource, "r2", 6, 650, 800), ""},
		{"another resource is no overlap", span("n3", WorkResource, "r9", 1, 100, 3000), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := cleanWork()
			s.Work = append(s.Work, tc.plant)
			vs := CheckAll(s, DefaultCheckOptions())
			if tc.want == "" {
				if len(vs) != 0 {
					t.Fatalf("violations %v, want none", vs)
				}
				return
			}
			if len(vs) != 1 || vs[0].Check != CheckOneHolder || !strings.Contains(vs[0].Msg, tc.want) {
				t.Fatalf("violations %v, want one %s with %q", vs, CheckOneHolder, tc.want)
			}
			if vs[0].At != tc.plant.Start || vs[0].Fault != s.faultAt(tc.plant.Start) {
				t.Fatalf("violation at %v in fault %d, want %v in %d", vs[0].At, vs[0].Fault, tc.plant.Start, s.faultAt(tc.plant.Start))
			}
		})
	}
}

func TestReportShowsApplicationWork(t *testing.T) {
	info := ReportInfo{Config: DefaultConfig(), Began: time.Unix(0, 0)}
	var b bytes.Buffer
	if err := WriteReport(&b, cleanWork(), nil, info); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"PASS: no violation", "## Application work",
		"| 0 | quiet/none#1 | n1(2) | 0 | – | 0 | 0 | – | 1 | 0 |",
		"| 1 | kill/leader#1 | n1(2) → n2(3) | 1 | 295 (n1→n2) | 0 | 2 | 395 (r1 n1→n3) | 0 | 0 |",
		"Whole run: 1 leader handovers, min gap 295 (n1→n2), 0 leader job interruptions; 2 resource handovers, min gap 395 (r1 n1→n3), 1 resource interruptions.",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	s := cleanWork()
	s.Work = append(s.Work, span("n3", WorkLeader, "", 2, 1000, 1100))
	b.Reset()
	if err := WriteReport(&b, s, CheckAll(s, DefaultCheckOptions()), info); err != nil {
		t.Fatal(err)
	}
	out = b.String()
	for _, want := range []string{"FAIL: 1 violation(s)", "`" + CheckOneHolder + "` [kill/leader#1]",
		"| 1 | kill/leader#1 | n1(2) → n3(2) → n2(3) | 2 | -5 (n1→n3) | 0 | 2 | 395 (r1 n1→n3) | 0 | 1 |",
		"| kill | leader | 1 |"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

func TestHistoryRecordsWork(t *testing.T) {
	h := NewHistory([]string{"n1", "n2"})
	i := h.StartWork(Work{Node: "n1", Kind: WorkLeader, Token: 2, Start: msd(10)})
	h.StartWork(Work{Node: "n2", Kind: WorkResource, Resource: "r1", Token: 4, Start: msd(20)})
	h.EndWork(i, msd(30))
	s := h.Snapshot()
	if len(s.Work) != 2 || s.Work[0].Open || s.Work[0].End != msd(30) || !s.Work[1].Open {
		t.Fatalf("work %+v", s.Work)
	}
	path := filepath.Join(t.TempDir(), "h.json")
	if err := s.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	got, err := ReadSnapshot(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Work) != 2 || got.Work[0] != s.Work[0] || got.Work[1] != s.Work[1] {
		t.Fatalf("round trip: %+v, want %+v", got.Work, s.Work)
	}
}

func TestConfigFromEnvWorkload(t *testing.T) {
	env := map[string]string{"CHAOS_FAULTS": "pause-long,kill/leader", "CHAOS_UNSAFE_NO_LEASE_TIMER": "1"}
	c, err := ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if !c.UnsafeNoLeaseTimer || strings.Join(c.Faults, "|") != "pause-long|kill/leader" {
		t.Fatalf("config %+v", c)
	}
	if c, _ := ConfigFromEnv(func(string) string { return "" }); c.UnsafeNoLeaseTimer || c.Faults != nil {
		t.Fatalf("default config %+v", c)
	}
}

func TestWorkSummaryRowBeforeTheFirstFault(t *testing.T) {
	s := cleanWork()
	if rows := WorkSummary(s, nil); len(rows) != len(s.Faults) || rows[0].Fault != 0 {
		t.Fatalf("rows %+v, want one per fault", rows)
	}
	s.Faults[0].Start = msd(200) // the runs at 100 ms began before it
	rows := WorkSummary(s, nil)
	if len(rows) != len(s.Faults)+1 || rows[0].Fault != -1 || strings.Join(rows[0].Leaders, ",") != "n1(2)" {
		t.Fatalf("rows %+v, want a row -1 first", rows)
	}
}
