package heartbeatpb

// Hand-written helpers beside the generated code: the short, lower-case
// names the CLI, the Go client and the logs use for the API's enums
// ("leader", "alive", "voter", "assigned"), and the way back.

import (
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// Short is the lower-case name of an enum value without its type prefix:
// "leader" for RAFT_STATE_LEADER; "" for the UNSPECIFIED zero value or a
// number the enum does not define.
func Short(e protoreflect.Enum) string {
	d := e.Descriptor()
	v := d.Values().ByNumber(e.Number())
	if v == nil || e.Number() == 0 {
		return ""
	}
	return strings.ToLower(strings.TrimPrefix(string(v.Name()), enumPrefix(d)))
}

// enumPrefix is the prefix every value name of an enum starts with, read
// off its zero value (PREFIX_UNSPECIFIED).
func enumPrefix(d protoreflect.EnumDescriptor) string {
	return strings.TrimSuffix(string(d.Values().ByNumber(0).Name()), "UNSPECIFIED")
}

// parseShort finds the value of an enum whose short name is s (any case),
// or the zero value.
func parseShort(d protoreflect.EnumDescriptor, s string) protoreflect.EnumNumber {
	if v := d.Values().ByName(protoreflect.Name(enumPrefix(d) + strings.ToUpper(s))); v != nil && s != "" {
		return v.Number()
	}
	return 0
}

// RaftStateOf is the RaftState named by a short name ("leader"); zero for
// an unknown one.
func RaftStateOf(s string) RaftState {
	return RaftState(parseShort(RaftState(0).Descriptor(), s))
}

// MemberStateOf is the MemberState named by a short name ("alive").
func MemberStateOf(s string) MemberState {
	return MemberState(parseShort(MemberState(0).Descriptor(), s))
}

// SuffrageOf is the Suffrage named by a short name ("voter", "nonvoter",
// "staging").
func SuffrageOf(s string) Suffrage {
	return Suffrage(parseShort(Suffrage(0).Descriptor(), s))
}

// ChangeKindOf is the ChangeKind named by a short name ("assigned").
func ChangeKindOf(s string) ChangeKind {
	return ChangeKind(parseShort(ChangeKind(0).Descriptor(), s))
}
