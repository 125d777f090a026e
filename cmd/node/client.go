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
	c, pos, err := parseClientArgs(cmd, clientUsage(cmd, what), args, getenv, stdout, extra)
	if err == nil && len(pos) > 0 {
		err = usageErrorf("unexpected argument %q (flags start with --)", pos[0])
	}
	return c, err
}

// parseClientArgs is parseClient for a command with positional arguments
// (returned in order) and a usage text of its own.
func parseClientArgs(cmd, usage string, args []string, getenv env, stdout io.Writer, extra func(*flag.FlagSet)) (clientFlags, []string, error) {
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
	pos, err := parseFlagsArgs(fs, args, getenv, stdout, usage, noEnv...)
	if err != nil {
		return c, nil, err
	}
	if c.addr == "" {
		return c, nil, usageErrorf("--addr is empty")
	}
	if c.timeout <= 0 {
		return c, nil, usageErrorf("--timeout must be positive")
	}
	return c, pos, nil
}

// defaultTimeout changes the default of --timeout, for a command whose call
// takes longer than a read (call it from parseClient's extra).
func defaultTimeout(fs *flag.FlagSet, d time.Duration) {
	f := fs.Lookup("timeout")
	_ = f.Value.Set(d.String())
	f.DefValue = d.String()
}

// dial opens a client connection (lazily: errors show on the first call).
func dial(addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

func cmdStatus(ctx context.Context, args []string, stdout, _ io.Writer, getenv env) error {
	var rf readFlags
	c, err := parseClient("status", "Prints the node's view: state, term, leader, fencing token, lease, indexes.", args, getenv, stdout, rf.define(nil))
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
	resp, err := heartbeatpb.NewCoordinatorClient(conn).GetStatus(ctx, &heartbeatpb.GetStatusRequest{Consistency: rf.consistency()})
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
	if err := tw.Flush(); err != nil {
		return err
	}
	printReadLine(stdout, resp.GetRead())
	return nil
}

func leaderString(id, addr string) string {
	if id == "" && addr == "" {
		return "(none)"
	}
	return fmt.Sprintf("%s (%s)", id, addr)
}

func cmdMembers(ctx context.Context, args []string, stdout, _ io.Writer, getenv env) error {
	var watch bool
	var rf readFlags
	c, err := parseClient("members", "Lists the members as the node knows them: membership state (alive, suspect, dead,\n"+
		"left), raft suffrage, leader, application health, drain, resources owned, leader\n"+
		"priority. --watch prints the list again after every change until Ctrl-C\n"+
		"(--json: one JSON object {revision, fell_behind, members} per line).", args, getenv, stdout,
		rf.define(func(fs *flag.FlagSet) {
			fs.BoolVar(&watch, "watch", false, "print the list again after every change until interrupted")
		}))
	if err != nil {
		return err
	}
	if watch {
		return watchMembers(ctx, c, rf, stdout)
	}
	var ms []node.Member
	var info *heartbeatpb.ReadInfo
	err = withClient(ctx, c, func(ctx context.Context, cl heartbeatpb.CoordinatorClient) error {
		resp, err := cl.ListMembers(ctx, &heartbeatpb.ListMembersRequest{Consistency: rf.consistency()})
		if err != nil {
			return fmt.Errorf("members from %s: %w", c.addr, err)
		}
		ms, info = node.MembersFromProto(resp.GetMembers()), resp.GetRead()
		return nil
	})
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(stdout, ms)
	}
	if err := printMembers(stdout, ms); err != nil {
		return err
	}
	printReadLine(stdout, info)
	return nil
}

// watchMembers prints the member list at every change until ctx ends (a
// normal end) or the stream fails.
func watchMembers(ctx context.Context, c clientFlags, rf readFlags, stdout io.Writer) error {
	conn, err := dial(c.addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	stream, err := heartbeatpb.NewCoordinatorClient(conn).WatchMembers(ctx, &heartbeatpb.WatchMembersRequest{Consistency: rf.consistency()})
	if err != nil {
		return fmt.Errorf("members from %s: %w", c.addr, err)
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil // interrupted: a normal end of --watch
			}
			return fmt.Errorf("members from %s: %w", c.addr, err)
		}
		info := node.MembersInfo{Revision: ev.GetRevision(), FellBehind: ev.GetFellBehind(), Members: node.MembersFromProto(ev.GetMembers())}
		if c.json {
			if err := printJSONLine(stdout, info); err != nil {
				return err
			}
			continue
		}
		head := fmt.Sprintf("%s  revision %d", time.Now().Format("15:04:05.000"), info.Revision)
		if info.FellBehind {
			head += "  (fell behind: changes skipped)"
		}
		fmt.Fprintln(stdout, head)
		if err := printMembers(stdout, info.Members); err != nil {
			return err
		}
		fmt.Fprintln(stdout)
	}
}

// printMembers prints members as a table.
func printMembers(w io.Writer, ms []node.Member) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tSUFFRAGE\tLEADER\tAPP\tDRAINING\tOWNED\tPRIORITY\tADDRESS\tLAST CONTACT")
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
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%v\t%d\t%d\t%s\t%s\n", m.ID, dash(m.State), dash(m.Suffrage), leader, app,
			m.Draining, m.Owned, m.LeaderPriority, m.Address, contact)
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

func cmdLeader(ctx context.Context, args []string, stdout, _ io.Writer, getenv env) error {
	var watch bool
	var rf readFlags
	c, err := parseClient("leader", "Prints the leader the node knows (id, peer, client and HTTP addresses, term, fencing\n"+
		"token; on the leader itself, the time its lease has left). --watch streams every change\n"+
		"until Ctrl-C; while the node at --addr leads it also sends a lease renewal every 50 ms,\n"+
		"printed at most once a second (--json: one object per line, renewals included).",
		args, getenv, stdout, rf.define(func(fs *flag.FlagSet) {
			fs.BoolVar(&watch, "watch", false, "stream leadership changes until interrupted")
		}))
	if err != nil {
		return err
	}
	if !watch {
		return withClient(ctx, c, func(ctx context.Context, cl heartbeatpb.CoordinatorClient) error {
			ev, err := cl.GetLeader(ctx, &heartbeatpb.GetLeaderRequest{Consistency: rf.consistency()})
			if err != nil {
				return fmt.Errorf("leader from %s: %w", c.addr, err)
			}
			if c.json {
				return printJSON(stdout, node.LeaderInfoFromProto(ev.GetLeadership(), false, ev.GetRead()))
			}
			printLeaderLine(stdout, &heartbeatpb.WatchLeaderResponse{Leadership: ev.GetLeadership()}, false)
			printReadLine(stdout, ev.GetRead())
			return nil
		})
	}
	conn, err := dial(c.addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	stream, err := heartbeatpb.NewCoordinatorClient(conn).WatchLeader(ctx, &heartbeatpb.WatchLeaderRequest{Consistency: rf.consistency()})
	if err != nil {
		return fmt.Errorf("leader from %s: %w", c.addr, err)
	}
	var last *heartbeatpb.WatchLeaderResponse // last printed (text only)
	var lastAt time.Time
	for {
		ev, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil // interrupted: a normal end of --watch
			}
			return fmt.Errorf("leader from %s: %w", c.addr, err)
		}
		if c.json {
			if err := printJSONLine(stdout, node.LeaderInfoFromProto(ev.GetLeadership(), ev.GetFellBehind(), ev.GetRead())); err != nil {
				return err
			}
			continue
		}
		if last != nil && renewalOf(ev, last) && time.Since(lastAt) < renewalLineEvery {
			continue
		}
		printLeaderLine(stdout, ev, true)
		last, lastAt = ev, time.Now()
	}
}

// renewalLineEvery is how often leader --watch prints a lease renewal that
// changes nothing else (the node sends one every 50 ms while it leads).
const renewalLineEvery = time.Second

// renewalOf reports whether ev only renews the leadership prev described:
// same leader, term, token and is_self, and nothing skipped.
func renewalOf(w, prevW *heartbeatpb.WatchLeaderResponse) bool {
	ev, prev := w.GetLeadership(), prevW.GetLeadership()
	return ev.GetLeader().GetNodeId() == prev.GetLeader().GetNodeId() && ev.GetTerm() == prev.GetTerm() &&
		ev.GetFencingToken() == prev.GetFencingToken() && ev.GetIsLeader() == prev.GetIsLeader() && !w.GetFellBehind()
}

func printLeaderLine(w io.Writer, resp *heartbeatpb.WatchLeaderResponse, stamp bool) {
	ev := resp.GetLeadership()
	var b strings.Builder
	if stamp {
		b.WriteString(ev.GetObserved().AsTime().Local().Format("15:04:05.000") + "  ")
	}
	if ev.GetLeader().GetNodeId() == "" {
		b.WriteString("leader=(none)")
	} else {
		fmt.Fprintf(&b, "leader=%s address=%s", ev.GetLeader().GetNodeId(), ev.GetLeader().GetPeerAddress())
		if a := ev.GetLeader().GetClientAddress(); a != "" {
			fmt.Fprintf(&b, " client=%s", a)
		}
		if a := ev.GetLeader().GetHttpAddress(); a != "" {
			fmt.Fprintf(&b, " http=%s", a)
		}
	}
	fmt.Fprintf(&b, " term=%d fencing_token=%d", ev.GetTerm(), ev.GetFencingToken())
	if ev.GetIsLeader() {
		fmt.Fprintf(&b, " is_self=true lease_remaining=%dms", ev.GetLeaseRemaining().AsDuration().Milliseconds())
	}
	if resp.GetFellBehind() {
		b.WriteString(" fell_behind=true")
	}
	fmt.Fprintln(w, b.String())
}

func cmdHealth(ctx context.Context, args []string, stdout, _ io.Writer, getenv env) error {
	c, err := parseClient("health", "Asks the node's gRPC health service; exit 0 if SERVING (the node is ready), else 1.\n--json prints {\"status\", \"serving\"}.", args, getenv, stdout, nil)
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
	if c.json {
		err = printJSONLine(stdout, map[string]any{"status": resp.GetStatus().String(),
			"serving": resp.GetStatus() == healthpb.HealthCheckResponse_SERVING})
	} else {
		_, err = fmt.Fprintln(stdout, resp.GetStatus().String())
	}
	if err != nil {
		return err
	}
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
