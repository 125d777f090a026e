package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/membership"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// resourcePrefix is the path of one resource: /v1/resources/{id}, the id
// path-escaped (so it may contain '/').
const resourcePrefix = "/v1/resources/"

// maxBodyBytes bounds a JSON request body (a full batch of MaxBatch
// resources with labels fits).
const maxBodyBytes = 32 << 20

// httpWriteTimeout bounds a write made over HTTP (forwarding included).
const httpWriteTimeout = 15 * time.Second

// Resource is one resource as served on GET /v1/resources.
type Resource struct {
	ID     string            `json:"id"`
	Owner  string            `json:"owner"` // "" while unassigned
	Epoch  uint64            `json:"epoch"` // the owner's fencing token
	Weight uint32            `json:"weight"`
	Labels map[string]string `json:"labels,omitempty"`
}

// ResourcesFromProto converts Coordinator resources.
func ResourcesFromProto(rs []*heartbeatpb.Resource) []Resource {
	out := make([]Resource, len(rs))
	for i, r := range rs {
		out[i] = Resource{ID: r.GetId(), Owner: r.GetOwnerNodeId(), Epoch: r.GetEpoch(), Weight: r.GetWeight(), Labels: r.GetLabels()}
	}
	return out
}

// resourceBody is the JSON body of PUT /v1/resources/{id} and an item of
// POST /v1/resources. Weight is signed so that a negative value is reported
// as such rather than as a decoding error.
type resourceBody struct {
	ID     string            `json:"id"`
	Weight *int64            `json:"weight"`
	Labels map[string]string `json:"labels"`
}

func (b resourceBody) spec() (*heartbeatpb.ResourceSpec, error) {
	p := &heartbeatpb.ResourceSpec{Id: b.ID, Labels: b.Labels}
	if b.Weight != nil {
		w := *b.Weight
		if w < membership.MinWeight || w > membership.MaxWeight {
			return nil, status.Errorf(codes.InvalidArgument, "resource %q: weight %d outside %d..%d", b.ID, w, membership.MinWeight, membership.MaxWeight)
		}
		p.Weight = uint32(w)
	}
	return p, nil
}

// httpCode maps a gRPC status code to an HTTP status.
func httpCode(c codes.Code) int {
	switch c {
	case codes.OK:
		return http.StatusOK
	case codes.InvalidArgument, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.FailedPrecondition, codes.Aborted:
		return http.StatusConflict
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.Unimplemented:
		return http.StatusNotImplemented
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.Canceled:
		return 499
	}
	return http.StatusInternalServerError
}

// writeStatusError answers with the HTTP form of a gRPC status error.
func writeStatusError(w http.ResponseWriter, err error) {
	s := status.Convert(err)
	writeJSONError(w, httpCode(s.Code()), s.Message())
}

// decodeBody decodes a JSON body strictly (unknown fields, trailing data and
// oversized bodies are errors). An empty body leaves v alone when
// allowEmpty.
func decodeBody(r *http.Request, v any, allowEmpty bool) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "reading body: %v", err)
	}
	if len(body) > maxBodyBytes {
		return status.Errorf(codes.InvalidArgument, "body over %d bytes", maxBodyBytes)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		if allowEmpty {
			return nil
		}
		return status.Error(codes.InvalidArgument, "empty body: want JSON")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return status.Errorf(codes.InvalidArgument, "bad JSON body: %v", err)
	}
	if dec.More() {
		return status.Error(codes.InvalidArgument, "bad JSON body: trailing data")
	}
	return nil
}

func writeCtx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), httpWriteTimeout)
}

// resourceID extracts and unescapes the id of /v1/resources/{id}.
func resourceID(r *http.Request) (string, error) {
	raw := strings.TrimPrefix(r.URL.EscapedPath(), resourcePrefix)
	id, err := url.PathUnescape(raw)
	if err != nil {
		return "", status.Errorf(codes.InvalidArgument, "bad resource id in path: %v", err)
	}
	if id == "" {
		return "", status.Error(codes.InvalidArgument, "empty resource id")
	}
	if len(id) > membership.MaxResourceIDLen {
		return "", status.Errorf(codes.InvalidArgument, "resource id of %d bytes, limit %d", len(id), membership.MaxResourceIDLen)
	}
	return id, nil
}

func (n *Node) handleListResources(w http.ResponseWriter, r *http.Request) {
	mode, err := readMode(r)
	if err != nil {
		writeStatusError(w, err)
		return
	}
	resp, err := n.coord.ListResources(r.Context(), &heartbeatpb.ListResourcesRequest{Consistency: mode})
	if err != nil {
		writeStatusError(w, err)
		return
	}
	setReadHeaders(w, resp.GetRead())
	writeJSON(w, http.StatusOK, ResourcesFromProto(resp.GetResources()))
}

// handleRegisterBatch: POST /v1/resources with a JSON list of
// {id, weight, labels}: all registered in one command, or none.
func (n *Node) handleRegisterBatch(w http.ResponseWriter, r *http.Request) {
	var items []resourceBody
	if err := decodeBody(r, &items, false); err != nil {
		writeStatusError(w, err)
		return
	}
	if len(items) > membership.MaxBatch {
		writeStatusError(w, status.Errorf(codes.InvalidArgument, "%d resources in one call, limit %d", len(items), membership.MaxBatch))
		return
	}
	req := &heartbeatpb.RegisterResourcesRequest{}
	for _, it := range items {
		spec, err := it.spec()
		if err != nil {
			writeStatusError(w, err)
			return
		}
		req.Resources = append(req.Resources, spec)
	}
	ctx, cancel := writeCtx(r)
	defer cancel()
	resp, err := n.coord.RegisterResources(ctx, req)
	reply(w, err, func() any { return writeResult(resp) })
}

// writeResultJSON is the answer to a write.
type writeResultJSON struct {
	Revision uint64   `json:"revision"`
	Changed  uint32   `json:"changed"`
	NotFound []string `json:"not_found,omitempty"`
}

func writeResult(p interface{ GetRevision() uint64 }) writeResultJSON {
	out := writeResultJSON{Revision: p.GetRevision()}
	if c, ok := p.(interface{ GetChanged() uint32 }); ok {
		out.Changed = c.GetChanged()
	}
	return out
}

func (n *Node) handleGetResource(w http.ResponseWriter, r *http.Request) {
	id, err := resourceID(r)
	if err != nil {
		writeStatusError(w, err)
		return
	}
	info, err := n.readyRead(r)
	if err != nil {
		writeStatusError(w, err)
		return
	}
	var res membership.Resource
	var ok bool
	n.mfsm.Read(func(s *membership.State) { res, ok = s.Resource(id); info.Revision = s.Revision() })
	setReadHeaders(w, info)
	if !ok {
		writeJSONError(w, http.StatusNotFound, fmt.Sprintf("resource %q is not registered", id))
		return
	}
	labels := map[string]string(nil)
	for _, l := range res.Labels {
		if labels == nil {
			labels = map[string]string{}
		}
		labels[l.Key] = l.Value
	}
	writeJSON(w, http.StatusOK, Resource{ID: res.ID, Owner: res.Owner, Epoch: res.Epoch, Weight: res.Weight, Labels: labels})
}

// handlePutResource: PUT /v1/resources/{id} with an optional JSON body
// {weight, labels}.
func (n *Node) handlePutResource(w http.ResponseWriter, r *http.Request) {
	id, err := resourceID(r)
	if err != nil {
		writeStatusError(w, err)
		return
	}
	var body resourceBody
	if err := decodeBody(r, &body, true); err != nil {
		writeStatusError(w, err)
		return
	}
	if body.ID != "" && body.ID != id {
		writeStatusError(w, status.Errorf(codes.InvalidArgument, "body id %q differs from the path's %q", body.ID, id))
		return
	}
	body.ID = id
	spec, err := body.spec()
	if err != nil {
		writeStatusError(w, err)
		return
	}
	ctx, cancel := writeCtx(r)
	defer cancel()
	resp, err := n.coord.RegisterResources(ctx, &heartbeatpb.RegisterResourcesRequest{Resources: []*heartbeatpb.ResourceSpec{spec}})
	reply(w, err, func() any { return writeResult(resp) })
}

func (n *Node) handleDeleteResource(w http.ResponseWriter, r *http.Request) {
	id, err := resourceID(r)
	if err != nil {
		writeStatusError(w, err)
		return
	}
	ctx, cancel := writeCtx(r)
	defer cancel()
	resp, err := n.coord.DeleteResources(ctx, &heartbeatpb.DeleteResourcesRequest{Ids: []string{id}})
	reply(w, err, func() any { return writeResult(resp) })
}

// handleAssignments: GET /v1/assignments?node=ID (default: this node).
func (n *Node) handleAssignments(w http.ResponseWriter, r *http.Request) {
	mode, err := readMode(r)
	if err != nil {
		writeStatusError(w, err)
		return
	}
	resp, err := n.coord.ListAssignments(r.Context(), &heartbeatpb.ListAssignmentsRequest{NodeId: r.URL.Query().Get("node"), Consistency: mode})
	if err != nil {
		writeStatusError(w, err)
		return
	}
	setReadHeaders(w, resp.GetRead())
	writeJSON(w, http.StatusOK, ResourcesFromProto(resp.GetResources()))
}

// handleDrain: POST /v1/drain?node=ID and /v1/undrain?node=ID (default:
// this node).
func (n *Node) handleDrain(draining bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := writeCtx(r)
		defer cancel()
		resp, err := n.coord.SetDrain(ctx, &heartbeatpb.SetDrainRequest{NodeId: r.URL.Query().Get("node"), Draining: draining})
		reply(w, err, func() any { return writeResult(resp) })
	}
}

// handleAppHeartbeat: POST /v1/app/heartbeat with {"ttl_ms": N}.
func (n *Node) handleAppHeartbeat(w http.ResponseWriter, r *http.Request) {
	var body struct {
		TTLMs int64 `json:"ttl_ms"`
	}
	if err := decodeBody(r, &body, false); err != nil {
		writeStatusError(w, err)
		return
	}
	resp, err := n.coord.AppHeartbeat(r.Context(), &heartbeatpb.AppHeartbeatRequest{Ttl: durationpb.New(time.Duration(body.TTLMs) * time.Millisecond)})
	reply(w, err, func() any {
		return map[string]any{"app_healthy": resp.GetAppHealthy(), "draining": resp.GetDraining(), "state": resp.GetState()}
	})
}
