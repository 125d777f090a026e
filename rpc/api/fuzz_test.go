package api_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/heartbeat-sidecar/heartbeat/internal/testcluster"
	"github.com/heartbeat-sidecar/heartbeat/internal/testwait"
	"github.com/heartbeat-sidecar/heartbeat/node"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// fuzzCallTimeout bounds one fuzzed unary call; a stream gets
// fuzzStreamWait for its first message. Generous: the fuzzer shares a
// loaded machine.
const (
	fuzzCallTimeout = 20 * time.Second
	fuzzStreamWait  = 3 * time.Second
)

// fuzzMethod is one Coordinator RPC, taken from the service descriptor so
// that a new RPC is fuzzed without a change here.
type fuzzMethod struct {
	name     string // "RegisterResources"
	full     string // "/heartbeat.v1.Coordinator/RegisterResources"
	in, out  protoreflect.MessageType
	client   bool // client-streaming
	server   bool // server-streaming
	excluded string
}

// fuzzExcluded are the RPCs whose requests are decoded but not sent, and
// why: the fuzzer needs its one node to stay in the cluster.
var fuzzExcluded = map[string]string{
	"Leave": "the node leaves the cluster and stops (LeaveRequest has no fields; TestHTTPAPI covers a Leave)",
}

// coordinatorMethods lists the Coordinator's RPCs sorted by name.
func coordinatorMethods(tb testing.TB) []fuzzMethod {
	tb.Helper()
	d, err := protoregistry.GlobalFiles.FindDescriptorByName("heartbeat.v1.Coordinator")
	if err != nil {
		tb.Fatal(err)
	}
	sd := d.(protoreflect.ServiceDescriptor)
	var ms []fuzzMethod
	for i := 0; i < sd.Methods().Len(); i++ {
		md := sd.Methods().Get(i)
		in, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
		if err != nil {
			tb.Fatal(err)
		}
		out, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
		if err != nil {
			tb.Fatal(err)
		}
		name := string(md.Name())
		ms = append(ms, fuzzMethod{
			name: name, full: fmt.Sprintf("/%s/%s", sd.FullName(), name), in: in, out: out,
			client: md.IsStreamingClient(), server: md.IsStreamingServer(), excluded: fuzzExcluded[name],
		})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].name < ms[j].name })
	return ms
}

// coordinatorSeeds are FuzzCoordinator's seed corpus: a valid request of
// every RPC and the malformed ones TestHTTPAPI's bad-input table sends,
// as (method index, request bytes).
func coordinatorSeeds(tb testing.TB, ms []fuzzMethod) []struct {
	which uint8
	req   []byte
} {
	tb.Helper()
	index := map[string]uint8{}
	for i, m := range ms {
		index[m.name] = uint8(i)
	}
	res := func(id string, w uint32) *heartbeatpb.ResourceSpec {
		return &heartbeatpb.ResourceSpec{Id: id, Weight: w}
	}
	seeds := []struct {
		rpc string
		m   proto.Message
	}{
		{"RegisterResources", &heartbeatpb.RegisterResourcesRequest{Resources: []*heartbeatpb.ResourceSpec{res("fuzz-a", 1), res("fuzz-b", 0)}}},
		{"RegisterResources", &heartbeatpb.RegisterResourcesRequest{}},
		{"RegisterResources", &heartbeatpb.RegisterResourcesRequest{Resources: []*heartbeatpb.ResourceSpec{res("x", 1001)}}},
		{"RegisterResources", &heartbeatpb.RegisterResourcesRequest{Resources: []*heartbeatpb.ResourceSpec{res("a\u0001b", 1)}}},
		{"RegisterResources", &heartbeatpb.RegisterResourcesRequest{Resources: []*heartbeatpb.ResourceSpec{res("a\u202eb", 1), res("a\u200bb", 1)}}},
		{"RegisterResources", &heartbeatpb.RegisterResourcesRequest{Resources: []*heartbeatpb.ResourceSpec{res("d", 1), res("d", 1)}}},
		{"RegisterResources", &heartbeatpb.RegisterResourcesRequest{Resources: []*heartbeatpb.ResourceSpec{{Id: "l", Labels: map[string]string{"": "v", "k": "\u0000"}}}}},
		{"DeleteResources", &heartbeatpb.DeleteResourcesRequest{Ids: []string{"fuzz-a"}}},
		{"DeleteResources", &heartbeatpb.DeleteResourcesRequest{Ids: []string{"", "no-such"}}},
		{"GetResource", &heartbeatpb.GetResourceRequest{Id: "fuzz-b", Consistency: heartbeatpb.Consistency_CONSISTENCY_STALE}},
		{"GetResource", &heartbeatpb.GetResourceRequest{Id: "no-such", Consistency: 99}},
		{"ListResources", &heartbeatpb.ListResourcesRequest{}},
		{"ListAssignments", &heartbeatpb.ListAssignmentsRequest{NodeId: "nobody"}},
		{"ListMembers", &heartbeatpb.ListMembersRequest{}},
		{"GetStatus", &heartbeatpb.GetStatusRequest{}},
		{"GetLeader", &heartbeatpb.GetLeaderRequest{Consistency: -1}},
		{"GetLease", &heartbeatpb.GetLeaseRequest{}},
		{"WatchLeader", &heartbeatpb.WatchLeaderRequest{}},
		{"WatchMembers", &heartbeatpb.WatchMembersRequest{}},
		{"WatchAssignments", &heartbeatpb.WatchAssignmentsRequest{FromRevision: 1}},
		{"WatchAssignments", &heartbeatpb.WatchAssignmentsRequest{FromRevision: 1<<64 - 1}},
		{"KeepAlive", &heartbeatpb.KeepAliveRequest{Seq: 1, Owned: true}},
		{"SetDrain", &heartbeatpb.SetDrainRequest{NodeId: "nobody", Draining: true}},
		{"SetLeaderPriority", &heartbeatpb.SetLeaderPriorityRequest{NodeId: "n1", Priority: 101}},
		{"SetLeaderPriority", &heartbeatpb.SetLeaderPriorityRequest{NodeId: "n1", Priority: 50}},
		{"AppHeartbeat", &heartbeatpb.AppHeartbeatRequest{Ttl: durationpb.New(5 * time.Millisecond)}},
		{"AppHeartbeat", &heartbeatpb.AppHeartbeatRequest{Ttl: &durationpb.Duration{Seconds: 1 << 62}}},
		{"StepDown", &heartbeatpb.StepDownRequest{}},
		{"TransferLeadership", &heartbeatpb.TransferLeadershipRequest{NodeId: "n1"}},
		{"TransferLeadership", &heartbeatpb.TransferLeadershipRequest{NodeId: "nobody"}},
		{"Join", &heartbeatpb.JoinRequest{NodeId: "fuzz-ghost", PeerAddress: "127.0.0.1:1"}},
		{"Join", &heartbeatpb.JoinRequest{NodeId: "n9", PeerAddress: "not an address"}},
		{"Remove", &heartbeatpb.RemoveRequest{NodeId: "n1"}},
		{"Remove", &heartbeatpb.RemoveRequest{NodeId: "../x"}},
		{"Leave", &heartbeatpb.LeaveRequest{}},
	}
	var out []struct {
		which uint8
		req   []byte
	}
	for _, s := range seeds {
		i, ok := index[s.rpc]
		if !ok {
			tb.Fatalf("seed for unknown RPC %s", s.rpc)
		}
		b, err := proto.Marshal(s.m)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, struct {
			which uint8
			req   []byte
		}{i, b})
	}
	// Bytes that are no request at all, on a few RPCs.
	for _, b := range [][]byte{{}, {0xff}, {0x0a, 0x80}, {0x0a, 0x05, 0x0a, 0x03, 0xff, 0xfe, 0xfd}} {
		out = append(out, struct {
			which uint8
			req   []byte
		}{index["RegisterResources"], b})
	}
	return out
}

// FuzzCoordinator sends fuzzed request bytes to every Coordinator RPC
// through the real gRPC server of a 1-node cluster (started once per fuzz
// process): the bytes are unmarshalled into the RPC's request type (bytes
// that are no such message are skipped: gRPC refuses them before our code)
// and the RPC is called. Properties, for every input:
//   - no Internal, Unknown, DataLoss or Unimplemented status, and a unary
//     call ends within fuzzCallTimeout (a watch may stay silent; a
//     leader or members watch sends its first event);
//   - a call refused as malformed (malformed) writes nothing: the raft
//     log's last index does not move (checked again with the log quiet
//     when something else wrote);
//   - a watch of assignments from a revision ahead of the node is refused;
//   - the node is still up and leading: GetStatus answers, IsLeader.
//
// Join is sent as a non-voter (a voter that never answers would stop a
// 1-node cluster: issue 13's ghost voters), and a member it added is
// removed again; Leave is not sent (fuzzExcluded).
func FuzzCoordinator(f *testing.F) {
	ms := coordinatorMethods(f)
	for _, s := range coordinatorSeeds(f, ms) {
		f.Add(s.which, s.req)
	}
	c := testcluster.Start(f, 1, testcluster.Options{Tweak: fuzzLogTo(f)})
	n := c.Leader()
	cc, err := grpc.NewClient(n.ClientAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { cc.Close() })
	client := heartbeatpb.NewCoordinatorClient(cc)

	f.Fuzz(func(t *testing.T, which uint8, b []byte) {
		m := ms[int(which)%len(ms)]
		req := m.in.New().Interface()
		if err := proto.Unmarshal(b, req); err != nil {
			return
		}
		if m.excluded != "" {
			return
		}
		if j, ok := req.(*heartbeatpb.JoinRequest); ok {
			j.Nonvoter = true
		}
		before := lastIndex(n)
		err := fuzzCall(t, cc, n, m, req)
		if malformed(err) && lastIndex(n) != before {
			// Something else may have written (the reconciler, an
			// application TTL run out): wait for a quiet log, then again.
			waitQuiet(t, n)
			before = lastIndex(n)
			err = fuzzCall(t, cc, n, m, req)
			if after := lastIndex(n); malformed(err) && after != before {
				t.Fatalf("%s(%v) refused (%v) but the raft log moved %d -> %d", m.name, req, err, before, after)
			}
		}
		if j, ok := req.(*heartbeatpb.JoinRequest); ok && err == nil && j.GetNodeId() != n.ID() {
			ctx, cancel := context.WithTimeout(context.Background(), fuzzCallTimeout)
			defer cancel()
			if _, err := client.Remove(ctx, &heartbeatpb.RemoveRequest{NodeId: j.GetNodeId()}); err != nil {
				t.Fatalf("removing the member %q a fuzzed Join added: %v", j.GetNodeId(), err)
			}
		}
		checkUp(t, client, n)
	})
}

// fuzzLogTo sends the nodes' logs to a file of the fuzz process instead of
// the test's log: t.Log of the F panics while an input runs. The file's
// path is in the log of a failing run.
func fuzzLogTo(f *testing.F) func(*node.Config) {
	path := filepath.Join(f.TempDir(), "nodes.log")
	out, err := os.Create(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { out.Close() })
	f.Logf("node logs: %s", path)
	return func(cfg *node.Config) {
		cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: cfg.ID, Level: testcluster.LogLevel(), Output: out})
	}
}

// fuzzCall makes one call of m with req and checks its status; it returns
// the call's error (nil: accepted).
func fuzzCall(t *testing.T, cc *grpc.ClientConn, n *node.Node, m fuzzMethod, req proto.Message) error {
	t.Helper()
	if !m.server && !m.client {
		ctx, cancel := context.WithTimeout(context.Background(), fuzzCallTimeout)
		defer cancel()
		err := cc.Invoke(ctx, m.full, req, m.out.New().Interface())
		checkStatus(t, m, req, err, false)
		return err
	}
	revAtCall := n.Membership().Revision()
	ctx, cancel := context.WithTimeout(context.Background(), fuzzStreamWait)
	defer cancel()
	st, err := cc.NewStream(ctx, &grpc.StreamDesc{StreamName: m.name, ServerStreams: m.server, ClientStreams: m.client}, m.full)
	if err != nil {
		checkStatus(t, m, req, err, true)
		return err
	}
	if err := st.SendMsg(req); err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("%s: send: %v", m.name, err)
	}
	if err := st.CloseSend(); err != nil {
		t.Fatalf("%s: close send: %v", m.name, err)
	}
	err = st.RecvMsg(m.out.New().Interface())
	if errors.Is(err, io.EOF) {
		err = nil
	}
	silent := status.Code(err) == codes.DeadlineExceeded
	switch {
	case silent && (m.name == "WatchLeader" || m.name == "WatchMembers"):
		t.Fatalf("%s(%v): no first event within %v", m.name, req, fuzzStreamWait)
	case silent:
		err = nil // a watch of assignments or a keep-alive may wait for news
	default:
		checkStatus(t, m, req, err, true)
	}
	if w, ok := req.(*heartbeatpb.WatchAssignmentsRequest); ok && err == nil && w.GetFromRevision() > revAtCall+1 {
		// +1: a write may have been applied between reading the revision
		// and the call.
		t.Fatalf("WatchAssignments from revision %d accepted; the node was at %d", w.GetFromRevision(), revAtCall)
	}
	return err
}

// malformed says whether a call's error refuses its request as malformed
// or oversized (InvalidArgument, OutOfRange, ResourceExhausted), which must
// happen before anything is committed. A refusal that depends on the state
// (NotFound of a delete, AlreadyExists) is decided where the command is
// applied, in log order, and may leave a refused entry in the log by
// design (rpc/api DeleteResources).
func malformed(err error) bool {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.OutOfRange, codes.ResourceExhausted:
		return true
	}
	return false
}

// checkStatus fails the test for a status malformed input must never get.
func checkStatus(t *testing.T, m fuzzMethod, req proto.Message, err error, stream bool) {
	t.Helper()
	switch code := status.Code(err); code {
	case codes.OK, codes.InvalidArgument, codes.NotFound, codes.AlreadyExists, codes.FailedPrecondition,
		codes.OutOfRange, codes.ResourceExhausted, codes.Aborted, codes.Unavailable:
	case codes.DeadlineExceeded, codes.Canceled:
		if !stream {
			t.Fatalf("%s(%v): no answer: %v", m.name, req, err)
		}
	default:
		t.Fatalf("%s(%v): status %v: %v", m.name, req, code, err)
	}
}

// lastIndex is the node's last raft log index.
func lastIndex(n *node.Node) uint64 { return n.Election().Raft().LastIndex() }

// waitQuiet waits until the node's raft log has not moved for a while.
func waitQuiet(t *testing.T, n *node.Node) {
	t.Helper()
	last, since := lastIndex(n), time.Now()
	testwait.Eventually(t, testcluster.DefaultWait, "a quiet raft log", func() (bool, string) {
		if i := lastIndex(n); i != last {
			last, since = i, time.Now()
		}
		return time.Since(since) >= 500*time.Millisecond, fmt.Sprintf("last index %d", last)
	})
}

// checkUp fails the test unless the node answers GetStatus as the leader.
func checkUp(t *testing.T, client heartbeatpb.CoordinatorClient, n *node.Node) {
	t.Helper()
	testwait.Eventually(t, testcluster.DefaultWait, "the node to answer as the leader", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), fuzzCallTimeout)
		defer cancel()
		st, err := client.GetStatus(ctx, &heartbeatpb.GetStatusRequest{})
		if err != nil {
			return false, err.Error()
		}
		return st.GetIsLeader() && st.GetNodeId() == n.ID(), st.String()
	})
}
