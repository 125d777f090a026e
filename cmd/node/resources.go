package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/client"
)

const resourcesUsage = `Usage: heartbeat resources list|put|delete [ID] [flags]

  heartbeat resources list   [--stale] [--json] [flags]
  heartbeat resources put    ID [--weight N] [--label k=v]... [--json] [flags]
  heartbeat resources delete ID [--json] [flags]

Lists the registered resources with their owners and epochs (the owner's
fencing token), registers (or updates) one, or deletes one. Writes reach the
leader from any node and print the revision they committed at.
Run 'heartbeat resources list|put|delete --help' for the flags.
`

// labelFlags collects repeated --label k=v flags.
type labelFlags map[string]string

func (l labelFlags) String() string { return "" }

func (l labelFlags) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", v)
	}
	l[k] = val
	return nil
}

// cmdResources dispatches resources list|put|delete.
func cmdResources(ctx context.Context, args []string, stdout, _ io.Writer, getenv env) error {
	if len(args) == 0 || isHelp(args[0]) {
		fmt.Fprint(stdout, resourcesUsage)
		if len(args) == 0 {
			return usageErrorf("missing subcommand: list, put or delete")
		}
		return nil
	}
	sub, rest := args[0], args[1:]
	switch sub {
	case "list":
		return resourcesList(ctx, rest, stdout, getenv)
	case "put", "delete":
		if len(rest) > 0 && isHelp(rest[0]) {
			rest = []string{"--help"}
		} else if len(rest) == 0 || strings.HasPrefix(rest[0], "-") {
			return usageErrorf("resources %s: missing resource id (heartbeat resources %s ID)", sub, sub)
		}
		id := ""
		if rest[0] != "--help" {
			id, rest = rest[0], rest[1:]
		}
		if sub == "put" {
			return resourcesPut(ctx, id, rest, stdout, getenv)
		}
		return resourcesDelete(ctx, id, rest, stdout, getenv)
	}
	return usageErrorf("resources: unknown subcommand %q (want list, put or delete)", sub)
}

func resourcesList(ctx context.Context, args []string, stdout io.Writer, getenv env) error {
	var rf readFlags
	c, err := parseClient("resources list", "Lists the resources with their owners and epochs.", args, getenv, stdout, rf.define(nil))
	if err != nil {
		return err
	}
	return withClient(ctx, c, func(ctx context.Context, cl *client.Client) error {
		l, err := cl.Resources(ctx, rf.opts()...)
		if err != nil {
			return fmt.Errorf("resources from %s: %w", c.addr(), err)
		}
		return printListing(stdout, c.json, l)
	})
}

// printListing prints a listing: a JSON array, or a table and the read line.
func printListing(w io.Writer, asJSON bool, l client.Listing) error {
	if asJSON {
		return printJSON(w, resourcesOf(l.Resources))
	}
	if err := printResources(w, l.Resources); err != nil {
		return err
	}
	printReadLine(w, l.Read)
	return nil
}

func printResources(w io.Writer, rs []client.Resource) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tOWNER\tEPOCH\tWEIGHT")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\n", r.ID, dash(r.Owner), r.Epoch, r.Weight)
	}
	return tw.Flush()
}

// printWrite prints the result of a write: text, or JSON with the
// command's own fields (fields), revision and changed.
func printWrite(w io.Writer, asJSON bool, res client.WriteResult, text string, fields map[string]any) error {
	if asJSON {
		out := map[string]any{"revision": res.Revision, "changed": res.Changed}
		for k, v := range fields {
			out[k] = v
		}
		return printJSON(w, out)
	}
	_, err := fmt.Fprintf(w, "%s (revision %d)\n", text, res.Revision)
	return err
}

func resourcesPut(ctx context.Context, id string, args []string, stdout io.Writer, getenv env) error {
	var weight uint
	labels := labelFlags{}
	c, err := parseClient("resources put ID", "Registers resource ID (or updates its weight and labels).", args, getenv, stdout,
		func(fs *flag.FlagSet) {
			fs.UintVar(&weight, "weight", 1, "weight of the resource, 1..1000")
			fs.Var(labels, "label", "a label key=value (repeatable)")
		})
	if err != nil {
		return err
	}
	if weight < 1 || weight > 1000 {
		return usageErrorf("--weight %d: want 1..1000", weight)
	}
	return withClient(ctx, c, func(ctx context.Context, cl *client.Client) error {
		res, err := cl.Register(ctx, client.ResourceSpec{ID: id, Weight: uint32(weight), Labels: labels})
		if err != nil {
			return fmt.Errorf("put %s via %s: %w", id, c.addr(), err)
		}
		return printWrite(stdout, c.json, res, "registered "+id, map[string]any{"id": id})
	})
}

func resourcesDelete(ctx context.Context, id string, args []string, stdout io.Writer, getenv env) error {
	c, err := parseClient("resources delete ID", "Deletes resource ID (NotFound, exit 1, when it is not registered).", args, getenv, stdout, nil)
	if err != nil {
		return err
	}
	return withClient(ctx, c, func(ctx context.Context, cl *client.Client) error {
		res, err := cl.Delete(ctx, id)
		if err != nil {
			return fmt.Errorf("delete %s via %s: %w", id, c.addr(), err)
		}
		return printWrite(stdout, c.json, res, "deleted "+id, map[string]any{"id": id})
	})
}

// nodeIDFlag defines --node-id, the member a command acts on.
func nodeIDFlag(fs *flag.FlagSet, id *string, what string) {
	fs.StringVar(id, "node-id", "", what)
}

const assignmentsUsage = `Usage: heartbeat assignments [--node-id ID] [--watch] [flags]

Lists the resources a member owns (default: the node at --addr), with their
epochs. --watch prints the listing, then one line per change of that
member's resources (registered, assigned, deleted; a resync lists them all
again) until Ctrl-C, reconnecting without a gap or a duplicate when the
stream breaks; --json: one object per line.
`

// cmdAssignments lists (or follows) the resources one member owns.
func cmdAssignments(ctx context.Context, args []string, stdout, stderr io.Writer, getenv env) error {
	var id string
	var watch bool
	var rf readFlags
	c, pos, err := parseClientArgs("assignments", assignmentsUsage, args, getenv, stdout,
		rf.define(func(fs *flag.FlagSet) {
			nodeIDFlag(fs, &id, "member id (default: the node at --addr)")
			fs.BoolVar(&watch, "watch", false, "print every change until interrupted")
		}))
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("unexpected argument %q (name the member with --node-id)", pos[0])
	}
	if watch {
		return watchAssignments(ctx, c, rf, id, stdout, stderr)
	}
	return withClient(ctx, c, func(ctx context.Context, cl *client.Client) error {
		l, err := cl.Assignments(ctx, id, rf.opts()...)
		if err != nil {
			return fmt.Errorf("assignments from %s: %w", c.addr(), err)
		}
		return printListing(stdout, c.json, l)
	})
}

// watchAssignments lists a member's resources, then follows the changes
// after the listing's revision until ctx ends.
func watchAssignments(ctx context.Context, c clientFlags, rf readFlags, id string, stdout, stderr io.Writer) error {
	cl, err := watchClient(ctx, c, stderr)
	if err != nil {
		return err
	}
	defer cl.Close()
	lctx, cancel := context.WithTimeout(ctx, c.timeout)
	if id == "" {
		id, err = cl.LocalID(lctx)
	}
	var l client.Listing
	if err == nil {
		l, err = cl.Assignments(lctx, id, rf.opts()...)
	}
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("assignments from %s: %w", c.addr(), err)
	}
	if c.json {
		err = printJSONLine(stdout, assignmentEventView{Revision: l.Revision, Kind: "resync", Resources: resourcesOf(l.Resources)})
	} else {
		err = printListing(stdout, false, l)
	}
	if err != nil {
		return err
	}
	for ev := range cl.WatchAssignments(ctx, id, l.Revision, rf.opts()...) {
		if ev.Err != nil {
			return fmt.Errorf("assignments of %s: %w", id, ev.Err)
		}
		v := assignmentEventView{Revision: ev.Revision, Kind: string(ev.Kind), ResourceID: ev.ResourceID,
			Owner: ev.Owner, PrevOwner: ev.PrevOwner, Epoch: ev.Epoch, Resources: resourcesOf(ev.Resources)}
		if c.json {
			if err := printJSONLine(stdout, v); err != nil {
				return err
			}
			continue
		}
		stamp := time.Now().Format("15:04:05.000")
		if ev.Kind == client.KindResync {
			fmt.Fprintf(stdout, "%s  revision=%d kind=resync resources=%d\n", stamp, ev.Revision, len(ev.Resources))
			for _, r := range ev.Resources {
				fmt.Fprintf(stdout, "%s  revision=%d kind=resync resource=%s owner=%s epoch=%d\n", stamp, ev.Revision, r.ID, dash(r.Owner), r.Epoch)
			}
			continue
		}
		fmt.Fprintf(stdout, "%s  revision=%d kind=%s resource=%s owner=%s prev_owner=%s epoch=%d\n", stamp, ev.Revision, ev.Kind,
			ev.ResourceID, dash(ev.Owner), dash(ev.PrevOwner), ev.Epoch)
	}
	return nil // interrupted: a normal end of --watch
}

// cmdDrain and cmdUndrain drain or undrain a member.
func cmdDrain(ctx context.Context, args []string, stdout, _ io.Writer, getenv env) error {
	return setDrain(ctx, "drain", true, args, stdout, getenv)
}

func cmdUndrain(ctx context.Context, args []string, stdout, _ io.Writer, getenv env) error {
	return setDrain(ctx, "undrain", false, args, stdout, getenv)
}

func setDrain(ctx context.Context, cmd string, draining bool, args []string, stdout io.Writer, getenv env) error {
	var id string
	what := "Drains a member: it takes no new resources and hands its own to live members."
	if !draining {
		what = "Undrains a member: it takes resources again."
	}
	c, err := parseClient(cmd, what, args, getenv, stdout,
		func(fs *flag.FlagSet) { nodeIDFlag(fs, &id, "member id (default: the node at --addr)") })
	if err != nil {
		return err
	}
	return withClient(ctx, c, func(ctx context.Context, cl *client.Client) error {
		id, err := resolveID(ctx, cl, id)
		if err != nil {
			return fmt.Errorf("%s via %s: %w", cmd, c.addr(), err)
		}
		res, err := cl.SetDrain(ctx, id, draining)
		if err != nil {
			return fmt.Errorf("%s %s via %s: %w", cmd, id, c.addr(), err)
		}
		return printWrite(stdout, c.json, res, cmd+"ed "+id, map[string]any{"node_id": id, "draining": draining})
	})
}

// resolveID returns id, or the id of the node the client asks first when
// id is empty.
func resolveID(ctx context.Context, cl *client.Client, id string) (string, error) {
	if id != "" {
		return id, nil
	}
	return cl.LocalID(ctx)
}

const appHeartbeatUsage = `Usage: heartbeat app-heartbeat [--ttl D] [flags]

Tells the node at --addr that the application beside it is alive for --ttl
more (100ms..10m). Send it again well within the ttl: when it lapses the node
reports its application unhealthy and drains. Prints the application's
health as the cluster records it (it may lag a recovery by a moment).
`

func cmdAppHeartbeat(ctx context.Context, args []string, stdout, _ io.Writer, getenv env) error {
	var ttl time.Duration
	c, pos, err := parseClientArgs("app-heartbeat", appHeartbeatUsage, args, getenv, stdout,
		func(fs *flag.FlagSet) {
			fs.DurationVar(&ttl, "ttl", 10*time.Second, "how long the application counts as alive, 100ms..10m")
		})
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("unexpected argument %q (flags start with --)", pos[0])
	}
	if ttl < 100*time.Millisecond || ttl > 10*time.Minute {
		return usageErrorf("--ttl %v: want 100ms..10m", ttl)
	}
	return withClient(ctx, c, func(ctx context.Context, cl *client.Client) error {
		h, err := cl.AppHeartbeat(ctx, ttl)
		if err != nil {
			return fmt.Errorf("app heartbeat to %s: %w", c.addr(), err)
		}
		if c.json {
			return printJSON(stdout, map[string]any{"app_healthy": h.AppHealthy, "draining": h.Draining, "state": h.State, "ttl_ms": ttl.Milliseconds()})
		}
		_, err = fmt.Fprintf(stdout, "app_healthy=%v draining=%v state=%s (alive for %v more)\n", h.AppHealthy, h.Draining, dash(h.State), ttl)
		return err
	})
}
