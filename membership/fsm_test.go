package membership

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
)

func TestFSMMemberLifecycle(t *testing.T) {
	f := newTestFSM(t)
	res := f.ok(UpsertMemberCmd(MemberSpec{ID: "n1", PeerAddr: "p1", ClientAddr: "c1", Voter: true}))
	if res.Changed != 1 || res.Revision != 1 {
		t.Fatalf("upsert result %+v", res)
	}
	m := f.member("n1")
	if m.State != StateAlive || !m.AppHealthy || m.Draining || m.Capacity != DefaultCapacity || m.JoinRevision != 1 {
		t.Fatalf("new member %+v", m)
	}
	if res := f.ok(UpsertMemberCmd(MemberSpec{ID: "n1", PeerAddr: "p1", ClientAddr: "c1", Voter: true})); res.Changed != 0 {
		t.Fatalf("identical upsert changed %d", res.Changed)
	}
	if err := f.rejected(UpsertMemberCmd(MemberSpec{ID: "n2", PeerAddr: "p1"})); !errors.Is(err, ErrAddressInUse) {
		t.Fatalf("duplicate address: %v", err)
	}

	steps := []struct {
		cmd     any
		want    MemberState
		wantErr error
	}{
		{MarkSuspectCmd("n1"), StateSuspect, nil},
		{MarkSuspectCmd("n1"), StateSuspect, nil}, // idempotent
		{MarkAliveCmd("n1"), StateAlive, nil},
		{MarkDeadCmd("n1"), StateDead, nil},
		{MarkSuspectCmd("n1"), StateDead, ErrInvalidTransition}, // dead is not "late"
		{MarkAliveCmd("n1"), StateAlive, nil},                   // back from the dead
		{MarkLeftCmd("n1"), StateLeft, nil},
		{MarkDeadCmd("n1"), StateLeft, ErrInvalidTransition},
		{MarkAliveCmd("n1"), StateLeft, ErrInvalidTransition}, // only an upsert rejoins
		{MarkDeadCmd("nX"), StateLeft, ErrUnknownMember},
	}
	for i, st := range steps {
		if st.wantErr != nil {
			if err := f.rejected(st.cmd); !errors.Is(err, st.wantErr) {
				t.Fatalf("step %d: want %v got %v", i, st.wantErr, err)
			}
		} else {
			f.ok(st.cmd)
		}
		if got := f.member("n1").State; got != st.want {
			t.Fatalf("step %d: state %s want %s", i, got, st.want)
		}
	}
	// A left member's address may be reused, and upserting it rejoins.
	f.ok(SetDrainCmd("n1", true))
	f.ok(UpsertMemberCmd(MemberSpec{ID: "n2", PeerAddr: "p1"}))
	f.ok(UpsertMemberCmd(MemberSpec{ID: "n1", PeerAddr: "p1b"}))
	if m := f.member("n1"); m.State != StateAlive || m.Draining || m.StateRevision != f.idx {
		t.Fatalf("rejoined member %+v", m)
	}
}

// TestFSMLeaderPriority: SetLeaderPriority sets the priority of a known
// member (an event, a member change), repeats change nothing, an unknown
// member is rejected; UpsertMember keeps the priority unless it carries one.
func TestFSMLeaderPriority(t *testing.T) {
	f := newTestFSM(t)
	f.ok(UpsertMemberCmd(MemberSpec{ID: "n1", PeerAddr: "p1"}))
	if p := f.member("n1").LeaderPriority; p != 0 {
		t.Fatalf("new member's priority %d, want 0", p)
	}
	from := f.Revision()
	res := f.ok(SetLeaderPriorityCmd("n1", 40))
	if res.Changed != 1 || f.member("n1").LeaderPriority != 40 {
		t.Fatalf("set priority: %+v, member %+v", res, f.member("n1"))
	}
	var mrev uint64
	f.Read(func(s *State) { mrev = s.MemberRevision() })
	if mrev != res.Revision {
		t.Errorf("member revision %d, want %d (a priority change is a member change)", mrev, res.Revision)
	}
	evs, err := f.Changes(from, 10)
	if err != nil || len(evs) != 1 || evs[0].Kind != EventMember || evs[0].Member.LeaderPriority != 40 {
		t.Fatalf("events after a priority change: %+v %v", evs, err)
	}
	if res := f.ok(SetLeaderPriorityCmd("n1", 40)); res.Changed != 0 {
		t.Errorf("repeat changed %d", res.Changed)
	}
	if err := f.rejected(SetLeaderPriorityCmd("nX", 1)); !errors.Is(err, ErrUnknownMember) {
		t.Errorf("unknown member: %v", err)
	}
	// A re-registration without a priority keeps it; with one, sets it.
	if res := f.ok(UpsertMemberCmd(MemberSpec{ID: "n1", PeerAddr: "p1"})); res.Changed != 0 || f.member("n1").LeaderPriority != 40 {
		t.Errorf("upsert without priority: %+v, member %+v", res, f.member("n1"))
	}
	p := uint32(90)
	if res := f.ok(UpsertMemberCmd(MemberSpec{ID: "n1", PeerAddr: "p1", LeaderPriority: &p})); res.Changed != 1 || f.member("n1").LeaderPriority != 90 {
		t.Errorf("upsert with priority: %+v, member %+v", res, f.member("n1"))
	}
	p = 0
	f.ok(UpsertMemberCmd(MemberSpec{ID: "n2", PeerAddr: "p2", LeaderPriority: &p}))
	if m := f.member("n2"); m.LeaderPriority != 0 {
		t.Errorf("new member with priority 0: %+v", m)
	}
	f.check()
}

func (f *testFSM) member(id string) Member {
	f.t.Helper()
	var m Member
	var ok bool
	f.Read(func(s *State) { m, ok = s.Member(id) })
	if !ok {
		f.t.Fatalf("member %q missing", id)
	}
	return m
}

func TestFSMRegisterAllOrNothing(t *testing.T) {
	f := newTestFSM(t)
	f.ok(RegisterCmd([]ResourceSpec{{ID: "a", Weight: 5}}))
	before := f.View()
	// A batch with one bad entry is rejected whole: "b" must not appear and
	// "a" keeps weight 5.
	bad := RegisterCmd([]ResourceSpec{{ID: "a", Weight: 7}, {ID: "b"}, {ID: "c", Weight: MaxWeight + 1}})
	bad.Version = CommandVersion
	data := mustMarshal(t, bad)
	out := f.apply(data)
	if err, ok := out.(error); !ok || !errors.Is(err, ErrInvalidCommand) {
		t.Fatalf("want ErrInvalidCommand, got %v", out)
	}
	after := f.View()
	if fmt.Sprint(before.Resources) != fmt.Sprint(after.Resources) {
		t.Fatalf("rejected batch changed resources: %v -> %v", before.Resources, after.Resources)
	}
	if after.Revision != f.idx {
		t.Fatalf("revision %d, want %d (rejected entries still advance it)", after.Revision, f.idx)
	}
	res := f.ok(RegisterCmd([]ResourceSpec{{ID: "a", Weight: 5}, {ID: "b", Labels: map[string]string{"k": "v"}}}))
	if res.Changed != 1 {
		t.Fatalf("re-register of an unchanged resource counted: %+v", res)
	}
	var b Resource
	f.Read(func(s *State) { b, _ = s.Resource("b") })
	if b.Weight != 1 || len(b.Labels) != 1 || b.Labels[0] != (Label{"k", "v"}) {
		t.Fatalf("resource b %+v", b)
	}
}

func TestFSMAssignEpochsAndStaleMoves(t *testing.T) {
	f := newTestFSM(t)
	f.addMembers(3)
	f.ok(RegisterCmd([]ResourceSpec{{ID: "a"}, {ID: "b"}, {ID: "c"}, {ID: "d"}}))
	res := f.ok(AssignCmd([]Move{{ResourceID: "a", To: "n1"}, {ResourceID: "b", To: "n2"}}))
	epoch := res.Revision
	if res.Changed != 2 || res.Skipped != 0 {
		t.Fatalf("assign %+v", res)
	}
	var a Resource
	f.Read(func(s *State) { a, _ = s.Resource("a") })
	if a.Owner != "n1" || a.Epoch != epoch {
		t.Fatalf("a = %+v, want owner n1 epoch %d", a, epoch)
	}
	f.ok(MarkDeadCmd("n3"))
	res = f.ok(AssignCmd([]Move{
		{ResourceID: "a", From: "n1", FromEpoch: epoch - 1, To: "n2"}, // stale epoch
		{ResourceID: "b", From: "n1", FromEpoch: epoch, To: "n3"},     // wrong owner
		{ResourceID: "c", To: "n3"},                                   // dead target
		{ResourceID: "zz", To: "n1"},                                  // unknown resource
		{ResourceID: "d", To: "nX"},                                   // unknown target
	}))
	if res.Changed != 0 || res.Skipped != 5 {
		t.Fatalf("stale moves: %+v", res)
	}
	res = f.ok(AssignCmd([]Move{{ResourceID: "a", From: "n1", FromEpoch: epoch, To: "n2"}}))
	f.Read(func(s *State) { a, _ = s.Resource("a") })
	if a.Owner != "n2" || a.Epoch != res.Revision || a.Epoch <= epoch {
		t.Fatalf("moved a = %+v", a)
	}
	// A delete naming an unknown id deletes nothing; deleting an owned
	// resource clears the index.
	if err := f.rejected(DeleteCmd([]string{"a", "nope"})); !errors.Is(err, ErrUnknownResource) || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("delete with an unknown id: %v", err)
	}
	res = f.ok(DeleteCmd([]string{"a"}))
	if res.Changed != 1 {
		t.Fatalf("delete %+v", res)
	}
	// A member that owns resources cannot be removed, even when dead.
	f.ok(MarkDeadCmd("n2"))
	if err := f.rejected(RemoveMemberCmd("n2")); !errors.Is(err, ErrMemberBusy) {
		t.Fatalf("remove busy: %v", err)
	}
	if err := f.rejected(RemoveMemberCmd("n1")); !errors.Is(err, ErrMemberBusy) {
		t.Fatalf("remove alive: %v", err)
	}
	f.ok(RemoveMemberCmd("n3"))
	if v := f.View(); len(v.Members) != 2 {
		t.Fatalf("members after remove: %v", v.Members)
	}
}

func mustMarshal(t *testing.T, c proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFSMIgnoresNonCommandEntries(t *testing.T) {
	f := newTestFSM(t)
	if out := f.Apply(&raft.Log{Index: 1, Type: raft.LogNoop}); out != nil {
		t.Fatalf("noop entry: %v", out)
	}
	out := f.Apply(&raft.Log{Index: 2, Type: raft.LogCommand, Data: MustEncode(RegisterCmd([]ResourceSpec{{ID: "x"}}))})
	if res, ok := out.(*Result); !ok || res.Revision != 2 {
		t.Fatalf("command entry: %v", out)
	}
}

func TestChangeFeedAndSubscription(t *testing.T) {
	f := newTestFSM(t)
	f.addMembers(2)                                         // revisions 1, 2
	f.ok(RegisterCmd([]ResourceSpec{{ID: "a"}, {ID: "b"}})) // 3
	f.ok(AssignCmd([]Move{{ResourceID: "a", To: "n1"}}))    // 4
	f.ok(MarkSuspectCmd("n2"))                              // 5
	f.rejected(MarkDeadCmd("nope"))                         // 6: no events
	f.ok(DeleteCmd([]string{"b"}))                          // 7

	evs, err := f.Changes(0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range evs {
		got = append(got, fmt.Sprintf("%d:%s:%s%s", e.Revision, e.Kind, e.MemberID, e.ResourceID))
	}
	want := "[1:member:n1 2:member:n2 3:resource:a 3:resource:b 4:assigned:a 5:member:n2 7:resource-deleted:b]"
	if fmt.Sprint(got) != want {
		t.Fatalf("events\n got %v\nwant %s", got, want)
	}
	// max=1 still returns whole revisions.
	evs, _ = f.Changes(2, 1)
	if len(evs) != 2 || evs[0].Revision != 3 || evs[1].Revision != 3 {
		t.Fatalf("Changes(2,1) = %v", evs)
	}
	if evs, _ := f.Changes(7, 10); len(evs) != 0 {
		t.Fatalf("Changes at head = %v", evs)
	}

	// A subscription resumes from a revision, blocks until the next change,
	// and gives up on ctx.
	sub := f.Subscribe(4)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	evs, err = sub.Next(ctx)
	if err != nil || len(evs) != 2 || evs[0].Revision != 5 || evs[1].Revision != 7 || sub.Revision() != 7 {
		t.Fatalf("Next = %v, %v (rev %d)", evs, err, sub.Revision())
	}
	type next struct {
		evs []Event
		err error
	}
	nextc := make(chan next, 1)
	go func() {
		evs, err := sub.Next(ctx)
		nextc <- next{evs, err}
	}()
	f.ok(RegisterCmd([]ResourceSpec{{ID: "c"}})) // 8
	n := <-nextc
	if n.err != nil || len(n.evs) != 1 || n.evs[0].Revision != 8 || n.evs[0].Kind != EventResource || n.evs[0].ResourceID != "c" {
		t.Fatalf("blocked Next = %v, %v", n.evs, n.err)
	}
	short, cancelShort := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancelShort()
	if _, err := sub.Next(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next without changes: %v", err)
	}
	if err := f.WaitRevision(ctx, f.idx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	target := f.idx + 1
	go func() { done <- f.WaitRevision(ctx, target) }()
	f.ok(MarkAliveCmd("n2"))
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// WaitFor: blocks until the condition holds after some apply.
	go func() {
		done <- f.WaitFor(ctx, func(s *State) bool { return len(s.Owned("n1")) == 0 })
	}()
	select {
	case err := <-done:
		t.Fatalf("WaitFor returned early: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	f.ok(DeleteCmd([]string{"a"}))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := f.WaitFor(short, func(*State) bool { return false }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitFor without change: %v", err)
	}
}

func TestChangeFeedCompaction(t *testing.T) {
	fd := newFeed(4)
	for rev := uint64(1); rev <= 3; rev++ {
		fd.push([]Event{{Revision: rev}, {Revision: rev}})
	}
	// Holds 2,2,3,3: revision 1 is gone, so readers at 0 must re-list.
	if _, err := fd.since(0, 10); !errors.Is(err, ErrCompacted) {
		t.Fatalf("since(0): %v", err)
	}
	evs, err := fd.since(1, 10)
	if err != nil || len(evs) != 4 {
		t.Fatalf("since(1) = %v, %v", evs, err)
	}
	fd.push([]Event{{Revision: 4}})
	// Revision 2 lost one of its two events: a reader at 1 must re-list,
	// a reader at 2 may resume.
	if _, err := fd.since(1, 10); !errors.Is(err, ErrCompacted) {
		t.Fatalf("since(1) after partial drop: %v", err)
	}
	if evs, err := fd.since(2, 10); err != nil || len(evs) != 3 {
		t.Fatalf("since(2) = %v, %v", evs, err)
	}

	// Through the FSM: two full batches overflow a MaxBatch ring.
	fsm, err := NewFSM(Config{FeedCapacity: MaxBatch})
	if err != nil {
		t.Fatal(err)
	}
	f := &testFSM{FSM: fsm, t: t}
	f.register(2 * MaxBatch)
	if _, err := f.Changes(0, 10); !errors.Is(err, ErrCompacted) {
		t.Fatalf("FSM Changes(0): %v", err)
	}
	if evs, err := f.Changes(1, 10); err != nil || len(evs) != MaxBatch {
		t.Fatalf("FSM Changes(1): %d events, %v", len(evs), err)
	}
	sub := f.Subscribe(0)
	if _, err := sub.Next(context.Background()); !errors.Is(err, ErrCompacted) {
		t.Fatalf("subscription behind the ring: %v", err)
	}
	if _, err := NewFSM(Config{FeedCapacity: 10}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("small feed accepted: %v", err)
	}
}

// TestChanged: the channel from Changed closes at the next apply (a
// rejected command too) and not before.
func TestChanged(t *testing.T) {
	f := newTestFSM(t)
	rev, ch := f.Changed()
	select {
	case <-ch:
		t.Fatal("closed before any apply")
	default:
	}
	f.ok(UpsertMemberCmd(MemberSpec{ID: "n1", PeerAddr: "p1"}))
	select {
	case <-ch:
	default:
		t.Fatal("not closed after an apply")
	}
	rev2, ch2 := f.Changed()
	if rev2 <= rev {
		t.Fatalf("revision %d after %d", rev2, rev)
	}
	_ = f.rejected(SetLeaderPriorityCmd("nX", 1))
	select {
	case <-ch2:
	default:
		t.Fatal("not closed after a rejected command")
	}
}
