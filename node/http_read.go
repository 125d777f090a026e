package node

import (
	"net/http"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// ReadInfo says how fresh an HTTP answer is (the gRPC ReadInfo); the same
// is in the X-Heartbeat-* headers of every read.
type ReadInfo struct {
	Revision      uint64 `json:"revision"`
	Consistent    bool   `json:"consistent"`
	KnownLeader   bool   `json:"known_leader"`
	LeaderID      string `json:"leader_id,omitempty"`
	LastContactMs int64  `json:"last_contact_ms"`
}

// readInfoFromProto converts a ReadInfo (nil for none).
func readInfoFromProto(p *heartbeatpb.ReadInfo) *ReadInfo {
	if p == nil {
		return nil
	}
	return &ReadInfo{Revision: p.GetRevision(), Consistent: p.GetConsistent(), KnownLeader: p.GetKnownLeader(),
		LeaderID: p.GetLeaderNodeId(), LastContactMs: lastContactMs(p)}
}

// lastContactMs is the ReadInfo's time since the leader's last contact in
// milliseconds; -1 when the node never heard from a leader.
func lastContactMs(p *heartbeatpb.ReadInfo) int64 {
	if p.GetSinceLeaderContact() == nil {
		return -1
	}
	return p.GetSinceLeaderContact().AsDuration().Milliseconds()
}

// readMode is the consistency a read asks for: ?stale (or ?stale=true),
// ?consistency=stale|consistent; consistent by default.
func readMode(r *http.Request) (heartbeatpb.Consistency, error) {
	q := r.URL.Query()
	mode := heartbeatpb.Consistency_CONSISTENCY_CONSISTENT
	if v, ok := q["stale"]; ok {
		switch strings.ToLower(strings.Join(v, "")) {
		case "", "1", "true":
			mode = heartbeatpb.Consistency_CONSISTENCY_STALE
		case "0", "false":
		default:
			return mode, status.Errorf(codes.InvalidArgument, "stale=%q: want no value, true or false", strings.Join(v, ","))
		}
	}
	if v := q.Get("consistency"); v != "" {
		switch strings.ToLower(v) {
		case "stale":
			mode = heartbeatpb.Consistency_CONSISTENCY_STALE
		case "consistent":
			if _, ok := q["stale"]; ok && mode == heartbeatpb.Consistency_CONSISTENCY_STALE {
				return mode, status.Error(codes.InvalidArgument, "stale and consistency=consistent together")
			}
			mode = heartbeatpb.Consistency_CONSISTENCY_CONSISTENT
		default:
			return mode, status.Errorf(codes.InvalidArgument, "consistency=%q: want consistent or stale", v)
		}
	}
	return mode, nil
}

// readyRead readies a read the HTTP face makes from the node's state itself
// (one resource, the assignments watch): the mode of r, then the
// Coordinator's wait for it; the state read after it returns is fresh
// enough.
func (n *Node) readyRead(r *http.Request) (*heartbeatpb.ReadInfo, error) {
	mode, err := readMode(r)
	if err != nil {
		return nil, err
	}
	return n.coord.Read(r.Context(), mode)
}

// setReadHeaders writes the freshness headers of a read.
func setReadHeaders(w http.ResponseWriter, info *heartbeatpb.ReadInfo) {
	if info == nil {
		return
	}
	h := w.Header()
	h.Set("X-Heartbeat-Revision", strconv.FormatUint(info.GetRevision(), 10))
	h.Set("X-Heartbeat-Consistent", strconv.FormatBool(info.GetConsistent()))
	h.Set("X-Heartbeat-Known-Leader", strconv.FormatBool(info.GetKnownLeader()))
	h.Set("X-Heartbeat-Last-Contact-Ms", strconv.FormatInt(lastContactMs(info), 10))
}
