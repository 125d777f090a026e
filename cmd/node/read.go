package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"text/tabwriter"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/client"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// errUnhealthy: the health check answered, but not SERVING (exit 1, no
// extra message).
var errUnhealthy = errors.New("not serving")

// readFlags is the --stale flag of the read commands.
type readFlags struct{ stale bool }

// define adds --stale to fs, then whatever more adds.
func (r *readFlags) define(more func(*flag.FlagSet)) func(*flag.FlagSet) {
	return func(fs *flag.FlagSet) {
		fs.BoolVar(&r.stale, "stale", false, "answer from the node's own state at once (it may lag); default: a consistent\nread, which reflects every write acknowledged before it or fails")
		if more != nil {
			more(fs)
		}
	}
}

// opts are the client's read options for the flag, plus more.
func (r readFlags) opts(more ...client.ReadOption) []client.ReadOption {
	if r.stale {
		return append(more, client.Stale())
	}
	return more
}

func cmdStatus(ctx context.Context, args []string, stdout, _ io.Writer, getenv env) error {
	var rf readFlags
	c, err := parseClient("status", "Prints the node's view: state, term, leader, fencing token, lease, indexes.", args, getenv, stdout, rf.define(nil))
	if err != nil {
		return err
	}
	return withClient(ctx, c, func(ctx context.Context, cl *client.Client) error {
		s, err := cl.Status(ctx, rf.opts()...)
		if err != nil {
			return fmt.Errorf("status from %s: %w", c.addr(), err)
		}
		if c.json {
			return printJSON(stdout, statusOf(s))
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		lease := "-"
		if !s.LeaseUntil.IsZero() {
			lease = s.LeaseUntil.Format(time.RFC3339Nano)
		}
		rows := [][2]string{
			{"ID", s.ID}, {"CLUSTER", s.ClusterID}, {"STATE", s.State},
			{"TERM", fmt.Sprint(s.Term)}, {"LEADER", leaderString(s.LeaderID, s.LeaderAddress)},
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
		printReadLine(stdout, s.Read)
		return nil
	})
}

func leaderString(id, addr string) string {
	if id == "" && addr == "" {
		return "(none)"
	}
	return fmt.Sprintf("%s (%s)", id, addr)
}

func cmdMembers(ctx context.Context, args []string, stdout, stderr io.Writer, getenv env) error {
	var watch bool
	var rf readFlags
	c, err := parseClient("members", "Lists the members as the node knows them: membership state (alive, suspect, dead,\n"+
		"left), raft suffrage, leader, application health, drain, resources owned, leader\n"+
		"priority. --watch prints the list again after every change until Ctrl-C, and\n"+
		"reconnects (to another member when the node asked is gone); --json: one JSON\n"+
		"object {revision, fell_behind, reconnected, endpoint, members} per line.", args, getenv, stdout,
		rf.define(func(fs *flag.FlagSet) {
			fs.BoolVar(&watch, "watch", false, "print the list again after every change until interrupted")
		}))
	if err != nil {
		return err
	}
	if watch {
		return watchMembers(ctx, c, rf, stdout, stderr)
	}
	return withClient(ctx, c, func(ctx context.Context, cl *client.Client) error {
		var info client.ReadInfo
		ms, err := cl.Members(ctx, rf.opts(client.WithReadInfo(&info))...)
		if err != nil {
			return fmt.Errorf("members from %s: %w", c.addr(), err)
		}
		if c.json {
			return printJSON(stdout, membersOf(ms))
		}
		if err := printMembers(stdout, ms); err != nil {
			return err
		}
		printReadLine(stdout, info)
		return nil
	})
}

// watchMembers prints the member list at every change until ctx ends (a
// normal end) or the watch cannot go on.
func watchMembers(ctx context.Context, c clientFlags, rf readFlags, stdout, stderr io.Writer) error {
	cl, err := watchClient(ctx, c, stderr)
	if err != nil {
		return err
	}
	defer cl.Close()
	for ev := range cl.WatchMembers(ctx, rf.opts()...) {
		if ev.Err != nil {
			return fmt.Errorf("members from %s: %w", ev.Endpoint, ev.Err)
		}
		if c.json {
			v := membersEventView{Revision: ev.Revision, FellBehind: ev.FellBehind, Reconnected: ev.Reconnected,
				Endpoint: ev.Endpoint, Members: membersOf(ev.Members)}
			if err := printJSONLine(stdout, v); err != nil {
				return err
			}
			continue
		}
		head := fmt.Sprintf("%s  revision %d", time.Now().Format("15:04:05.000"), ev.Revision)
		if ev.FellBehind {
			head += "  (fell behind: changes skipped)"
		}
		if ev.Reconnected {
			head += "  (reconnected to " + ev.Endpoint + ")"
		}
		fmt.Fprintln(stdout, head)
		if err := printMembers(stdout, ev.Members); err != nil {
			return err
		}
		fmt.Fprintln(stdout)
	}
	return nil // interrupted: a normal end of --watch
}

// printMembers prints members as a table.
func printMembers(w io.Writer, ms []client.Member) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tSUFFRAGE\tLEADER\tAPP\tDRAINING\tOWNED\tPRIORITY\tADDRESS\tLAST CONTACT")
	for _, m := range ms {
		contact := "-"
		if !m.LastContact.IsZero() {
			contact = time.Since(m.LastContact).Round(time.Millisecond).String() + " ago"
		}
		leader := "-"
		if m.RaftLeader {
			leader = "*"
		}
		app := "healthy"
		if !m.AppHealthy {
			app = "unhealthy"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%v\t%d\t%d\t%s\t%s\n", m.ID, dash(m.State), dash(m.Suffrage), leader, app,
			m.Draining, m.Owned, m.LeaderPriority, m.PeerAddress, contact)
	}
	return tw.Flush()
}

func cmdHealth(ctx context.Context, args []string, stdout, _ io.Writer, getenv env) error {
	c, err := parseClient("health", "Asks the node's gRPC health service; exit 0 if SERVING (the node is ready), else 1.\n"+
		"--json prints {\"status\", \"serving\"}. A node that does not answer within --timeout\n"+
		"fails (exit 1).", args, getenv, stdout, nil)
	if err != nil {
		return err
	}
	return withClient(ctx, c, func(ctx context.Context, cl *client.Client) error {
		h, err := cl.Health(ctx)
		if err != nil {
			return fmt.Errorf("health of %s: %w", c.addr(), err)
		}
		if c.json {
			err = printJSONLine(stdout, map[string]any{"status": h.Status, "serving": h.Serving})
		} else {
			_, err = fmt.Fprintln(stdout, h.Status)
		}
		if err != nil {
			return err
		}
		if !h.Serving {
			return errUnhealthy
		}
		return nil
	})
}

func cmdVersion(_ context.Context, args []string, stdout, _ io.Writer, getenv env) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	if err := parseFlags(fs, args, getenv, stdout, "Usage: heartbeat version\n\nPrints the version of the binary, of Go and of hashicorp/raft.\n"); err != nil {
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
