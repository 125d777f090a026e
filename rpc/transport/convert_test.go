package transport

import (
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/heartbeat-sidecar/heartbeat/proto/raftpb"
)

// fill sets every field of the struct v points to a random non-zero value, by
// reflection, so a field raft adds is filled too. Log entries get AppendedAt set on
// some and zero on one. It fails the test on a kind it does not know.
func fill(t *testing.T, rng *rand.Rand, v reflect.Value) {
	t.Helper()
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		fill(t, rng, v.Elem())
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(time.Time{}) {
			v.Set(reflect.ValueOf(time.Unix(rng.Int64N(1<<33)+1, rng.Int64N(1e9))))
			return
		}
		for i := 0; i < v.NumField(); i++ {
			if !v.Type().Field(i).IsExported() {
				t.Fatalf("%s has unexported field %s", v.Type(), v.Type().Field(i).Name)
			}
			fill(t, rng, v.Field(i))
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(1 + rng.Uint64N(min(uint64(1)<<uint(v.Type().Bits()-1), 1<<62)))
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(1 + rng.Int64N(min(int64(1)<<uint(v.Type().Bits()-2), 1<<62)))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.String:
		v.SetString(randString(rng))
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			b := make([]byte, 1+rng.IntN(32))
			for i := range b {
				b[i] = byte(rng.UintN(256))
			}
			v.SetBytes(b)
			return
		}
		n := 2 + rng.IntN(3)
		s := reflect.MakeSlice(v.Type(), n, n)
		for i := 0; i < n; i++ {
			fill(t, rng, s.Index(i))
		}
		v.Set(s)
	default:
		t.Fatalf("fill: unsupported kind %s (%s): teach the test and the converter", v.Kind(), v.Type())
	}
}

func randString(rng *rand.Rand) string {
	b := make([]byte, 1+rng.IntN(16))
	for i := range b {
		b[i] = byte('a' + rng.IntN(26))
	}
	return string(b)
}

// normalizeTimes checks that the AppendedAt times of two entry lists are Equal and
// then zeroes them, so reflect.DeepEqual can compare the rest.
func normalizeTimes(t *testing.T, a, b []*raft.Log) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("entries: %d != %d", len(a), len(b))
	}
	for i := range a {
		if !a[i].AppendedAt.Equal(b[i].AppendedAt) || a[i].AppendedAt.IsZero() != b[i].AppendedAt.IsZero() {
			t.Fatalf("entry %d AppendedAt: %v != %v", i, a[i].AppendedAt, b[i].AppendedAt)
		}
		a[i].AppendedAt, b[i].AppendedAt = time.Time{}, time.Time{}
	}
}

// wire sends m through protobuf marshaling, as the network does.
func wire[M proto.Message](t *testing.T, m M) M {
	t.Helper()
	buf, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	out := m.ProtoReflect().New().Interface().(M)
	if err := proto.Unmarshal(buf, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// must returns a conversion's result, failing t on its error:
// must(conv(...))(t).
func must[T any](v T, err error) func(*testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// TestIncomingConversionsRefuse: a field of an incoming request that does not
// fit raft's type, or a term above the request's own, is an error rather than
// a wrapped or silently accepted value.
func TestIncomingConversionsRefuse(t *testing.T) {
	hdr := &raftpb.RPCHeader{ProtocolVersion: 3}
	cases := []struct {
		name string
		conv func() error
	}{
		{"log type above 255", func() error {
			_, err := appendReqFromProto(&raftpb.AppendEntriesRequest{Header: hdr, Term: 5, Entries: []*raftpb.Log{{Index: 1, Term: 5, Type: 256 + 2}}})
			return err
		}},
		{"entry term above the request's", func() error {
			_, err := appendReqFromProto(&raftpb.AppendEntriesRequest{Header: hdr, Term: 5, Entries: []*raftpb.Log{{Index: 1, Term: math.MaxUint64}}})
			return err
		}},
		{"previous entry term above the request's", func() error {
			_, err := appendReqFromProto(&raftpb.AppendEntriesRequest{Header: hdr, Term: 5, PrevLogEntry: 1, PrevLogTerm: 6})
			return err
		}},
		{"vote: last log term above the request's", func() error {
			_, err := voteReqFromProto(&raftpb.RequestVoteRequest{Header: hdr, Term: 5, LastLogTerm: math.MaxUint64})
			return err
		}},
		{"pre-vote: last log term above the request's", func() error {
			_, err := preVoteReqFromProto(&raftpb.RequestPreVoteRequest{Header: hdr, Term: 5, LastLogTerm: 6})
			return err
		}},
		{"snapshot: negative size", func() error {
			_, err := snapReqFromProto(&raftpb.InstallSnapshotRequest{Header: hdr, Term: 5, Size: -1})
			return err
		}},
		{"snapshot: last log term above the request's", func() error {
			_, err := snapReqFromProto(&raftpb.InstallSnapshotRequest{Header: hdr, Term: 5, LastLogTerm: 7})
			return err
		}},
	}
	for _, tc := range cases {
		if err := tc.conv(); !errors.Is(err, errMalformed) {
			t.Errorf("%s: %v, want errMalformed", tc.name, err)
		}
	}
}

func TestRoundTripEveryType(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 50; i++ {
		t.Run("AppendEntriesRequest", func(t *testing.T) {
			in := &raft.AppendEntriesRequest{}
			fill(t, rng, reflect.ValueOf(in))
			in.Entries[len(in.Entries)-1].AppendedAt = time.Time{} // one unset time
			in.Term = max(in.Term, in.PrevLogTerm)
			for _, e := range in.Entries {
				in.Term = max(in.Term, e.Term)
			}
			out := must(appendReqFromProto(wire(t, appendReqToProto(in))))(t)
			normalizeTimes(t, in.Entries, out.Entries)
			if !reflect.DeepEqual(in, out) {
				t.Fatalf("round trip:\n in %+v\nout %+v", in, out)
			}
		})
		t.Run("AppendEntriesResponse", func(t *testing.T) {
			in := &raft.AppendEntriesResponse{}
			fill(t, rng, reflect.ValueOf(in))
			out := &raft.AppendEntriesResponse{}
			appendRespFromProto(wire(t, appendRespToProto(in)), out)
			if !reflect.DeepEqual(in, out) {
				t.Fatalf("round trip:\n in %+v\nout %+v", in, out)
			}
		})
		t.Run("RequestVoteRequest", func(t *testing.T) {
			in := &raft.RequestVoteRequest{}
			fill(t, rng, reflect.ValueOf(in))
			in.Term = max(in.Term, in.LastLogTerm)
			if out := must(voteReqFromProto(wire(t, voteReqToProto(in))))(t); !reflect.DeepEqual(in, out) {
				t.Fatalf("round trip:\n in %+v\nout %+v", in, out)
			}
		})
		t.Run("RequestVoteResponse", func(t *testing.T) {
			in := &raft.RequestVoteResponse{}
			fill(t, rng, reflect.ValueOf(in))
			out := &raft.RequestVoteResponse{}
			voteRespFromProto(wire(t, voteRespToProto(in)), out)
			if !reflect.DeepEqual(in, out) {
				t.Fatalf("round trip:\n in %+v\nout %+v", in, out)
			}
		})
		t.Run("RequestPreVoteRequest", func(t *testing.T) {
			in := &raft.RequestPreVoteRequest{}
			fill(t, rng, reflect.ValueOf(in))
			in.Term = max(in.Term, in.LastLogTerm)
			if out := must(preVoteReqFromProto(wire(t, preVoteReqToProto(in))))(t); !reflect.DeepEqual(in, out) {
				t.Fatalf("round trip:\n in %+v\nout %+v", in, out)
			}
		})
		t.Run("RequestPreVoteResponse", func(t *testing.T) {
			in := &raft.RequestPreVoteResponse{}
			fill(t, rng, reflect.ValueOf(in))
			out := &raft.RequestPreVoteResponse{}
			preVoteRespFromProto(wire(t, preVoteRespToProto(in)), out)
			if !reflect.DeepEqual(in, out) {
				t.Fatalf("round trip:\n in %+v\nout %+v", in, out)
			}
		})
		t.Run("TimeoutNowRequest", func(t *testing.T) {
			in := &raft.TimeoutNowRequest{}
			fill(t, rng, reflect.ValueOf(in))
			if out := must(timeoutNowReqFromProto(wire(t, timeoutNowReqToProto(in))))(t); !reflect.DeepEqual(in, out) {
				t.Fatalf("round trip:\n in %+v\nout %+v", in, out)
			}
		})
		t.Run("TimeoutNowResponse", func(t *testing.T) {
			in := &raft.TimeoutNowResponse{}
			fill(t, rng, reflect.ValueOf(in))
			out := &raft.TimeoutNowResponse{}
			timeoutNowRespFromProto(wire(t, timeoutNowRespToProto(in)), out)
			if !reflect.DeepEqual(in, out) {
				t.Fatalf("round trip:\n in %+v\nout %+v", in, out)
			}
		})
		t.Run("InstallSnapshotRequest", func(t *testing.T) {
			in := &raft.InstallSnapshotRequest{}
			fill(t, rng, reflect.ValueOf(in))
			in.Term = max(in.Term, in.LastLogTerm)
			if out := must(snapReqFromProto(wire(t, snapReqToProto(in))))(t); !reflect.DeepEqual(in, out) {
				t.Fatalf("round trip:\n in %+v\nout %+v", in, out)
			}
		})
		t.Run("InstallSnapshotResponse", func(t *testing.T) {
			in := &raft.InstallSnapshotResponse{}
			fill(t, rng, reflect.ValueOf(in))
			out := &raft.InstallSnapshotResponse{}
			snapRespFromProto(wire(t, snapRespToProto(in)), out)
			if !reflect.DeepEqual(in, out) {
				t.Fatalf("round trip:\n in %+v\nout %+v", in, out)
			}
		})
	}
}

// TestRoundTripZeroValues checks that empty structs (raft's heartbeat has nil
// Entries) stay empty rather than gaining empty slices.
func TestRoundTripZeroValues(t *testing.T) {
	in := &raft.AppendEntriesRequest{Term: 3, Leader: []byte("x")}
	out := must(appendReqFromProto(wire(t, appendReqToProto(in))))(t)
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip:\n in %+v\nout %+v", in, out)
	}
	if !IsHeartbeat(out) {
		t.Fatal("a heartbeat is no longer a heartbeat after the round trip")
	}
}

// TestConverterKnowsEveryRaftField fails when raft's structs and the converter's field
// list differ, e.g. after a raft upgrade adds a field.
func TestConverterKnowsEveryRaftField(t *testing.T) {
	types := []any{
		raft.RPCHeader{}, raft.Log{},
		raft.AppendEntriesRequest{}, raft.AppendEntriesResponse{},
		raft.RequestVoteRequest{}, raft.RequestVoteResponse{},
		raft.RequestPreVoteRequest{}, raft.RequestPreVoteResponse{},
		raft.TimeoutNowRequest{}, raft.TimeoutNowResponse{},
		raft.InstallSnapshotRequest{}, raft.InstallSnapshotResponse{},
	}
	if len(types) != len(knownFields) {
		t.Fatalf("test covers %d types, converter lists %d", len(types), len(knownFields))
	}
	for _, v := range types {
		rt := reflect.TypeOf(v)
		var fields []string
		for i := 0; i < rt.NumField(); i++ {
			fields = append(fields, rt.Field(i).Name)
		}
		known, ok := knownFields[rt.Name()]
		if !ok {
			t.Errorf("converter does not list raft.%s", rt.Name())
			continue
		}
		a, b := slices.Clone(fields), slices.Clone(known)
		sort.Strings(a)
		sort.Strings(b)
		if !slices.Equal(a, b) {
			t.Errorf("raft.%s has fields %v, converter knows %v", rt.Name(), fields, known)
		}
	}
}

func TestIsHeartbeat(t *testing.T) {
	hb := func() *raft.AppendEntriesRequest {
		return &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{Addr: []byte("a")}, Term: 2}
	}
	tests := []struct {
		name string
		mod  func(*raft.AppendEntriesRequest)
		want bool
	}{
		{"heartbeat", func(*raft.AppendEntriesRequest) {}, true},
		{"leader field only", func(r *raft.AppendEntriesRequest) { r.Addr = nil; r.Leader = []byte("a") }, true},
		{"no address", func(r *raft.AppendEntriesRequest) { r.Addr = nil }, false},
		{"no term", func(r *raft.AppendEntriesRequest) { r.Term = 0 }, false},
		{"entries", func(r *raft.AppendEntriesRequest) { r.Entries = []*raft.Log{{}} }, false},
		{"prev entry", func(r *raft.AppendEntriesRequest) { r.PrevLogEntry = 1 }, false},
		{"prev term", func(r *raft.AppendEntriesRequest) { r.PrevLogTerm = 1 }, false},
		{"commit index", func(r *raft.AppendEntriesRequest) { r.LeaderCommitIndex = 1 }, false},
	}
	for _, tc := range tests {
		r := hb()
		tc.mod(r)
		if got := IsHeartbeat(r); got != tc.want {
			t.Errorf("%s: IsHeartbeat = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	ok := DefaultConfig()
	ok.ID = "n1"
	if err := ok.Validate(); err != nil {
		t.Fatalf("default config with ID: %v", err)
	}
	tests := []struct {
		name string
		mod  func(*Config)
	}{
		{"no id", func(c *Config) { c.ID = "" }},
		{"no bind", func(c *Config) { c.BindAddr = "" }},
		{"heartbeat timeout", func(c *Config) { c.HeartbeatTimeout = 0 }},
		{"rpc timeout", func(c *Config) { c.RPCTimeout = -1 }},
		{"chunk", func(c *Config) { c.SnapshotChunkSize = 0 }},
		{"msg size", func(c *Config) { c.MaxMsgSize = 0 }},
		{"chunk above msg size", func(c *Config) { c.SnapshotChunkSize = c.MaxMsgSize }},
		{"backoff", func(c *Config) { c.MaxReconnectBackoff = 0 }},
	}
	for _, tc := range tests {
		c := ok
		tc.mod(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate accepted a bad config", tc.name)
		}
	}
}
