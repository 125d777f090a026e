package membership

import (
	"fmt"
	"sort"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	pb "github.com/heartbeat-sidecar/heartbeat/proto/membershippb"
)

// CommandVersion is the only command encoding this package writes and reads.
const CommandVersion = 1

// Limits on commands. They are constants, not configuration: every node must
// accept and reject exactly the same log entries.
const (
	MaxResourceIDLen = 256      // bytes of a resource id (at least 1)
	MaxMemberIDLen   = 128      // bytes of a member id (at least 1)
	MaxAddressLen    = 256      // bytes of an address
	MinWeight        = 1        // resource weight and member capacity lower bound
	MaxWeight        = 1000     // resource weight and member capacity upper bound
	DefaultCapacity  = 100      // member capacity when 0 is given
	MaxBatch         = 10000    // resources per RegisterResources / DeleteResources, moves per Assign
	MaxLabels        = 16       // labels per resource
	MaxLabelKeyLen   = 63       // bytes of a label key (at least 1)
	MaxLabelValueLen = 256      // bytes of a label value
	MaxCommandBytes  = 16 << 20 // encoded command size: EncodeCommand refuses more, DecodeCommand too
	// MaxAssignBytes bounds the encoded size of one Assign command the
	// leader's reconciler commits: it splits a round's moves by bytes as
	// well as by count (MaxBatch), so that no raft entry of its own is
	// large (a MaxBatch of moves with the longest ids would be about 5 MB).
	MaxAssignBytes = 1 << 20
	// MaxLeaderPriority bounds a member's leader priority (0..MaxLeaderPriority).
	MaxLeaderPriority = 100
)

// EncodeCommand stamps cmd with CommandVersion, validates it and returns its
// protobuf encoding, ready for Applier.Apply. An invalid command returns an
// error wrapping ErrInvalidCommand and no bytes; one whose encoding is over
// MaxCommandBytes, ErrCommandTooLarge: nothing that DecodeCommand would
// refuse is ever proposed, so no oversized entry reaches the raft log.
//
// EncodeCommand is stricter than DecodeCommand about the text that enters
// the state: the ids and labels a RegisterResources or UpsertMember brings
// must pass CheckText (no format, bidi or zero-width characters). The
// stricter rule is applied only when a command is made, never when a log
// entry or a snapshot is read back: entries written before it must stay
// replayable on every node, and commands that only name existing ids
// (delete, assign, mark) keep the old rule so that such ids can still be
// removed.
func EncodeCommand(cmd *pb.Command) ([]byte, error) {
	if cmd == nil {
		return nil, fmt.Errorf("%w: nil command", ErrInvalidCommand)
	}
	cmd.Version = CommandVersion
	if err := ValidateCommand(cmd); err != nil {
		return nil, err
	}
	if err := checkNewText(cmd); err != nil {
		return nil, err
	}
	if n := proto.Size(cmd); n > MaxCommandBytes {
		return nil, fmt.Errorf("%w: %d bytes encoded, limit %d (split the batch)", ErrCommandTooLarge, n, MaxCommandBytes)
	}
	b, err := proto.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidCommand, err)
	}
	return b, nil
}

// checkNewText applies CheckText to the ids and labels a command brings into
// the state.
func checkNewText(cmd *pb.Command) error {
	switch op := cmd.GetOp().(type) {
	case *pb.Command_UpsertMember:
		if err := CheckText(op.UpsertMember.GetId()); err != nil {
			return invalid("member id %q: %v", op.UpsertMember.GetId(), err)
		}
	case *pb.Command_RegisterResources:
		for _, r := range op.RegisterResources.GetResources() {
			if err := CheckText(r.GetId()); err != nil {
				return invalid("resource id %q: %v", r.GetId(), err)
			}
			for _, l := range r.GetLabels() {
				if err := CheckText(l.GetKey()); err != nil {
					return invalid("resource %q: label key %q: %v", r.GetId(), l.GetKey(), err)
				}
				if err := CheckText(l.GetValue()); err != nil {
					return invalid("resource %q: label %q value %q: %v", r.GetId(), l.GetKey(), l.GetValue(), err)
				}
			}
		}
	}
	return nil
}

// CheckText reports the first character of s that an id or a label may not
// hold. Allowed: valid UTF-8 of letters (L), marks (M), numbers (N),
// punctuation (P), symbols (S) and the ASCII space, which is Go's
// unicode.IsPrint. Refused: invalid UTF-8; the other code points: controls
// (Cc), format characters (Cf: every Unicode Bidi_Control such as U+202E
// RIGHT-TO-LEFT OVERRIDE and U+2066..U+2069, and the zero-width ones: U+200B
// ZERO WIDTH SPACE, U+200C/U+200D joiners, U+2060 WORD JOINER, U+FEFF,
// U+00AD SOFT HYPHEN), private use (Co), surrogates (Cs), unassigned code
// points and noncharacters (Cn, as of Go's Unicode tables), line and
// paragraph separators (Zl, Zp) and every space but U+0020 (Zs: no-break
// and other look-alike spaces).
func CheckText(s string) error {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size <= 1 {
				return fmt.Errorf("invalid UTF-8 at byte %d", i)
			}
		}
		if !unicode.IsPrint(r) {
			return fmt.Errorf("character %U at byte %d is not allowed (%s)", r, i, category(r))
		}
	}
	return nil
}

// category names the general category of a refused character.
func category(r rune) string {
	for _, c := range []struct {
		name string
		tab  *unicode.RangeTable
	}{
		{"Cc control", unicode.Cc}, {"Cf format, bidi or zero-width", unicode.Cf}, {"Co private use", unicode.Co},
		{"Cs surrogate", unicode.Cs}, {"Zl line separator", unicode.Zl}, {"Zp paragraph separator", unicode.Zp},
		{"Zs space other than U+0020", unicode.Zs},
	} {
		if unicode.Is(c.tab, r) {
			return c.name
		}
	}
	return "Cn unassigned or noncharacter"
}

// MustEncode is EncodeCommand for commands built by this package's
// constructors in tests and tools; it panics on an invalid command.
func MustEncode(cmd *pb.Command) []byte {
	b, err := EncodeCommand(cmd)
	if err != nil {
		panic(err)
	}
	return b
}

// DecodeCommand parses and validates a log entry. It never panics: malformed
// bytes and limit violations return ErrInvalidCommand, an unknown version
// ErrUnsupportedVersion (both wrapped).
func DecodeCommand(b []byte) (*pb.Command, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty entry", ErrInvalidCommand)
	}
	if len(b) > MaxCommandBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrInvalidCommand, len(b), MaxCommandBytes)
	}
	cmd := &pb.Command{}
	if err := proto.Unmarshal(b, cmd); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidCommand, err)
	}
	if err := ValidateCommand(cmd); err != nil {
		return nil, err
	}
	return cmd, nil
}

// ValidateCommand checks the version, that exactly one op is set and every
// field limit. It looks at the command alone, not at the state: a batch that
// passes is then applied whole or (for a state conflict) not at all.
func ValidateCommand(cmd *pb.Command) error {
	if cmd.GetVersion() != CommandVersion {
		return fmt.Errorf("%w: version %d (this node knows %d)", ErrUnsupportedVersion, cmd.GetVersion(), CommandVersion)
	}
	switch op := cmd.GetOp().(type) {
	case *pb.Command_UpsertMember:
		m := op.UpsertMember
		if m == nil {
			return invalid("upsert_member: empty")
		}
		if err := checkMemberID(m.GetId()); err != nil {
			return err
		}
		if m.GetPeerAddress() == "" {
			return invalid("upsert_member %q: empty peer_address", m.GetId())
		}
		for _, a := range []string{m.GetPeerAddress(), m.GetClientAddress(), m.GetHttpAddress()} {
			if len(a) > MaxAddressLen || !printable(a) {
				return invalid("upsert_member %q: address too long or not printable", m.GetId())
			}
		}
		if c := m.GetCapacity(); c != 0 && (c < MinWeight || c > MaxWeight) {
			return invalid("upsert_member %q: capacity %d outside %d..%d", m.GetId(), c, MinWeight, MaxWeight)
		}
		if m.LeaderPriority != nil && m.GetLeaderPriority() > MaxLeaderPriority {
			return invalid("upsert_member %q: leader_priority %d outside 0..%d", m.GetId(), m.GetLeaderPriority(), MaxLeaderPriority)
		}
	case *pb.Command_MarkSuspect:
		return checkMemberID(op.MarkSuspect.GetMemberId())
	case *pb.Command_MarkDead:
		return checkMemberID(op.MarkDead.GetMemberId())
	case *pb.Command_MarkAlive:
		return checkMemberID(op.MarkAlive.GetMemberId())
	case *pb.Command_MarkLeft:
		return checkMemberID(op.MarkLeft.GetMemberId())
	case *pb.Command_SetAppHealth:
		return checkMemberID(op.SetAppHealth.GetMemberId())
	case *pb.Command_SetDrain:
		return checkMemberID(op.SetDrain.GetMemberId())
	case *pb.Command_RemoveMember:
		return checkMemberID(op.RemoveMember.GetMemberId())
	case *pb.Command_SetLeaderPriority:
		if err := checkMemberID(op.SetLeaderPriority.GetMemberId()); err != nil {
			return err
		}
		if p := op.SetLeaderPriority.GetPriority(); p > MaxLeaderPriority {
			return invalid("set_leader_priority %q: priority %d outside 0..%d", op.SetLeaderPriority.GetMemberId(), p, MaxLeaderPriority)
		}
	case *pb.Command_RegisterResources:
		rs := op.RegisterResources.GetResources()
		if err := checkBatch("register_resources", len(rs)); err != nil {
			return err
		}
		seen := make(map[string]struct{}, len(rs))
		for _, r := range rs {
			if err := checkResourceSpec(r); err != nil {
				return err
			}
			if _, dup := seen[r.GetId()]; dup {
				return invalid("register_resources: resource %q twice in one batch", r.GetId())
			}
			seen[r.GetId()] = struct{}{}
		}
	case *pb.Command_DeleteResources:
		ids := op.DeleteResources.GetIds()
		if err := checkBatch("delete_resources", len(ids)); err != nil {
			return err
		}
		seen := make(map[string]struct{}, len(ids))
		for _, id := range ids {
			if err := checkResourceID(id); err != nil {
				return err
			}
			if _, dup := seen[id]; dup {
				return invalid("delete_resources: resource %q twice in one batch", id)
			}
			seen[id] = struct{}{}
		}
	case *pb.Command_Assign:
		moves := op.Assign.GetMoves()
		if err := checkBatch("assign", len(moves)); err != nil {
			return err
		}
		seen := make(map[string]struct{}, len(moves))
		for _, mv := range moves {
			if err := checkResourceID(mv.GetResourceId()); err != nil {
				return err
			}
			switch {
			case mv.GetTo() == "" && mv.GetFrom() == "":
				return invalid("assign: release of unowned resource %q", mv.GetResourceId())
			case mv.GetTo() != "":
				if err := checkMemberID(mv.GetTo()); err != nil {
					return err
				}
			}
			if f := mv.GetFrom(); f != "" {
				if err := checkMemberID(f); err != nil {
					return err
				}
			}
			if _, dup := seen[mv.GetResourceId()]; dup {
				return invalid("assign: resource %q moved twice in one batch", mv.GetResourceId())
			}
			seen[mv.GetResourceId()] = struct{}{}
		}
	case nil:
		return invalid("no op set")
	default:
		return invalid("unknown op %T", op)
	}
	return nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidCommand, fmt.Sprintf(format, args...))
}

func checkBatch(what string, n int) error {
	if n == 0 {
		return invalid("%s: empty batch", what)
	}
	if n > MaxBatch {
		return invalid("%s: %d items, limit %d", what, n, MaxBatch)
	}
	return nil
}

// printable reports whether s is valid UTF-8 without control characters.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return false
		}
	}
	return true
}

// CheckMemberID reports (wrapping ErrInvalidCommand) a member id that no
// command would accept: empty, longer than MaxMemberIDLen bytes, or not
// printable UTF-8. The API checks request ids with it before anything else.
func CheckMemberID(id string) error { return checkMemberID(id) }

// CheckResourceID reports whether id is a valid resource id (1..256 bytes
// of printable UTF-8), the check a registration makes.
func CheckResourceID(id string) error { return checkResourceID(id) }

func checkMemberID(id string) error {
	if len(id) == 0 || len(id) > MaxMemberIDLen {
		return invalid("member id of %d bytes (want 1..%d)", len(id), MaxMemberIDLen)
	}
	if !printable(id) {
		return invalid("member id %q is not printable UTF-8", id)
	}
	return nil
}

func checkResourceID(id string) error {
	if len(id) == 0 || len(id) > MaxResourceIDLen {
		return invalid("resource id of %d bytes (want 1..%d)", len(id), MaxResourceIDLen)
	}
	if !printable(id) {
		return invalid("resource id %q is not printable UTF-8", id)
	}
	return nil
}

func checkResourceSpec(r *pb.ResourceSpec) error {
	if r == nil {
		return invalid("nil resource")
	}
	if err := checkResourceID(r.GetId()); err != nil {
		return err
	}
	if w := r.GetWeight(); w != 0 && (w < MinWeight || w > MaxWeight) {
		return invalid("resource %q: weight %d outside %d..%d", r.GetId(), w, MinWeight, MaxWeight)
	}
	return checkLabels(r.GetId(), r.GetLabels())
}

func checkLabels(id string, ls []*pb.Label) error {
	if len(ls) > MaxLabels {
		return invalid("resource %q: %d labels, limit %d", id, len(ls), MaxLabels)
	}
	for i, l := range ls {
		k, v := l.GetKey(), l.GetValue()
		if len(k) == 0 || len(k) > MaxLabelKeyLen || !printable(k) {
			return invalid("resource %q: label key of %d bytes (want 1..%d printable)", id, len(k), MaxLabelKeyLen)
		}
		if len(v) > MaxLabelValueLen || !printable(v) {
			return invalid("resource %q: label %q value of %d bytes (limit %d, printable)", id, k, len(v), MaxLabelValueLen)
		}
		if i > 0 && ls[i-1].GetKey() >= k {
			return invalid("resource %q: label keys not sorted or not unique at %q", id, k)
		}
	}
	return nil
}

// ResourceSpec is one resource to register: an id, a weight (0 means 1) and
// labels (any order; RegisterCmd sorts them).
type ResourceSpec struct {
	ID     string
	Weight uint32
	Labels map[string]string
}

// MemberSpec is a member to add or update.
type MemberSpec struct {
	ID         string
	PeerAddr   string
	ClientAddr string
	HTTPAddr   string
	Voter      bool
	Capacity   uint32 // 0: DefaultCapacity
	// LeaderPriority, when not nil, sets the member's leader priority
	// (0..MaxLeaderPriority); nil keeps the current one (0 for a new member).
	LeaderPriority *uint32
}

// UpsertMemberCmd builds an UpsertMember command.
func UpsertMemberCmd(m MemberSpec) *pb.Command {
	return &pb.Command{Op: &pb.Command_UpsertMember{UpsertMember: &pb.UpsertMember{
		Id: m.ID, PeerAddress: m.PeerAddr, ClientAddress: m.ClientAddr, HttpAddress: m.HTTPAddr,
		Voter: m.Voter, Capacity: m.Capacity, LeaderPriority: m.LeaderPriority,
	}}}
}

// MarkSuspectCmd builds a MarkSuspect command.
func MarkSuspectCmd(id string) *pb.Command {
	return &pb.Command{Op: &pb.Command_MarkSuspect{MarkSuspect: &pb.MarkSuspect{MemberId: id}}}
}

// MarkDeadCmd builds a MarkDead command.
func MarkDeadCmd(id string) *pb.Command {
	return &pb.Command{Op: &pb.Command_MarkDead{MarkDead: &pb.MarkDead{MemberId: id}}}
}

// MarkAliveCmd builds a MarkAlive command.
func MarkAliveCmd(id string) *pb.Command {
	return &pb.Command{Op: &pb.Command_MarkAlive{MarkAlive: &pb.MarkAlive{MemberId: id}}}
}

// MarkLeftCmd builds a MarkLeft command.
func MarkLeftCmd(id string) *pb.Command {
	return &pb.Command{Op: &pb.Command_MarkLeft{MarkLeft: &pb.MarkLeft{MemberId: id}}}
}

// SetAppHealthCmd builds a SetAppHealth command.
func SetAppHealthCmd(id string, healthy bool) *pb.Command {
	return &pb.Command{Op: &pb.Command_SetAppHealth{SetAppHealth: &pb.SetAppHealth{MemberId: id, Healthy: healthy}}}
}

// SetDrainCmd builds a SetDrain command.
func SetDrainCmd(id string, draining bool) *pb.Command {
	return &pb.Command{Op: &pb.Command_SetDrain{SetDrain: &pb.SetDrain{MemberId: id, Draining: draining}}}
}

// RemoveMemberCmd builds a RemoveMember command.
func RemoveMemberCmd(id string) *pb.Command {
	return &pb.Command{Op: &pb.Command_RemoveMember{RemoveMember: &pb.RemoveMember{MemberId: id}}}
}

// SetLeaderPriorityCmd builds a SetLeaderPriority command.
func SetLeaderPriorityCmd(id string, priority uint32) *pb.Command {
	return &pb.Command{Op: &pb.Command_SetLeaderPriority{SetLeaderPriority: &pb.SetLeaderPriority{MemberId: id, Priority: priority}}}
}

// RegisterCmd builds a RegisterResources command (labels sorted by key).
func RegisterCmd(specs []ResourceSpec) *pb.Command {
	rs := make([]*pb.ResourceSpec, len(specs))
	for i, s := range specs {
		rs[i] = &pb.ResourceSpec{Id: s.ID, Weight: s.Weight, Labels: sortedLabels(s.Labels)}
	}
	return &pb.Command{Op: &pb.Command_RegisterResources{RegisterResources: &pb.RegisterResources{Resources: rs}}}
}

// DeleteCmd builds a DeleteResources command.
func DeleteCmd(ids []string) *pb.Command {
	return &pb.Command{Op: &pb.Command_DeleteResources{DeleteResources: &pb.DeleteResources{Ids: ids}}}
}

// AssignCmd builds an Assign command from planned moves.
func AssignCmd(moves []Move) *pb.Command {
	ms := make([]*pb.Move, len(moves))
	for i, m := range moves {
		ms[i] = &pb.Move{ResourceId: m.ResourceID, To: m.To, From: m.From, FromEpoch: m.FromEpoch}
	}
	return &pb.Command{Op: &pb.Command_Assign{Assign: &pb.Assign{Moves: ms}}}
}

func sortedLabels(m map[string]string) []*pb.Label {
	if len(m) == 0 {
		return nil
	}
	ls := make([]*pb.Label, 0, len(m))
	for k, v := range m {
		ls = append(ls, &pb.Label{Key: k, Value: v})
	}
	sort.Slice(ls, func(i, j int) bool { return ls[i].Key < ls[j].Key })
	return ls
}
