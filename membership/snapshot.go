package membership

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"sort"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	pb "github.com/heartbeat-sidecar/heartbeat/proto/membershippb"
)

// Snapshot format: a sequence of frames, each a uvarint byte length followed
// by a SnapshotFrame protobuf: one header (version, revision, members sorted
// by id, resource count), resource batches in strictly increasing id order,
// one end frame repeating the count. The encoding is deterministic: the same
// state always gives the same bytes.
const (
	snapshotVersion     = 1
	snapshotBatch       = 1024     // resources per frame
	maxSnapshotFrame    = 64 << 20 // bytes; a longer frame is corrupt
	maxSnapshotMembers  = 1 << 16
	maxSnapshotResource = 1 << 26
)

type fsmSnapshot struct {
	revision  uint64
	members   []Member
	resources []Resource
}

// Persist encodes the captured state into sink; it runs concurrently with
// Apply and touches only its own copy.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.writeTo(sink); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

// Release drops the captured copy.
func (s *fsmSnapshot) Release() { s.members, s.resources = nil, nil }

func (s *fsmSnapshot) writeTo(w io.Writer) error {
	sort.Slice(s.members, func(i, j int) bool { return s.members[i].ID < s.members[j].ID })
	sort.Slice(s.resources, func(i, j int) bool { return s.resources[i].ID < s.resources[j].ID })
	bw := bufio.NewWriterSize(w, 256<<10)
	fw := frameWriter{w: bw}
	hdr := &pb.SnapshotHeader{Version: snapshotVersion, Revision: s.revision, ResourceCount: uint64(len(s.resources))}
	for i := range s.members {
		hdr.Members = append(hdr.Members, memberToPB(&s.members[i]))
	}
	if err := fw.write(&pb.SnapshotFrame{Frame: &pb.SnapshotFrame_Header{Header: hdr}}); err != nil {
		return err
	}
	for i := 0; i < len(s.resources); i += snapshotBatch {
		end := min(i+snapshotBatch, len(s.resources))
		batch := &pb.ResourceBatch{Resources: make([]*pb.Resource, 0, end-i)}
		for j := i; j < end; j++ {
			batch.Resources = append(batch.Resources, resourceToPB(&s.resources[j]))
		}
		if err := fw.write(&pb.SnapshotFrame{Frame: &pb.SnapshotFrame_Resources{Resources: batch}}); err != nil {
			return err
		}
	}
	if err := fw.write(&pb.SnapshotFrame{Frame: &pb.SnapshotFrame_End{End: &pb.SnapshotEnd{ResourceCount: uint64(len(s.resources))}}}); err != nil {
		return err
	}
	return bw.Flush()
}

type frameWriter struct {
	w   io.Writer
	buf []byte
	len [binary.MaxVarintLen64]byte
}

func (fw *frameWriter) write(m proto.Message) error {
	var err error
	fw.buf, err = proto.MarshalOptions{Deterministic: true}.MarshalAppend(fw.buf[:0], m)
	if err != nil {
		return fmt.Errorf("membership: encode snapshot frame: %w", err)
	}
	n := binary.PutUvarint(fw.len[:], uint64(len(fw.buf)))
	if _, err := fw.w.Write(fw.len[:n]); err != nil {
		return err
	}
	_, err = fw.w.Write(fw.buf)
	return err
}

func memberToPB(m *Member) *pb.Member {
	return &pb.Member{
		Id: m.ID, PeerAddress: m.PeerAddr, ClientAddress: m.ClientAddr, HttpAddress: m.HTTPAddr,
		Voter: m.Voter, Capacity: m.Capacity, State: pb.MemberState(m.State), AppHealthy: m.AppHealthy,
		Draining: m.Draining, StateRevision: m.StateRevision, JoinRevision: m.JoinRevision,
		LeaderPriority: m.LeaderPriority,
	}
}

func resourceToPB(r *Resource) *pb.Resource {
	out := &pb.Resource{Id: r.ID, Weight: r.Weight, Owner: r.Owner, Epoch: r.Epoch}
	for _, l := range r.Labels {
		out.Labels = append(out.Labels, &pb.Label{Key: l.Key, Value: l.Value})
	}
	return out
}

func snapErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidSnapshot, fmt.Sprintf(format, args...))
}

// readSnapshot decodes and fully validates a snapshot into a new State.
func readSnapshot(r io.Reader) (*State, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	var buf []byte
	next := func() (*pb.SnapshotFrame, error) {
		n, err := binary.ReadUvarint(br)
		if err != nil {
			return nil, snapErr("frame length: %v", err)
		}
		if n > maxSnapshotFrame {
			return nil, snapErr("frame of %d bytes", n)
		}
		if uint64(cap(buf)) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(br, buf); err != nil {
			return nil, snapErr("frame body: %v", err)
		}
		f := &pb.SnapshotFrame{}
		if err := proto.Unmarshal(buf, f); err != nil {
			return nil, snapErr("frame: %v", err)
		}
		return f, nil
	}
	first, err := next()
	if err != nil {
		return nil, err
	}
	hdr := first.GetHeader()
	if hdr == nil {
		return nil, snapErr("first frame is not a header")
	}
	if hdr.GetVersion() != snapshotVersion {
		return nil, snapErr("version %d (this node knows %d)", hdr.GetVersion(), snapshotVersion)
	}
	if len(hdr.GetMembers()) > maxSnapshotMembers || hdr.GetResourceCount() > maxSnapshotResource {
		return nil, snapErr("%d members, %d resources: over the limits", len(hdr.GetMembers()), hdr.GetResourceCount())
	}
	st := NewState()
	st.revision = hdr.GetRevision()
	st.memberRev = st.revision
	prev := ""
	for i, pm := range hdr.GetMembers() {
		if err := checkMemberID(pm.GetId()); err != nil {
			return nil, snapErr("member: %v", err)
		}
		if i > 0 && pm.GetId() <= prev {
			return nil, snapErr("members not sorted at %q", pm.GetId())
		}
		prev = pm.GetId()
		s := MemberState(pm.GetState())
		if pm.GetState() < 1 || pm.GetState() > 4 || pm.GetCapacity() < MinWeight || pm.GetCapacity() > MaxWeight ||
			pm.GetLeaderPriority() > MaxLeaderPriority {
			return nil, snapErr("member %q: state %d capacity %d leader priority %d", pm.GetId(), pm.GetState(), pm.GetCapacity(), pm.GetLeaderPriority())
		}
		st.members[pm.GetId()] = &Member{
			ID: pm.GetId(), PeerAddr: pm.GetPeerAddress(), ClientAddr: pm.GetClientAddress(), HTTPAddr: pm.GetHttpAddress(),
			Voter: pm.GetVoter(), Capacity: pm.GetCapacity(), State: s, AppHealthy: pm.GetAppHealthy(),
			Draining: pm.GetDraining(), StateRevision: pm.GetStateRevision(), JoinRevision: pm.GetJoinRevision(),
			LeaderPriority: pm.GetLeaderPriority(),
		}
	}
	want := hdr.GetResourceCount()
	st.res = make([]resEntry, 0, want)
	st.byID = make(map[string]int32, want)
	prev = ""
	for {
		f, err := next()
		if err != nil {
			return nil, err
		}
		if end := f.GetEnd(); end != nil {
			if end.GetResourceCount() != want || uint64(len(st.res)) != want {
				return nil, snapErr("resource count: header %d, end %d, read %d", want, end.GetResourceCount(), len(st.res))
			}
			break
		}
		batch := f.GetResources()
		if batch == nil {
			return nil, snapErr("unexpected frame %T", f.GetFrame())
		}
		for _, pr := range batch.GetResources() {
			id := pr.GetId()
			if len(st.res) > 0 && id <= prev {
				return nil, snapErr("resources not sorted at %q", id)
			}
			prev = id
			if err := checkResourceSpec(&pb.ResourceSpec{Id: id, Weight: pr.GetWeight(), Labels: pr.GetLabels()}); err != nil || pr.GetWeight() == 0 {
				return nil, snapErr("resource %q: weight %d: %v", id, pr.GetWeight(), err)
			}
			if uint64(len(st.res)) >= want {
				return nil, snapErr("more resources than the header's %d", want)
			}
			r := st.add(Resource{ID: id, Weight: pr.GetWeight(), Labels: toLabels(pr.GetLabels())})
			if o := pr.GetOwner(); o != "" {
				m, ok := st.members[o]
				if !ok {
					return nil, snapErr("resource %q owned by unknown member %q", id, o)
				}
				st.setOwner(r, m.ID, pr.GetEpoch()) // m.ID: one shared string per owner
			} else if pr.GetEpoch() != 0 {
				return nil, snapErr("unowned resource %q has epoch %d", id, pr.GetEpoch())
			}
		}
	}
	if err := st.Check(); err != nil {
		return nil, snapErr("%v", err)
	}
	return st, nil
}
