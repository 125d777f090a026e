package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/heartbeat-sidecar/heartbeat/node"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// errUnhealthy: the health check answered, but not SERVING (exit 1, no
// extra message).
var errUnhealthy = errors.New("not serving")

// clientFlags are the flags every client command takes.
type clientFlags struct {
	addr    string
	json    bool
	timeout time.Duration
}

func clientUsage(cmd, what string) string {
	return fmt.Sprintf("Usage: heartbeat %s [flags]\n\n%s\n", cmd, what)
}

// parseClient defines the common client flags (plus extra ones) and parses.
func parseClient(cmd, what string, args []string, getenv env, stdout io.Writer, extra func(*flag.FlagSet)) (clientFlags, error) {
	var c clientFlags
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.StringVar(&c.addr, "addr", "127.0.0.1:7401", "client gRPC address of the node to ask")
	fs.BoolVar(&c.json, "json", false, "print JSON instead of a table")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Second, "deadline of the request")
	noEnv := []string{"json", "timeout"}
	if extra != nil {
		before := map[string]bool{}
		fs.VisitAll(func(f *flag.Flag) { before[f.Name] = true })
		extra(fs)
		fs.VisitAll(func(f *flag.Flag) {
			if !before[f.Name] {
				noEnv = append(noEnv, f.Name)
			}
		})
	}
	if err := parseFlags(fs, args, getenv, stdout, clientUsage(cmd, what), noEnv...); err != nil {
		return c, err
	}
	if c.addr == "" {
		return c, usageErrorf("--addr is empty")
	}
	if c.timeout <= 0 {
		return c, usageErrorf("--timeout must be positive")
	}
	return c, nil
}

// dial opens a client connection (lazily: errors show on the first call).
func dial(addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

func cmdStatus(ctx context.Context, args []string, stdout, _ io.Writer, getenv env) error {
	c, err := parseClient("status", "Prints the node's view: state, term, leader, fencing token, lease, indexes.", args, getenv, stdout, nil)
	if err != nil {
		return err
	}
	conn, err := dial(c.addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := heartbeatpb.NewCoordinatorClient(conn).Status(ctx, &heartbeatpb.StatusRequest{})
	if err != nil {
		return fmt.Errorf("status from %s: %w", c.addr, err)
	}
	s := node.StatusFromProto(resp)
	if c.json {
		return printJSON(stdout, s)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	lease := "-"
	if s.LeaseUntil != nil {
		lease = s.LeaseUntil.Format(time.RFC3339Nano)
	}
	rows := [][2]string{
		{"ID", s.ID}, {"CLUSTER", s.ClusterID}, {"STATE", s.State},
		{"TERM", fmt.Sprint(s.Term)}, {"LEADER", leaderString(s.Leader.ID, s.Leader.Address)},
		{"FENCING TOKEN", fmt.Sprint(s.FencingToken)}, {"IS LEADER", fmt.Sprint(s.IsLeader)},
		{"LEASE UNTIL", lease}, {"COMMIT INDEX", fmt.Sprint(s.CommitIndex)},
		{"APPLIED INDEX", fmt.Sprint(s.AppliedIndex)}, {"VOTER", fmt.Sprint(s.Voter)},
	}
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\n", r[0], r[1])
	}
	return tw.Flush()
}

func leaderString(id, addr string) string {
	if id == "" && addr == "" {
		return "(none)"
	}
	return fmt.Sprintf("%s (%s)", id, addr)
}

func cmdMembers(ctx context.Context, args []string, stdout, _ io.Writer, getenv env) error {
	c, err := parseClient("members", "Lists the members as the node knows them: membership state (alive, suspect, dead,\nleft), raft suffrage, leader, application health, drain, resources owned.", args, getenv, stdout, nil)
	if err != nil {
		return err
	}
	conn, err := dial(c.addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := heartbeatpb.NewCoordinatorClient(conn).Members(ctx, &heartbeatpb.MembersRequest{})
	if err != nil {
		return fmt.Errorf("members from %s: %w", c.addr, err)
	}
	ms := node.MembersFromProto(resp.GetMembers())
	if c.json {
		return printJSON(stdout, ms)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tSUFFRAGE\tLEADER\tAPP\tDRAINING\tOWNED\tADDRESS\tLAST CONTACT")
	for _, m := range ms {
		contact := "-"
		if m.LastContact != nil {
			contact = time.Since(*m.LastContact).Round(time.Millisecond).String() + " ago"
		}
		leader := "-"
		if m.IsLeader {
			leader = "*"
		}
		app := "healthy"
		if !m.AppHealthy {
			app = "unhealthy"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%v\t%d\t%s\t%s\n", m.ID, dash(m.State), dash(m.Suffrage), leader, app,
			m.Draining, m.Owned, m.Address, contact)
	}
	return tw.Flush()
}

// dash shows an empty field as "-".
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// leaderJSON is the JSON form of a leader event.
type leaderJSON struct {
	Leader       node.LeaderRef `json:"leader"`
	Term         uint64         `json:"term"`
	FencingToken uint64         `json:"fencing_token"`
	IsSelf       bool           `json:"is_self"`
	LeaseUntil   *time.Time     `json:"lease_until"`
	FellBehind   bool           `json:"fell_behind"`
	Observed     *time.Time     `json:"observed"`
}

func toLeaderJSON(ev *heartbeatpb.LeaderEvent) leaderJSON {
	return leaderJSON{
		Leader:       node.LeaderRef{ID: ev.GetLeader().GetId(), Address: ev.GetLeader().GetAddress()},
		Term:         ev.GetTerm(),
		FencingToken: ev.GetFencingToken(),
		IsSelf:       ev.GetIsSelf(),
		LeaseUntil:   unixNano(ev.GetLeaseUntilUnixNano()),
		FellBehind:   ev.GetFellBehind(),
		Observed:     unixNano(ev.GetObservedUnixNano()),
	}
}

func unixNano(ns int64) *time.Time {
	if ns == 0 {
		return nil
	}
	t := time.Unix(0, ns).UTC()
	return &t
}

func cmdLeader(ctx context.Context, args []string, stdout, _ io.Writer, getenv env) error {
	var watch bool
	c, err := parseClient("leader", "Prints the leader the node knows; --watch streams every change until Ctrl-C.",
		args, getenv, stdout, func(fs *flag.FlagSet) {
			fs.BoolVar(&watch, "watch", false, "stream leadership changes until interrupted")
		})
	if err != nil {
		return err
	}
	conn, err := dial(c.addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if !watch {
		var tcancel context.CancelFunc
		sctx, tcancel = context.WithTimeout(sctx, c.timeout)
		defer tcancel()
	}
	stream, err := heartbeatpb.NewCoordinatorClient(conn).WatchLeader(sctx, &heartbeatpb.WatchLeaderRequest{})
	if err != nil {
		return fmt.Errorf("leader from %s: %w", c.addr, err)
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			if watch && ctx.Err() != nil {
				return nil // interrupted: a normal end of --watch
			}
			return fmt.Errorf("leader from %s: %w", c.addr, err)
		}
		if c.json {
			if err := printJSONLine(stdout, toLeaderJSON(ev)); err != nil {
				return err
			}
		} else {
			printLeaderLine(stdout, ev, watch)
		}
		if !watch {
			return nil
		}
	}
}

func printLeaderLine(w io.Writer, ev *heartbeatpb.LeaderEvent, stamp bool) {
	var b strings.Builder
	if stamp {
		b.WriteString(time.Unix(0, ev.GetObservedUnixNano()).Format("15:04:05.000") + "  ")
	}
	if ev.GetLeader().GetId() == "" {
		b.WriteString("leader=(none)")
	} else {
		fmt.Fprintf(&b, "leader=%s address=%s", ev.GetLeader().GetId(), ev.GetLeader().GetAddress())
	}
	fmt.Fprintf(&b, " term=%d fencing_token=%d", ev.GetTerm(), ev.GetFencingToken())
	if ev.GetIsSelf() {
		b.WriteString(" is_self=true")
	}
	if ev.GetFellBehind() {
		b.WriteString(" fell_behind=true")
	}
	fmt.Fprintln(w, b.String())
}

func cmdHealth(ctx context.Context, args []string, stdout, _ io.Writer, getenv env) error {
	c, err := parseClient("health", "Asks the node's gRPC health service; exit 0 if SERVING (the node is ready), else 1.", args, getenv, stdout, nil)
	if err != nil {
		return err
	}
	conn, err := dial(c.addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return fmt.Errorf("health of %s: %w", c.addr, err)
	}
	fmt.Fprintln(stdout, resp.GetStatus().String())
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return errUnhealthy
	}
	return nil
}

func cmdVersion(_ context.Context, args []string, stdout, _ io.Writer, getenv env) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	if err := parseFlags(fs, args, getenv, stdout, "Usage: heartbeat version\n"); err != nil {
		return err
	}
	raftVersion := "unknown"
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		for _, d := range bi.Deps {
			if d.Path == "github.com/hashicorp/raft" {
				raftVersion = d.Version
			}
		}
	}
	fmt.Fprintf(stdout, "heartbeat %s (%s, hashicorp/raft %s)\n", v, runtime.Version(), raftVersion)
	return nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printJSONLine(w io.Writer, v any) error {
	return json.NewEncoder(w).Encode(v)
}
