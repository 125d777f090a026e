package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// statusJSON writes the body of GET /v1/status: a heartbeat.v1.GetStatusResponse in
// protojson, as Heartbeat's gateway writes it, so that the benchmark's poller reads both
// peers with one decoder.
var statusJSON = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}

// applyJSON is the body of a successful POST /v1/apply.
type applyJSON struct {
	Applied   int     `json:"applied"`
	Seconds   float64 `json:"seconds"`
	OpsPerSec float64 `json:"ops_per_sec"`
}

const maxApplyPerRequest = 1_000_000

// serveHTTP listens on addr and serves the status and apply endpoints in a goroutine owned by
// the returned server: http.Server.Shutdown stops it and waits for its handlers.
func serveHTTP(addr string, n *node, logger hclog.Logger) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", n.handleStatus)
	mux.HandleFunc("POST /v1/apply", n.handleApply)
	srv := &http.Server{Handler: mux}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("http serve", "error", err)
		}
	}()
	return srv, nil
}

func (n *node) handleStatus(w http.ResponseWriter, _ *http.Request) {
	addr, id := n.raft.LeaderWithID()
	st := &heartbeatpb.GetStatusResponse{
		NodeId:      n.id,
		State:       heartbeatpb.RaftStateOf(strings.ToLower(n.raft.State().String())),
		Term:        n.raft.CurrentTerm(),
		Leader:      &heartbeatpb.NodeRef{NodeId: string(id), PeerAddress: string(addr)},
		CommitIndex: n.raft.CommitIndex(),
	}
	b, err := statusJSON.Marshal(st)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

func (n *node) handleApply(w http.ResponseWriter, r *http.Request) {
	count, err := strconv.Atoi(r.URL.Query().Get("n"))
	if err != nil || count < 1 || count > maxApplyPerRequest {
		writeJSON(w, http.StatusBadRequest, map[string]string{
			"error": fmt.Sprintf("n must be an integer in 1..%d", maxApplyPerRequest)})
		return
	}
	took, err := n.apply(count)
	if errors.Is(err, ErrNotLeader) {
		_, id := n.raft.LeaderWithID()
		writeJSON(w, http.StatusConflict, map[string]string{"error": err.Error(), "leader": string(id)})
		return
	}
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, applyJSON{
		Applied: count, Seconds: took.Seconds(), OpsPerSec: float64(count) / took.Seconds(),
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
