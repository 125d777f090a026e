package api_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/heartbeat-sidecar/heartbeat/membership"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
	"github.com/heartbeat-sidecar/heartbeat/rpc/api"
)

// soloMembers registers n members m00.. (and "solo" itself) on a solo
// Coordinator.
func soloMembers(t *testing.T, c *api.Coordinator, n int) {
	t.Helper()
	specs := []membership.MemberSpec{{ID: "solo", PeerAddr: "127.0.0.1:1", ClientAddr: "127.0.0.1:2", Voter: true}}
	for i := 0; i < n; i++ {
		specs = append(specs, membership.MemberSpec{ID: fmt.Sprintf("m%02d", i), PeerAddr: fmt.Sprintf("10.0.0.%d:7400", i),
			ClientAddr: fmt.Sprintf("10.0.0.%d:7401", i), HTTPAddr: fmt.Sprintf("10.0.0.%d:7402", i), Voter: i%2 == 0})
	}
	for _, s := range specs {
		if _, err := c.Commit(ctxT(t), membership.UpsertMemberCmd(s)); err != nil {
			t.Fatal(err)
		}
	}
}

func memberOf(ev *heartbeatpb.WatchMembersResponse, id string) *heartbeatpb.Member {
	for _, m := range ev.GetMembers() {
		if m.GetNodeId() == id {
			return m
		}
	}
	return nil
}

// TestWatchMembers: the first message is the full list (as Members); a
// drain and a priority change each send a new list, a resource change
// alone does not; a reader that stops reading holds up nothing and later
// gets the latest list with fell_behind; Close ends the watch.
func TestWatchMembers(t *testing.T) {
	fsm, coord, c, addr := serveSoloWith(t, nil)
	const n = 80 // big lists: an unread stream fills its flow-control window soon
	soloMembers(t, coord, n)

	stream, err := c.WatchMembers(ctxT(t), &heartbeatpb.WatchMembersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	list, err := c.ListMembers(ctxT(t), &heartbeatpb.ListMembersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(first.GetMembers()) != n+1 || first.GetRevision() != fsm.Revision() || first.GetFellBehind() {
		t.Fatalf("first list: %d members at revision %d (fsm %d), fell_behind %v", len(first.GetMembers()), first.GetRevision(), fsm.Revision(), first.GetFellBehind())
	}
	if !proto.Equal(&heartbeatpb.ListMembersResponse{Members: first.GetMembers(), Revision: first.GetRevision(), Read: list.GetRead()}, list) {
		t.Errorf("first list differs from Members")
	}

	drain, err := c.SetDrain(ctxT(t), &heartbeatpb.SetDrainRequest{NodeId: "m05", Draining: true})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if !memberOf(ev, "m05").GetDraining() || ev.GetRevision() != drain.GetRevision() || ev.GetFellBehind() {
		t.Errorf("after the drain: m05 %v at revision %d (drain %d)", memberOf(ev, "m05"), ev.GetRevision(), drain.GetRevision())
	}
	// A resource change alone sends no list: the next one is the priority's.
	register(t, c, "r", 5)
	prio, err := c.SetLeaderPriority(ctxT(t), &heartbeatpb.SetLeaderPriorityRequest{NodeId: "m06", Priority: 77})
	if err != nil {
		t.Fatal(err)
	}
	if ev, err = stream.Recv(); err != nil {
		t.Fatal(err)
	}
	if memberOf(ev, "m06").GetLeaderPriority() != 77 || ev.GetRevision() != prio.GetRevision() {
		t.Errorf("after the priority change: m06 %v at revision %d (priority set at %d)", memberOf(ev, "m06"), ev.GetRevision(), prio.GetRevision())
	}

	// A reader that stops reading. A fixed window (no BDP growth) keeps the
	// amount the transport buffers for it small.
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(1<<16), grpc.WithInitialConnWindowSize(1<<16))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	slow, err := heartbeatpb.NewCoordinatorClient(conn).WatchMembers(ctxT(t), &heartbeatpb.WatchMembersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := slow.Recv(); err != nil {
		t.Fatal(err)
	}
	const changes = 300
	start := time.Now()
	for i := 1; i <= changes; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := c.SetLeaderPriority(ctx, &heartbeatpb.SetLeaderPriorityRequest{NodeId: "m07", Priority: uint32(1 + i%100)})
		cancel()
		if err != nil {
			t.Fatalf("change %d while a watcher does not read: %v", i, err)
		}
	}
	if _, err := c.GetStatus(ctxT(t), &heartbeatpb.GetStatusRequest{}); err != nil {
		t.Fatalf("status while a watcher does not read: %v", err)
	}
	t.Logf("%d changes with an unread watch took %v", changes, time.Since(start))
	final := uint32(1 + changes%100)
	fell, got := false, 0
	for {
		ev, err := slow.Recv()
		if err != nil {
			t.Fatalf("slow watch after %d lists: %v", got, err)
		}
		got++
		fell = fell || ev.GetFellBehind()
		if memberOf(ev, "m07").GetLeaderPriority() == final && ev.GetRevision() == fsm.Revision() {
			break
		}
	}
	if !fell {
		t.Errorf("the slow reader read %d lists for %d changes and was never told it fell behind", got, changes)
	}
	if got >= changes {
		t.Errorf("the slow reader got %d lists for %d changes: nothing was skipped", got, changes)
	}

	coord.Close()
	for {
		if _, err := stream.Recv(); err != nil {
			if status.Code(err) != codes.Unavailable {
				t.Errorf("watch after Close: %v, want Unavailable", err)
			}
			break
		}
	}
	if s, err := c.WatchMembers(ctxT(t), &heartbeatpb.WatchMembersRequest{}); err == nil {
		if _, err := s.Recv(); status.Code(err) != codes.Unavailable {
			t.Errorf("new watch after Close: %v, want Unavailable", err)
		}
	}
}

// TestSetLeaderPriority: the default member is the serving node; the
// priority shows in Members; 0..100 only; unknown members are NotFound.
func TestSetLeaderPriority(t *testing.T) {
	_, coord, c, _ := serveSoloWith(t, nil)
	if _, err := c.SetLeaderPriority(ctxT(t), &heartbeatpb.SetLeaderPriorityRequest{Priority: 5}); status.Code(err) != codes.NotFound {
		t.Errorf("priority of the unregistered serving node: %v, want NotFound", err)
	}
	soloMembers(t, coord, 2)
	res, err := c.SetLeaderPriority(ctxT(t), &heartbeatpb.SetLeaderPriorityRequest{Priority: 100})
	if err != nil || res.GetChanged() != 1 || res.GetRevision() == 0 {
		t.Fatalf("set own priority: %v %v", res, err)
	}
	if res, err := c.SetLeaderPriority(ctxT(t), &heartbeatpb.SetLeaderPriorityRequest{Priority: 100}); err != nil || res.GetChanged() != 0 {
		t.Errorf("repeat: %v %v, want no change", res, err)
	}
	if _, err := c.SetLeaderPriority(ctxT(t), &heartbeatpb.SetLeaderPriorityRequest{NodeId: "m01", Priority: 0}); err != nil {
		t.Errorf("priority 0: %v", err)
	}
	list, err := c.ListMembers(ctxT(t), &heartbeatpb.ListMembersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	ev := &heartbeatpb.WatchMembersResponse{Members: list.GetMembers()}
	if memberOf(ev, "solo").GetLeaderPriority() != 100 || memberOf(ev, "m01").GetLeaderPriority() != 0 {
		t.Errorf("members: %v", list)
	}
	for _, p := range []uint32{101, 1 << 31} {
		if _, err := c.SetLeaderPriority(ctxT(t), &heartbeatpb.SetLeaderPriorityRequest{NodeId: "m01", Priority: p}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("priority %d: %v, want InvalidArgument", p, err)
		}
	}
}

// TestMembersKeyIgnoresVolatileFields: last contact and owned counts alone
// are no change; every other field is.
func TestMembersKeyIgnoresVolatileFields(t *testing.T) {
	base := &heartbeatpb.Member{NodeId: "n1", PeerAddress: "a", Suffrage: heartbeatpb.Suffrage_SUFFRAGE_VOTER,
		State: heartbeatpb.MemberState_MEMBER_STATE_ALIVE, AppHealthy: true,
		ClientAddress: "c", HttpAddress: "h", LeaderPriority: 3, Owned: 4, LastContact: timestamppb.New(time.Unix(5, 0))}
	key := api.MembersKey([]*heartbeatpb.Member{base})
	vol := proto.Clone(base).(*heartbeatpb.Member)
	vol.Owned, vol.LastContact = 40, timestamppb.New(time.Unix(50, 0))
	if api.MembersKey([]*heartbeatpb.Member{vol}) != key {
		t.Error("owned or last contact changed the key")
	}
	for i, edit := range []func(*heartbeatpb.Member){
		func(m *heartbeatpb.Member) { m.PeerAddress = "b" },
		func(m *heartbeatpb.Member) { m.Suffrage = heartbeatpb.Suffrage_SUFFRAGE_NONVOTER },
		func(m *heartbeatpb.Member) { m.RaftLeader = true },
		func(m *heartbeatpb.Member) { m.State = heartbeatpb.MemberState_MEMBER_STATE_DEAD },
		func(m *heartbeatpb.Member) { m.AppHealthy = false },
		func(m *heartbeatpb.Member) { m.Draining = true },
		func(m *heartbeatpb.Member) { m.ClientAddress = "d" },
		func(m *heartbeatpb.Member) { m.HttpAddress = "i" },
		func(m *heartbeatpb.Member) { m.LeaderPriority = 4 },
	} {
		m := proto.Clone(base).(*heartbeatpb.Member)
		edit(m)
		if api.MembersKey([]*heartbeatpb.Member{m}) == key {
			t.Errorf("edit %d not seen: %v", i, m)
		}
	}
}
