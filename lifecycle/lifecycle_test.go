package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/heartbeat-sidecar/heartbeat/election"
	"github.com/heartbeat-sidecar/heartbeat/internal/retry"
	"github.com/heartbeat-sidecar/heartbeat/rpc/api"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func withReason(code codes.Code, reason string) error {
	s, err := status.New(code, "x").WithDetails(&errdetails.ErrorInfo{Domain: api.ErrorDomain, Reason: reason})
	if err != nil {
		panic(err)
	}
	return s.Err()
}

// TestRetryRules: the shared rule, and how a join and the node's own
// writes widen it.
func TestRetryRules(t *testing.T) {
	for _, tc := range []struct {
		name            string
		err             error
		join, selfWrite bool
	}{
		{"no leader", status.Error(codes.Unavailable, "no leader"), true, true},
		{"leader moved", withReason(codes.FailedPrecondition, api.ReasonNotLeader), true, true},
		{"wrong cluster", withReason(codes.FailedPrecondition, api.ReasonWrongCluster), false, true},
		{"state conflict", status.Error(codes.FailedPrecondition, "address in use"), false, true},
		{"id taken", status.Error(codes.AlreadyExists, "id in use"), false, true},
		{"malformed", status.Error(codes.InvalidArgument, "bad"), false, false},
		{"unknown member", status.Error(codes.NotFound, "no"), true, false},
		{"refused by the leader", status.Error(codes.PermissionDenied, "no"), true, false},
		{"no membership state", status.Error(codes.Unimplemented, "no"), true, false},
		{"configuration change in flight", status.Error(codes.Internal, "configuration changed"), true, true},
		{"not in the configuration yet", fmt.Errorf("x: %w", retry.ErrTemporary), true, true},
	} {
		if got := joinRetryable(tc.err); got != tc.join {
			t.Errorf("%s: joinRetryable = %v, want %v", tc.name, got, tc.join)
		}
		if got := selfWriteRetryable(tc.err); got != tc.selfWrite {
			t.Errorf("%s: selfWriteRetryable = %v, want %v", tc.name, got, tc.selfWrite)
		}
	}
}

// TestLeaveStatus: a failed step keeps a status error's code; other errors
// get the code of their cause.
func TestLeaveStatus(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want codes.Code
	}{
		{status.Error(codes.FailedPrecondition, "draining"), codes.FailedPrecondition},
		{fmt.Errorf("%w (last error: x)", context.DeadlineExceeded), codes.DeadlineExceeded},
		{context.Canceled, codes.Canceled},
		{errors.New("boom"), codes.Unavailable},
	} {
		if got := status.Code(leaveStatus("drain", tc.err)); got != tc.want {
			t.Errorf("leaveStatus(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestPrepareRejoin: what a start finds in the data dir decides whether the
// node joins again, and through whom.
func TestPrepareRejoin(t *testing.T) {
	initial := []election.Peer{{ID: "n1", Address: "a1"}, {ID: "n2", Address: "a2"}, {ID: "n3", Address: "a3"}}
	for _, tc := range []struct {
		name      string
		marker    *Marker // nil: none
		join      []string
		initial   []election.Peer
		rejoin    bool
		wantJoin  []string
		wantErr   error
		wantPhase string // the marker's phase afterwards ("" none)
	}{
		{name: "no marker: as configured", join: []string{"x"}, wantJoin: []string{"x"}},
		{name: "left: through the other initial members", marker: &Marker{Phase: PhaseLeft}, initial: initial,
			rejoin: true, wantJoin: []string{"a2", "a3"}, wantPhase: PhaseRejoining},
		{name: "rejoining: through Join", marker: &Marker{Phase: PhaseRejoining}, join: []string{"j"},
			rejoin: true, wantJoin: []string{"j"}, wantPhase: PhaseRejoining},
		{name: "left with nobody to ask", marker: &Marker{Phase: PhaseLeft}, wantErr: ErrInvalidConfig, wantPhase: PhaseRejoining},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.marker != nil {
				if err := WriteMarker(dir, *tc.marker); err != nil {
					t.Fatal(err)
				}
			}
			join, rejoin, err := PrepareRejoin(dir, "n1", tc.join, tc.initial, hclog.NewNullLogger())
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if err == nil && (rejoin != tc.rejoin || fmt.Sprint(join) != fmt.Sprint(tc.wantJoin)) {
				t.Errorf("join %v rejoin %v, want %v %v", join, rejoin, tc.wantJoin, tc.rejoin)
			}
			m, found, err := ReadMarker(dir)
			if err != nil || found != (tc.wantPhase != "") || m.Phase != tc.wantPhase {
				t.Errorf("marker afterwards: %+v found %v err %v, want phase %q", m, found, err, tc.wantPhase)
			}
		})
	}
}

func TestReadMarkerCorrupt(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(MarkerPath(dir), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ReadMarker(dir); err == nil {
		t.Error("a corrupt marker was read")
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{ID: "n1", ClusterID: "c", DataDir: "/d"}
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", ok, true},
		{"no id", Config{ClusterID: "c", DataDir: "/d"}, false},
		{"negative drain", Config{ID: "n1", ClusterID: "c", DataDir: "/d", DrainTimeout: -time.Second}, false},
	} {
		c := tc.cfg
		if err := c.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: %v, want ok=%v", tc.name, err, tc.ok)
		}
		if tc.ok && (c.DrainTimeout != 5*time.Second || c.JoinRetryMax != 2*time.Second) {
			t.Errorf("%s: defaults not filled: %+v", tc.name, c)
		}
	}
}
