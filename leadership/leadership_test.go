package leadership

import (
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/membership"
	mpb "github.com/heartbeat-sidecar/heartbeat/proto/membershippb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// stateOf builds a real membership state from commands (applied in turn,
// as raft would).
func stateOf(t *testing.T, cmds ...*mpb.Command) *membership.FSM {
	t.Helper()
	f, err := membership.NewFSM(membership.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range cmds {
		data, err := membership.EncodeCommand(c)
		if err != nil {
			t.Fatal(err)
		}
		if out := f.ApplyCommand(uint64(i+1), data); out != nil {
			if err, ok := out.(error); ok {
				t.Fatalf("command %d: %v", i, err)
			}
		}
	}
	return f
}

func member(id string, prio uint32) *mpb.Command {
	return membership.UpsertMemberCmd(membership.MemberSpec{ID: id, PeerAddr: "addr-" + id, Voter: true, LeaderPriority: &prio})
}

// TestCanLead: the membership state's verdict, and the sentinel each
// verdict wraps for election.TransferLeadership.
func TestCanLead(t *testing.T) {
	f := stateOf(t, member("ok", 0), member("drains", 0), membership.SetDrainCmd("drains", true),
		member("sick", 0), membership.SetAppHealthCmd("sick", false),
		member("dead", 0), membership.MarkDeadCmd("dead"),
		member("left", 0), membership.MarkLeftCmd("left"),
		member("suspect", 0), membership.MarkSuspectCmd("suspect"))
	can := CanLead(f)
	for _, tc := range []struct {
		id       string
		fit      bool
		sentinel error // nil: a plain reason
	}{
		{"ok", true, nil},
		{"nobody", false, election.ErrUnknownMember},
		{"dead", false, election.ErrMemberGone},
		{"left", false, election.ErrMemberGone},
		{"drains", false, nil},
		{"sick", false, nil},
		{"suspect", false, nil},
	} {
		err := can(tc.id)
		switch {
		case tc.fit && err != nil:
			t.Errorf("%s: %v, want fit", tc.id, err)
		case !tc.fit && err == nil:
			t.Errorf("%s: fit, want refused", tc.id)
		case tc.sentinel != nil && !errors.Is(err, tc.sentinel):
			t.Errorf("%s: %v, want %v", tc.id, err, tc.sentinel)
		case tc.sentinel == nil && (errors.Is(err, election.ErrMemberGone) || errors.Is(err, election.ErrUnknownMember)):
			t.Errorf("%s: %v counts as gone or unknown", tc.id, err)
		}
	}
}

// TestPick: which voter of higher priority the leader hands leadership to,
// and when.
func TestPick(t *testing.T) {
	const term = 7
	now := time.Now()
	cfg := Config{SelfID: "n1", Holdoff: time.Second, AckFresh: time.Second}
	voters := func(ids ...string) []election.Member {
		var ms []election.Member
		for _, id := range ids {
			ms = append(ms, election.Member{ID: id, Address: "addr-" + id, Voter: true})
		}
		return ms
	}
	fresh := func(ids ...string) map[string]Reply {
		out := map[string]Reply{}
		for _, id := range ids {
			out["addr-"+id] = Reply{Term: term, RepliedAt: now.Add(-100 * time.Millisecond)}
		}
		return out
	}
	long := now.Add(-2 * time.Second) // eligible since before the holdoff
	for _, tc := range []struct {
		name    string
		cmds    []*mpb.Command
		ms      []election.Member
		replies map[string]Reply
		since   map[string]time.Time
		want    string // "" none
	}{
		{name: "equal priorities never move leadership",
			cmds: []*mpb.Command{member("n1", 5), member("n2", 5)}, ms: voters("n1", "n2"), replies: fresh("n2"),
			since: map[string]time.Time{"n2": long}},
		{name: "higher priority, held long enough", want: "n2",
			cmds: []*mpb.Command{member("n1", 1), member("n2", 5)}, ms: voters("n1", "n2"), replies: fresh("n2"),
			since: map[string]time.Time{"n2": long}},
		{name: "higher priority, not yet for the holdoff",
			cmds: []*mpb.Command{member("n1", 1), member("n2", 5)}, ms: voters("n1", "n2"), replies: fresh("n2")},
		{name: "highest priority first, then lowest id", want: "n3",
			cmds: []*mpb.Command{member("n1", 1), member("n2", 5), member("n3", 9), member("n4", 9)},
			ms:   voters("n1", "n2", "n3", "n4"), replies: fresh("n2", "n3", "n4"),
			since: map[string]time.Time{"n2": long, "n3": long, "n4": long}},
		{name: "a non-voter is never picked",
			cmds: []*mpb.Command{member("n1", 1), member("n2", 5)},
			ms:   []election.Member{{ID: "n1", Voter: true}, {ID: "n2", Address: "addr-n2"}}, replies: fresh("n2"),
			since: map[string]time.Time{"n2": long}},
		{name: "draining is not eligible",
			cmds: []*mpb.Command{member("n1", 1), member("n2", 5), membership.SetDrainCmd("n2", true)},
			ms:   voters("n1", "n2"), replies: fresh("n2"), since: map[string]time.Time{"n2": long}},
		{name: "application unhealthy is not eligible",
			cmds: []*mpb.Command{member("n1", 1), member("n2", 5), membership.SetAppHealthCmd("n2", false)},
			ms:   voters("n1", "n2"), replies: fresh("n2"), since: map[string]time.Time{"n2": long}},
		{name: "a reply of another term does not count",
			cmds: []*mpb.Command{member("n1", 1), member("n2", 5)}, ms: voters("n1", "n2"),
			replies: map[string]Reply{"addr-n2": {Term: term - 1, RepliedAt: now}}, since: map[string]time.Time{"n2": long}},
		{name: "a stale reply does not count",
			cmds: []*mpb.Command{member("n1", 1), member("n2", 5)}, ms: voters("n1", "n2"),
			replies: map[string]Reply{"addr-n2": {Term: term, RepliedAt: now.Add(-3 * time.Second)}}, since: map[string]time.Time{"n2": long}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := stateOf(t, tc.cmds...)
			since := tc.since
			if since == nil {
				since = map[string]time.Time{}
			}
			var got candidate
			var ok bool
			f.Read(func(s *membership.State) { got, _, ok = pick(now, cfg, term, tc.ms, s, tc.replies, since) })
			switch {
			case tc.want == "" && ok:
				t.Errorf("picked %s, want none", got.id)
			case tc.want != "" && (!ok || got.id != tc.want):
				t.Errorf("picked %q (ok %v), want %s", got.id, ok, tc.want)
			}
			if !ok && tc.want == "" && tc.since == nil {
				// The first sighting starts the holdoff clock.
				if _, started := since["n2"]; !started && len(tc.replies) > 0 {
					t.Errorf("eligibility of n2 not recorded: %v", since)
				}
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", Config{SelfID: "n1", AckFresh: time.Second}, true},
		{"no id", Config{AckFresh: time.Second}, false},
		{"no ack freshness", Config{SelfID: "n1"}, false},
		{"holdoff too short", Config{SelfID: "n1", AckFresh: time.Second, Holdoff: time.Millisecond}, false},
	} {
		c := tc.cfg
		if err := c.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: %v, want ok=%v", tc.name, err, tc.ok)
		}
		if tc.ok && (c.Holdoff != 3*time.Second || c.Tick != 200*time.Millisecond) {
			t.Errorf("%s: defaults not filled: %+v", tc.name, c)
		}
	}
}
