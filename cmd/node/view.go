package main

// The JSON the commands print with --json. Keys follow the Coordinator
// proto's field names (a member is always node_id); docs/cli.md lists them.

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/client"
)

// nodeRef names a node (the leader) with its addresses.
type nodeRef struct {
	NodeID        string `json:"node_id"`
	Address       string `json:"address"` // peer address
	ClientAddress string `json:"client_address,omitempty"`
	HTTPAddress   string `json:"http_address,omitempty"`
}

// readView says how fresh a read is.
type readView struct {
	Revision      uint64 `json:"revision"`
	Consistent    bool   `json:"consistent"`
	KnownLeader   bool   `json:"known_leader"`
	LeaderID      string `json:"leader_id,omitempty"`
	LastContactMs int64  `json:"last_contact_ms"` // -1: never heard from the leader
}

func readOf(r client.ReadInfo) *readView {
	return &readView{Revision: r.Revision, Consistent: r.Consistent, KnownLeader: r.KnownLeader,
		LeaderID: r.LeaderID, LastContactMs: lastContactMs(r.LastContact)}
}

func lastContactMs(d time.Duration) int64 {
	if d < 0 {
		return -1
	}
	return d.Milliseconds()
}

// timePtr is t, or nil (JSON null) when zero.
func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// statusView is status --json.
type statusView struct {
	NodeID       string     `json:"node_id"`
	ClusterID    string     `json:"cluster_id"`
	State        string     `json:"state"` // leader, follower, candidate, shutdown
	Term         uint64     `json:"term"`
	Leader       nodeRef    `json:"leader"`
	FencingToken uint64     `json:"fencing_token"`
	IsLeader     bool       `json:"is_leader"`   // leads AND its lease is valid
	LeaseUntil   *time.Time `json:"lease_until"` // null unless is_leader
	CommitIndex  uint64     `json:"commit_index"`
	AppliedIndex uint64     `json:"applied_index"`
	Voter        bool       `json:"voter"`
	Read         *readView  `json:"read"`
}

func statusOf(s client.Status) statusView {
	return statusView{
		NodeID: s.ID, ClusterID: s.ClusterID, State: s.State, Term: s.Term,
		Leader:       nodeRef{NodeID: s.LeaderID, Address: s.LeaderAddress},
		FencingToken: s.FencingToken, IsLeader: s.IsLeader, LeaseUntil: timePtr(s.LeaseUntil),
		CommitIndex: s.CommitIndex, AppliedIndex: s.AppliedIndex, Voter: s.Voter, Read: readOf(s.Read),
	}
}

// memberView is one member in members --json.
type memberView struct {
	NodeID         string     `json:"node_id"`
	State          string     `json:"state"`       // alive, suspect, dead, left; "" before it registered
	Suffrage       string     `json:"suffrage"`    // voter, nonvoter, staging; "" when not in the raft configuration
	RaftLeader     bool       `json:"raft_leader"` // the raft leader, as the answering node knows
	Voter          bool       `json:"voter"`       // suffrage is voter
	AppHealthy     bool       `json:"app_healthy"`
	Draining       bool       `json:"draining"`
	Owned          uint32     `json:"owned"`
	LeaderPriority uint32     `json:"leader_priority"`
	Address        string     `json:"address"` // peer address
	ClientAddress  string     `json:"client_address"`
	HTTPAddress    string     `json:"http_address"`
	LastContact    *time.Time `json:"last_contact"` // the answering node's view; null if unknown
}

func membersOf(ms []client.Member) []memberView {
	out := make([]memberView, 0, len(ms))
	for _, m := range ms {
		out = append(out, memberView{
			NodeID: m.ID, State: m.State, Suffrage: m.Suffrage, RaftLeader: m.RaftLeader, Voter: m.Voter,
			AppHealthy: m.AppHealthy, Draining: m.Draining, Owned: m.Owned, LeaderPriority: m.LeaderPriority,
			Address: m.PeerAddress, ClientAddress: m.ClientAddress, HTTPAddress: m.HTTPAddress,
			LastContact: timePtr(m.LastContact),
		})
	}
	return out
}

// membersEventView is one line of members --watch --json.
type membersEventView struct {
	Revision    uint64       `json:"revision"`
	FellBehind  bool         `json:"fell_behind"`
	Reconnected bool         `json:"reconnected,omitempty"`
	Endpoint    string       `json:"endpoint"`
	Members     []memberView `json:"members"`
}

// leaderView is leader --json, and one line of leader --watch --json.
type leaderView struct {
	Leader       nodeRef `json:"leader"` // node_id "" when no leader is known
	Term         uint64  `json:"term"`
	FencingToken uint64  `json:"fencing_token"`
	// IsSelf: the answering node (endpoint) leads with a valid lease.
	IsSelf           bool       `json:"is_self"`
	LeaseUntil       *time.Time `json:"lease_until"`
	LeaseRemainingMs int64      `json:"lease_remaining_ms"`
	Endpoint         string     `json:"endpoint"`
	Read             *readView  `json:"read,omitempty"`
	// Watch only.
	Observed     *time.Time `json:"observed,omitempty"`
	FellBehind   bool       `json:"fell_behind,omitempty"`
	Reconnected  bool       `json:"reconnected,omitempty"`
	Disconnected bool       `json:"disconnected,omitempty"`
	Error        string     `json:"error,omitempty"`
}

func leaderOf(l client.Leader, remaining time.Duration) leaderView {
	v := leaderView{
		Leader: nodeRef{NodeID: l.ID, Address: l.PeerAddress, ClientAddress: l.ClientAddress, HTTPAddress: l.HTTPAddress},
		Term:   l.Term, FencingToken: l.FencingToken, IsSelf: l.IsSelf, LeaseUntil: timePtr(l.LeaseUntil),
		LeaseRemainingMs: max(remaining, 0).Milliseconds(), Endpoint: l.Endpoint,
	}
	return v
}

// resourceView is one resource in resources list --json and assignments --json.
type resourceView struct {
	ID     string            `json:"id"`
	Owner  string            `json:"owner"` // "" while unassigned
	Epoch  uint64            `json:"epoch"` // the owner's fencing token
	Weight uint32            `json:"weight"`
	Labels map[string]string `json:"labels,omitempty"`
}

func resourcesOf(rs []client.Resource) []resourceView {
	out := make([]resourceView, 0, len(rs))
	for _, r := range rs {
		out = append(out, resourceView{ID: r.ID, Owner: r.Owner, Epoch: r.Epoch, Weight: r.Weight, Labels: r.Labels})
	}
	return out
}

// assignmentEventView is one line of assignments --watch --json.
type assignmentEventView struct {
	Revision   uint64         `json:"revision"`
	Kind       string         `json:"kind"` // registered, assigned, deleted, resync
	ResourceID string         `json:"resource_id,omitempty"`
	Owner      string         `json:"owner,omitempty"`
	PrevOwner  string         `json:"prev_owner,omitempty"`
	Epoch      uint64         `json:"epoch,omitempty"`
	Resources  []resourceView `json:"resources,omitempty"` // resync only
}

// changeView is the answer of step-down and transfer.
type changeView struct {
	Previous     string  `json:"previous"` // leader id before the call
	Leader       nodeRef `json:"leader"`   // after it, as the serving node sees it
	Term         uint64  `json:"term"`
	FencingToken uint64  `json:"fencing_token"`
}

func changeOf(ch client.LeadershipChange) changeView {
	l := ch.Leader
	return changeView{Previous: ch.Previous, Term: l.Term, FencingToken: l.FencingToken,
		Leader: nodeRef{NodeID: l.ID, Address: l.PeerAddress, ClientAddress: l.ClientAddress, HTTPAddress: l.HTTPAddress}}
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printJSONLine(w io.Writer, v any) error {
	return json.NewEncoder(w).Encode(v)
}

// printReadLine prints how fresh an answer was, as the last line of a
// command's text output: "read: consistent at revision 12, leader n1" or
// "read: stale at revision 9, leader n1 last heard 40ms ago".
func printReadLine(w io.Writer, info client.ReadInfo) {
	mode := "stale"
	if info.Consistent {
		mode = "consistent"
	}
	leader := "no leader known"
	if info.KnownLeader {
		leader = "leader " + info.LeaderID
		switch ms := lastContactMs(info.LastContact); {
		case ms > 0 && !info.Consistent:
			leader += fmt.Sprintf(" last heard %dms ago", ms)
		case ms < 0:
			leader += " never heard from"
		}
	}
	fmt.Fprintf(w, "read: %s at revision %d, %s\n", mode, info.Revision, leader)
}

// dash shows an empty field as "-".
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
