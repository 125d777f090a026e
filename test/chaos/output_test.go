package chaos

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWriteReport(t *testing.T) {
	s := cleanHistory()
	s.Events = append(s.Events, ev("n3", 3600, 3700, RoleLeader, 3, 3, "n3", true))
	s.sort()
	vs := CheckAll(s, DefaultCheckOptions())
	var b bytes.Buffer
	info := ReportInfo{Config: DefaultConfig(), Began: time.Unix(0, 0), Commit: "abc123", Command: "scripts/chaos.sh quick"}
	if err := WriteReport(&b, s, vs, info); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"FAIL: ", "| kill | leader | 1 | 200 / 200 / 200 | 260 / 260 / 260 | 250 / 250 | 0 | 1 |",
		CheckOneLeaderPerTerm, "abc123", "scripts/chaos.sh quick", "| quiet | none | 1 | – | – |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	if err := WriteReport(&b, cleanHistory(), nil, info); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "PASS: no violation") {
		t.Errorf("clean report does not pass:\n%s", b.String())
	}
}

func TestWriteTimelineIsWellFormedSVG(t *testing.T) {
	var b bytes.Buffer
	s := cleanHistory()
	if err := WriteTimeline(&b, s); err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(bytes.NewReader(b.Bytes()))
	rects := 0
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "rect" {
			rects++
		}
	}
	out := b.String()
	for _, want := range []string{laneColor("leader"), laneColor("down"), laneColor("candidate"), "kill/leader#1", "+260ms"} {
		if !strings.Contains(out, want) {
			t.Errorf("timeline lacks %q", want)
		}
	}
	if rects < 20 {
		t.Errorf("only %d rects", rects)
	}
}

func TestSnapshotJSONRoundTrip(t *testing.T) {
	s := cleanHistory()
	path := filepath.Join(t.TempDir(), "h.json")
	if err := s.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	got, err := ReadSnapshot(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Events) != len(s.Events) || len(got.Faults) != len(s.Faults) || got.Events[5] != s.Events[5] {
		t.Fatalf("round trip lost data")
	}
}

func TestHistoryObserveMergesRepeats(t *testing.T) {
	h := NewHistory([]string{"n1"})
	e := Event{Node: "n1", Source: SourceStatus, Role: RoleFollower, Term: 2}
	for i, at := range []int{10, 30, 50} {
		e.At = msd(at)
		h.Observe(e)
		if got := len(h.Snapshot().Events); got != 1 {
			t.Fatalf("after %d identical observations: %d events", i+1, got)
		}
	}
	e.At, e.Term = msd(70), 3
	h.Observe(e)
	// a watch event in between does not break the status run
	h.Observe(Event{Node: "n1", Source: SourceWatch, At: msd(75), Term: 3})
	e.At = msd(90)
	h.Observe(e)
	s := h.Snapshot()
	if len(s.Events) != 3 || s.Events[0].Until != msd(50) || s.Events[1].Until != msd(90) {
		t.Fatalf("events %+v", s.Events)
	}
}

func TestConfigFromEnv(t *testing.T) {
	env := map[string]string{"CHAOS_QUICK": "1", "CHAOS_RUNS": "7", "CHAOS_SEED": "42", "CHAOS_NODES": "3",
		"CHAOS_HEARTBEAT_TIMEOUT": "500ms"}
	c, err := ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if !c.Quick || c.Runs != 1 || c.Seed != 42 || c.Nodes != 3 || c.HeartbeatTimeout != 500*time.Millisecond {
		t.Fatalf("config %+v", c)
	}
	for _, bad := range []map[string]string{
		{"CHAOS_NODES": "4"}, {"CHAOS_RUNS": "x"}, {"CHAOS_RUNS": "0"}, {"CHAOS_CRASH_BOUND": "-1s"},
		{"CHAOS_PORT_PREFIX": "7"}, {"CHAOS_SEED": "z"},
	} {
		if _, err := ConfigFromEnv(func(k string) string { return bad[k] }); !errors.Is(err, ErrConfig) {
			t.Errorf("%v: err %v, want ErrConfig", bad, err)
		}
	}
	if got := DefaultConfig().NodeNames(); len(got) != 5 || got[4] != "n5" {
		t.Fatalf("names %v", got)
	}
}
