package bench

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestReassignMoment(t *testing.T) {
	kill := time.Unix(1000, 0)
	at := func(ms int) time.Time { return kill.Add(time.Duration(ms) * time.Millisecond) }
	s := func(node string, sentMs, atMs int, ok bool, owned int) OwnedSample {
		return OwnedSample{Node: node, Sent: at(sentMs), At: at(atMs), OK: ok, VictimOwned: owned}
	}
	survivors := []string{"n1", "n2", "n3"}
	for _, tc := range []struct {
		name    string
		samples []OwnedSample
		want    int // ms after the kill; -1: not reassigned
	}{
		{"all zero at 300, last survivor decides", []OwnedSample{
			s("n1", 5, 10, true, 2000), s("n2", 5, 11, true, 2000), s("n3", 5, 12, true, 2000),
			s("n1", 200, 210, true, 0), s("n2", 200, 215, true, 0), s("n3", 290, 300, true, 0),
		}, 300},
		{"out of order input is sorted", []OwnedSample{
			s("n3", 290, 300, true, 0), s("n2", 200, 215, true, 0), s("n1", 200, 210, true, 0),
		}, 300},
		{"a poll sent before the kill says nothing", []OwnedSample{
			s("n1", -5, 1, true, 0), s("n2", -5, 2, true, 0), s("n3", -5, 3, true, 0),
			s("n1", 100, 101, true, 0), s("n2", 100, 102, true, 0), s("n3", 100, 103, true, 0),
		}, 103},
		{"a failed poll keeps the earlier answer", []OwnedSample{
			s("n1", 10, 20, true, 0), s("n2", 10, 20, true, 0), s("n3", 10, 20, true, 5),
			s("n3", 30, 280, false, 0), s("n3", 300, 310, true, 0),
		}, 310},
		{"a survivor that went back to nonzero holds the moment", []OwnedSample{
			s("n1", 10, 20, true, 0), s("n2", 10, 20, true, 0), s("n3", 10, 20, true, 3),
			s("n1", 30, 40, true, 1), s("n3", 30, 40, true, 0), s("n1", 50, 60, true, 0),
		}, 60},
		{"planted: one survivor never polled", []OwnedSample{
			s("n1", 10, 20, true, 0), s("n2", 10, 20, true, 0), s("n4", 10, 20, true, 0),
		}, -1},
		{"planted: victim still owns on one survivor", []OwnedSample{
			s("n1", 10, 20, true, 0), s("n2", 10, 20, true, 0), s("n3", 10, 20, true, 1),
		}, -1},
	} {
		moment, d, err := ReassignMoment(kill, survivors, tc.samples)
		if tc.want < 0 {
			if !errors.Is(err, ErrNotReassigned) {
				t.Errorf("%s: got %v %v, want ErrNotReassigned", tc.name, d, err)
			}
			continue
		}
		if err != nil || d != time.Duration(tc.want)*time.Millisecond || !moment.Equal(at(tc.want)) {
			t.Errorf("%s: got %v at %v (%v), want %d ms", tc.name, d, moment, err, tc.want)
		}
	}
	if _, _, err := ReassignMoment(kill, nil, nil); !errors.Is(err, ErrNotReassigned) {
		t.Errorf("no survivors: %v", err)
	}
}

func TestCheckMoves(t *testing.T) {
	before := map[string]string{"a": "n1", "b": "n2", "c": "n3", "d": "n3", "e": "n4"}
	clone := func(change map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range before {
			m[k] = v
		}
		for k, v := range change {
			if v == "-" {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
		return m
	}
	for _, tc := range []struct {
		name  string
		after map[string]string
		exact bool
		check func(MoveCheck) bool
	}{
		{"exact: only n3's two moved", clone(map[string]string{"c": "n1", "d": "n4"}), true,
			func(c MoveCheck) bool { return c.VictimHad == 2 && c.Moved == 2 }},
		{"planted: an innocent resource moved too", clone(map[string]string{"c": "n1", "d": "n4", "a": "n2"}), false,
			func(c MoveCheck) bool {
				return c.WronglyMoved == 1 && c.Moved == 3 && strings.Contains(c.Examples[0], "a moved n1 -> n2")
			}},
		{"planted: one stayed on the dead node", clone(map[string]string{"c": "n1"}), false,
			func(c MoveCheck) bool { return c.StillVictim == 1 && c.Moved == 1 }},
		{"planted: one left unassigned", clone(map[string]string{"c": "n1", "d": ""}), false,
			func(c MoveCheck) bool { return c.Unassigned == 1 }},
		{"planted: a resource vanished", clone(map[string]string{"c": "n1", "d": "n4", "e": "-"}), false,
			func(c MoveCheck) bool { return c.Missing == 1 }},
		{"planted: a resource appeared", clone(map[string]string{"c": "n1", "d": "n4", "z": "n2"}), false,
			func(c MoveCheck) bool { return c.Added == 1 }},
		{"nothing moved", clone(nil), false,
			func(c MoveCheck) bool { return c.StillVictim == 2 }},
	} {
		c := CheckMoves("n3", before, tc.after)
		if c.Exact != tc.exact || !tc.check(c) {
			t.Errorf("%s: %+v, want exact=%v", tc.name, c, tc.exact)
		}
	}
	if c := CheckMoves("n5", before, clone(nil)); c.Exact || c.VictimHad != 0 {
		t.Errorf("a victim that owned nothing cannot prove an exact move: %+v", c)
	}
}

func TestFalseDeathCounter(t *testing.T) {
	var f FalseDeathCounter
	all := func(st5 string) map[string]string {
		return map[string]string{"n1": "alive", "n2": "alive", "n3": "alive", "n4": "alive", "n5": st5}
	}
	f.Observe("n1", all("alive"))
	f.Observe("n2", all("alive"))
	if f.Count != 0 {
		t.Fatalf("healthy: %d", f.Count)
	}
	f.Observe("n1", all("suspect")) // planted: n1 suspects n5
	f.Observe("n1", all("dead"))    // the same episode
	f.Observe("n2", all("suspect")) // another observer sees it too
	f.Observe("n1", all("alive"))
	f.Observe("n1", all("suspect")) // a second episode
	if f.Count != 3 || len(f.Events) != 3 || f.Events[0] != "n1 sees n5 suspect" {
		t.Errorf("count %d events %v, want 3", f.Count, f.Events)
	}
	var g FalseDeathCounter
	g.Observe("n1", map[string]string{"n2": "dead", "n3": "", "n4": "left"})
	if g.Count != 1 {
		t.Errorf("first sight of a dead member counts, not-yet-registered and left do not: %d", g.Count)
	}
}
