package membership

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/heartbeat-sidecar/heartbeat/proto/membershippb"
)

func validCommands() []*pb.Command {
	return []*pb.Command{
		UpsertMemberCmd(MemberSpec{ID: "n1", PeerAddr: "127.0.0.1:7410", ClientAddr: "127.0.0.1:7411", HTTPAddr: "127.0.0.1:7412", Voter: true}),
		UpsertMemberCmd(MemberSpec{ID: "n2", PeerAddr: "p2", Capacity: 1000}),
		MarkSuspectCmd("n1"), MarkDeadCmd("n1"), MarkAliveCmd("n1"), MarkLeftCmd("n1"),
		SetAppHealthCmd("n1", false), SetDrainCmd("n1", true), RemoveMemberCmd("n1"),
		SetLeaderPriorityCmd("n1", 0), SetLeaderPriorityCmd("n2", MaxLeaderPriority),
		UpsertMemberCmd(MemberSpec{ID: "n3", PeerAddr: "p3", LeaderPriority: ptr(uint32(0))}),
		UpsertMemberCmd(MemberSpec{ID: "n4", PeerAddr: "p4", LeaderPriority: ptr(uint32(MaxLeaderPriority))}),
		RegisterCmd([]ResourceSpec{{ID: "a", Weight: 1}, {ID: "b", Weight: 1000, Labels: map[string]string{"zone": "x", "app": "y"}}, {ID: "c"}}),
		DeleteCmd([]string{"a", "b"}),
		AssignCmd([]Move{{ResourceID: "a", To: "n1"}, {ResourceID: "b", From: "n1", FromEpoch: 7, To: "n2"}}),
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	for _, c := range validCommands() {
		b, err := EncodeCommand(c)
		if err != nil {
			t.Fatalf("%v: %v", c, err)
		}
		got, err := DecodeCommand(b)
		if err != nil {
			t.Fatalf("decode %v: %v", c, err)
		}
		if !proto.Equal(got, c) {
			t.Fatalf("round trip: got %v want %v", got, c)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func manySpecs(n int) []ResourceSpec {
	s := make([]ResourceSpec, n)
	for i := range s {
		s[i] = ResourceSpec{ID: strings.Repeat("x", 1+i%200) + string(rune('a'+i%26)) + itoa(i)}
	}
	return s
}

func itoa(i int) string {
	const d = "0123456789"
	if i < 10 {
		return d[i : i+1]
	}
	return itoa(i/10) + d[i%10:i%10+1]
}

func TestValidateRejects(t *testing.T) {
	long := strings.Repeat("r", MaxResourceIDLen+1)
	labels := map[string]string{}
	for i := 0; i <= MaxLabels; i++ {
		labels["k"+itoa(i)] = "v"
	}
	tests := []struct {
		name string
		cmd  *pb.Command
	}{
		{"no op", &pb.Command{}},
		{"empty member id", MarkDeadCmd("")},
		{"long member id", MarkDeadCmd(strings.Repeat("n", MaxMemberIDLen+1))},
		{"control char in member id", SetDrainCmd("n\x01", true)},
		{"no peer address", UpsertMemberCmd(MemberSpec{ID: "n1"})},
		{"capacity too big", UpsertMemberCmd(MemberSpec{ID: "n1", PeerAddr: "p", Capacity: MaxWeight + 1})},
		{"empty register", RegisterCmd(nil)},
		{"empty resource id", RegisterCmd([]ResourceSpec{{ID: "a"}, {ID: ""}})},
		{"oversized resource id", RegisterCmd([]ResourceSpec{{ID: long}})},
		{"weight too big", RegisterCmd([]ResourceSpec{{ID: "a", Weight: MaxWeight + 1}})},
		{"duplicate in batch", RegisterCmd([]ResourceSpec{{ID: "a"}, {ID: "b"}, {ID: "a"}})},
		{"too many labels", RegisterCmd([]ResourceSpec{{ID: "a", Labels: labels}})},
		{"empty label key", RegisterCmd([]ResourceSpec{{ID: "a", Labels: map[string]string{"": "v"}}})},
		{"long label value", RegisterCmd([]ResourceSpec{{ID: "a", Labels: map[string]string{"k": strings.Repeat("v", MaxLabelValueLen+1)}}})},
		{"batch too large", RegisterCmd(manySpecs(MaxBatch + 1))},
		{"empty delete", DeleteCmd(nil)},
		{"duplicate delete", DeleteCmd([]string{"a", "a"})},
		{"assign without target", AssignCmd([]Move{{ResourceID: "a"}})},
		{"assign twice", AssignCmd([]Move{{ResourceID: "a", To: "n1"}, {ResourceID: "a", To: "n2"}})},
		{"priority too high", SetLeaderPriorityCmd("n1", MaxLeaderPriority+1)},
		{"priority without member", SetLeaderPriorityCmd("", 1)},
		{"priority of an oversized member id", SetLeaderPriorityCmd(strings.Repeat("n", MaxMemberIDLen+1), 1)},
		{"priority of an unprintable member id", SetLeaderPriorityCmd("n\n1", 1)},
		{"upsert priority too high", UpsertMemberCmd(MemberSpec{ID: "n1", PeerAddr: "p", LeaderPriority: ptr(uint32(MaxLeaderPriority + 1))})},
		{"assign bad from", AssignCmd([]Move{{ResourceID: "a", To: "n1", From: strings.Repeat("n", 200)}})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := EncodeCommand(tc.cmd); !errors.Is(err, ErrInvalidCommand) {
				t.Fatalf("EncodeCommand: want ErrInvalidCommand, got %v", err)
			}
			// The same bytes arriving from the log are rejected by Decode.
			tc.cmd.Version = CommandVersion
			b, err := proto.Marshal(tc.cmd)
			if err != nil {
				return // not even encodable (invalid UTF-8): nothing reaches the log
			}
			if _, err := DecodeCommand(b); !errors.Is(err, ErrInvalidCommand) {
				t.Fatalf("DecodeCommand: want ErrInvalidCommand, got %v", err)
			}
		})
	}
}

func TestDecodeRejectsBadBytes(t *testing.T) {
	good := MustEncode(MarkDeadCmd("n1"))
	v2 := MarkDeadCmd("n1")
	v2.Version = 2
	v2b, _ := proto.Marshal(v2)
	v0 := MarkDeadCmd("n1")
	v0b, _ := proto.Marshal(v0)
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrInvalidCommand},
		{"garbage", []byte{0xff, 0xff, 0xff}, ErrInvalidCommand},
		{"truncated", good[:len(good)-1], ErrInvalidCommand},
		{"version 2", v2b, ErrUnsupportedVersion},
		{"version 0", v0b, ErrUnsupportedVersion},
		{"invalid utf8", append(append([]byte{}, good[:len(good)-2]...), 0xc3, 0x28), ErrInvalidCommand},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd, err := DecodeCommand(tc.b)
			if !errors.Is(err, tc.want) || cmd != nil {
				t.Fatalf("want %v, got %v (%v)", tc.want, err, cmd)
			}
		})
	}
}

// FuzzDecodeCommand: decoding never panics; what it accepts re-encodes and
// applies without breaking the state's invariants; what it rejects is an error.
func FuzzDecodeCommand(f *testing.F) {
	for _, c := range validCommands() {
		f.Add(MustEncode(c))
	}
	f.Add([]byte{})
	f.Add([]byte{0x08, 0x02})
	f.Fuzz(func(t *testing.T, b []byte) {
		cmd, err := DecodeCommand(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidCommand) && !errors.Is(err, ErrUnsupportedVersion) {
				t.Fatalf("unexpected error class: %v", err)
			}
			if cmd != nil {
				t.Fatal("command returned with an error")
			}
			return
		}
		if err := ValidateCommand(cmd); err != nil {
			t.Fatalf("decoded command fails validation: %v", err)
		}
		again, err := EncodeCommand(cmd)
		if err != nil {
			t.Fatalf("decoded command does not re-encode: %v", err)
		}
		if _, err := DecodeCommand(again); err != nil {
			t.Fatalf("re-encoded command does not decode: %v", err)
		}
		// Apply to a small populated state: accepted or rejected, never a panic
		// or a broken invariant.
		fsm := newTestFSM(t)
		fsm.addMembers(2)
		fsm.ok(RegisterCmd([]ResourceSpec{{ID: "a"}, {ID: "b"}}))
		fsm.apply(b)
		fsm.check()
	})
}
