package node

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// Status is this node's view, as served on GET /v1/status.
type Status struct {
	ID           string     `json:"id"`
	State        string     `json:"state"` // leader, follower, candidate, shutdown
	Term         uint64     `json:"term"`
	Leader       LeaderRef  `json:"leader"`
	FencingToken uint64     `json:"fencing_token"`
	IsLeader     bool       `json:"is_leader"`   // leader AND lease valid
	LeaseUntil   *time.Time `json:"lease_until"` // RFC 3339 (nanoseconds); null unless leader
	CommitIndex  uint64     `json:"commit_index"`
	AppliedIndex uint64     `json:"applied_index"`
	ClusterID    string     `json:"cluster_id"`
	Voter        bool       `json:"voter"`
}

// LeaderRef names a leader; ID and Address are empty when none is known.
// ClientAddress and HTTPAddress are filled where the source knows them
// (GET /v1/leader, for one), once the leader has registered them.
type LeaderRef struct {
	ID            string `json:"id"`
	Address       string `json:"address"` // peer address
	ClientAddress string `json:"client_address,omitempty"`
	HTTPAddress   string `json:"http_address,omitempty"`
}

// Member is one node as served on GET /v1/members: its place in the raft
// configuration merged with its membership record.
type Member struct {
	ID          string     `json:"id"`
	State       string     `json:"state"` // alive, suspect, dead, left; "" before it registered
	Voter       bool       `json:"voter"`
	AppHealthy  bool       `json:"app_healthy"`
	Draining    bool       `json:"draining"`
	Owned       uint32     `json:"owned"` // resources it owns
	Addresses   Addresses  `json:"addresses"`
	Address     string     `json:"address"`  // peer address (as in the raft configuration)
	Suffrage    string     `json:"suffrage"` // voter, nonvoter, staging; "" when not in the raft configuration
	IsLeader    bool       `json:"is_leader"`
	LastContact *time.Time `json:"last_contact"` // leader's view; null if unknown
	// LeaderPriority: a healthy voter with a higher priority than the
	// leader's is handed leadership (0..100).
	LeaderPriority uint32 `json:"leader_priority"`
}

// Addresses are a member's three addresses.
type Addresses struct {
	Peer   string `json:"peer"`
	Client string `json:"client"`
	HTTP   string `json:"http"`
}

// Status returns this node's view: the same data as the Coordinator's Status.
func (n *Node) Status() Status {
	return StatusFromProto(n.coord.StatusSnapshot())
}

// StatusFromProto converts a Coordinator StatusResponse.
func StatusFromProto(p *heartbeatpb.GetStatusResponse) Status {
	s := Status{
		ID: p.GetNodeId(), State: heartbeatpb.Short(p.GetState()), Term: p.GetTerm(),
		Leader:       leaderRefFromProto(p.GetLeader()),
		FencingToken: p.GetFencingToken(), IsLeader: p.GetIsLeader(),
		CommitIndex: p.GetCommitIndex(), AppliedIndex: p.GetAppliedIndex(),
		ClusterID: p.GetClusterId(), Voter: p.GetSuffrage() == heartbeatpb.Suffrage_SUFFRAGE_VOTER,
	}
	s.LeaseUntil = instant(p.GetLeaseUntil())
	return s
}

// leaderRefFromProto converts a Coordinator NodeRef.
func leaderRefFromProto(l *heartbeatpb.NodeRef) LeaderRef {
	return LeaderRef{ID: l.GetNodeId(), Address: l.GetPeerAddress(), ClientAddress: l.GetClientAddress(), HTTPAddress: l.GetHttpAddress()}
}

// reply answers an HTTP request with the outcome of a Coordinator call: its
// error as a status error (see writeStatusError), or 200 with body() as
// JSON.
func reply(w http.ResponseWriter, err error, body func() any) {
	if err != nil {
		writeStatusError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, body())
}

// Members returns the raft configuration as this node knows it.
func (n *Node) Members() ([]Member, error) {
	ms, err := n.coord.MembersSnapshot()
	if err != nil {
		return nil, err
	}
	return MembersFromProto(ms), nil
}

// MembersFromProto converts Coordinator members.
func MembersFromProto(ms []*heartbeatpb.Member) []Member {
	out := make([]Member, 0, len(ms))
	for _, m := range ms {
		voter := m.GetSuffrage() == heartbeatpb.Suffrage_SUFFRAGE_VOTER
		out = append(out, Member{
			ID: m.GetNodeId(), State: heartbeatpb.Short(m.GetState()), Voter: voter, AppHealthy: m.GetAppHealthy(), Draining: m.GetDraining(),
			Owned:     m.GetOwned(),
			Addresses: Addresses{Peer: m.GetPeerAddress(), Client: m.GetClientAddress(), HTTP: m.GetHttpAddress()},
			Address:   m.GetPeerAddress(), Suffrage: heartbeatpb.Short(m.GetSuffrage()), IsLeader: m.GetRaftLeader(),
			LastContact:    instant(m.GetLastContact()),
			LeaderPriority: m.GetLeaderPriority(),
		})
	}
	return out
}

// instant converts a Timestamp (nil when unset).
func instant(p *timestamppb.Timestamp) *time.Time {
	if p == nil {
		return nil
	}
	t := p.AsTime().UTC()
	return &t
}

// route maps HTTP methods to handlers for one path.
type route map[string]http.HandlerFunc

// httpHandler serves the node's HTTP surface. Unknown paths get a 404 and
// methods a path does not serve a 405, both with a JSON error body.
// /v1/resources/{id} takes the (path-escaped) resource id as the rest of
// the path; /v1/members/{id} and /v1/members/{id}/priority a member id.
// The leadership and cluster-change endpoints are in http_cluster.go, the
// server-sent-event watches in http_watch.go.
func (n *Node) httpHandler() http.Handler {
	metrics := promhttp.HandlerFor(n.registry, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	get := func(h http.HandlerFunc) route { return route{http.MethodGet: h, http.MethodHead: h} }
	routes := map[string]route{
		"/healthz":    get(n.handleHealthz),
		"/readyz":     get(n.handleReadyz),
		"/metrics":    get(metrics.ServeHTTP),
		"/v1/status":  get(n.handleStatus),
		"/v1/lease":   get(n.handleLease),
		"/v1/members": {http.MethodGet: n.handleMembers, http.MethodHead: n.handleMembers, http.MethodPost: n.handleJoin},
	}
	n.clusterRoutes(routes)
	n.watchRoutes(routes)
	if n.mfsm != nil {
		routes["/v1/resources"] = route{http.MethodGet: n.handleListResources, http.MethodPost: n.handleRegisterBatch}
		routes["/v1/assignments"] = get(n.handleAssignments)
		routes["/v1/drain"] = route{http.MethodPost: n.handleDrain(true)}
		routes["/v1/undrain"] = route{http.MethodPost: n.handleDrain(false)}
		routes["/v1/app/heartbeat"] = route{http.MethodPost: n.handleAppHeartbeat}
	}
	resource := route{http.MethodGet: n.handleGetResource, http.MethodPut: n.handlePutResource, http.MethodDelete: n.handleDeleteResource}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.cfg.EnablePprof && strings.HasPrefix(r.URL.Path, "/debug/pprof/") {
			pprofHandler(w, r)
			return
		}
		rt, ok := routes[r.URL.Path]
		if !ok && n.mfsm != nil && strings.HasPrefix(r.URL.Path, resourcePrefix) {
			rt, ok = resource, true
		}
		if !ok && strings.HasPrefix(r.URL.Path, memberPrefix) {
			rt, ok = memberRoute(n, r)
		}
		if !ok {
			writeJSONError(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path)
			return
		}
		h, ok := rt[r.Method]
		if !ok {
			var allow []string
			for m := range rt {
				allow = append(allow, m)
			}
			sort.Strings(allow)
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeJSONError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed on "+r.URL.Path)
			return
		}
		h(w, r)
	})
}

// handleHealthz answers 200 "ok" while the process serves HTTP at all.
func (n *Node) handleHealthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

// handleReadyz answers 200 when Ready, else 503; the body lists each check.
func (n *Node) handleReadyz(w http.ResponseWriter, _ *http.Request) {
	ok, lines := n.Ready()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if ok {
		w.WriteHeader(http.StatusOK)
	} else {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_, _ = w.Write([]byte(strings.Join(lines, "\n") + "\n"))
}

func (n *Node) handleStatus(w http.ResponseWriter, r *http.Request) {
	mode, err := readMode(r)
	if err != nil {
		writeStatusError(w, err)
		return
	}
	resp, err := n.coord.GetStatus(r.Context(), &heartbeatpb.GetStatusRequest{Consistency: mode})
	if err != nil {
		writeStatusError(w, err)
		return
	}
	setReadHeaders(w, resp.GetRead())
	writeJSON(w, http.StatusOK, StatusFromProto(resp))
}

func (n *Node) handleMembers(w http.ResponseWriter, r *http.Request) {
	mode, err := readMode(r)
	if err != nil {
		writeStatusError(w, err)
		return
	}
	resp, err := n.coord.ListMembers(r.Context(), &heartbeatpb.ListMembersRequest{Consistency: mode})
	if err != nil {
		writeStatusError(w, err)
		return
	}
	setReadHeaders(w, resp.GetRead())
	writeJSON(w, http.StatusOK, MembersFromProto(resp.GetMembers()))
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeJSONError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]any{"error": msg, "code": code})
}

// pprofHandler serves Go's profiles under /debug/pprof/ (Config.EnablePprof).
func pprofHandler(w http.ResponseWriter, r *http.Request) {
	switch strings.TrimPrefix(r.URL.Path, "/debug/pprof/") {
	case "cmdline":
		pprof.Cmdline(w, r)
	case "profile":
		pprof.Profile(w, r)
	case "symbol":
		pprof.Symbol(w, r)
	case "trace":
		pprof.Trace(w, r)
	default:
		pprof.Index(w, r) // the index, and named profiles: heap, goroutine, ...
	}
}
