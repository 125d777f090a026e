package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/heartbeat-sidecar/heartbeat/node"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

const resourcesUsage = `Usage:
  heartbeat resources list   [--addr A] [--json]
  heartbeat resources put    ID [--weight N] [--label k=v]... [--addr A]
  heartbeat resources delete ID [--addr A]

Lists the registered resources with their owners and epochs (the owner's
fencing token), registers (or updates) one, or deletes one. Any node accepts
writes: a follower forwards them to the leader.
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
func cmdResources(ctx context.Context, args []string, stdout, stderr io.Writer, getenv env) error {
	if len(args) == 0 || args[0] == "--help" || args[0] == "-h" || args[0] == "help" {
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
		if len(rest) == 0 || strings.HasPrefix(rest[0], "-") {
			return usageErrorf("resources %s: missing resource id (heartbeat resources %s ID)", sub, sub)
		}
		id, rest := rest[0], rest[1:]
		if sub == "put" {
			return resourcesPut(ctx, id, rest, stdout, getenv)
		}
		return resourcesDelete(ctx, id, rest, stdout, getenv)
	}
	return usageErrorf("resources: unknown subcommand %q (want list, put or delete)", sub)
}

// withClient dials c.addr and calls f with a Coordinator client and a
// context bounded by c.timeout.
func withClient(ctx context.Context, c clientFlags, f func(context.Context, heartbeatpb.CoordinatorClient) error) error {
	conn, err := dial(c.addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	return f(ctx, heartbeatpb.NewCoordinatorClient(conn))
}

func resourcesList(ctx context.Context, args []string, stdout io.Writer, getenv env) error {
	var rf readFlags
	c, err := parseClient("resources list", "Lists the resources with their owners and epochs.", args, getenv, stdout, rf.define(nil))
	if err != nil {
		return err
	}
	return withClient(ctx, c, func(ctx context.Context, cl heartbeatpb.CoordinatorClient) error {
		resp, err := cl.ListResources(ctx, &heartbeatpb.ListResourcesRequest{Consistency: rf.consistency()})
		if err != nil {
			return fmt.Errorf("resources from %s: %w", c.addr, err)
		}
		if err := printResources(stdout, c.json, node.ResourcesFromProto(resp.GetResources())); err != nil || c.json {
			return err
		}
		printReadLine(stdout, resp.GetRead())
		return nil
	})
}

func printResources(w io.Writer, asJSON bool, rs []node.Resource) error {
	if asJSON {
		return printJSON(w, rs)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tOWNER\tEPOCH\tWEIGHT")
	for _, r := range rs {
		owner := r.Owner
		if owner == "" {
			owner = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\n", r.ID, owner, r.Epoch, r.Weight)
	}
	return tw.Flush()
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
	return withClient(ctx, c, func(ctx context.Context, cl heartbeatpb.CoordinatorClient) error {
		resp, err := cl.RegisterResources(ctx, &heartbeatpb.RegisterResourcesRequest{Resources: []*heartbeatpb.ResourceSpec{
			{Id: id, Weight: uint32(weight), Labels: labels},
		}})
		if err != nil {
			return fmt.Errorf("put %s via %s: %w", id, c.addr, err)
		}
		fmt.Fprintf(stdout, "registered %s (revision %d)\n", id, resp.GetRevision())
		return nil
	})
}

func resourcesDelete(ctx context.Context, id string, args []string, stdout io.Writer, getenv env) error {
	c, err := parseClient("resources delete ID", "Deletes resource ID.", args, getenv, stdout, nil)
	if err != nil {
		return err
	}
	return withClient(ctx, c, func(ctx context.Context, cl heartbeatpb.CoordinatorClient) error {
		resp, err := cl.DeleteResources(ctx, &heartbeatpb.DeleteResourcesRequest{Ids: []string{id}})
		if err != nil {
			return fmt.Errorf("delete %s via %s: %w", id, c.addr, err)
		}
		fmt.Fprintf(stdout, "deleted %s (revision %d)\n", id, resp.GetRevision())
		return nil
	})
}

// cmdAssignments lists the resources one member owns.
func cmdAssignments(ctx context.Context, args []string, stdout, _ io.Writer, getenv env) error {
	var id string
	var rf readFlags
	c, err := parseClient("assignments", "Lists the resources a member owns (default: the node asked).", args, getenv, stdout,
		rf.define(func(fs *flag.FlagSet) { fs.StringVar(&id, "node", "", "member id (default: the node at --addr)") }))
	if err != nil {
		return err
	}
	return withClient(ctx, c, func(ctx context.Context, cl heartbeatpb.CoordinatorClient) error {
		resp, err := cl.ListAssignments(ctx, &heartbeatpb.ListAssignmentsRequest{NodeId: id, Consistency: rf.consistency()})
		if err != nil {
			return fmt.Errorf("assignments from %s: %w", c.addr, err)
		}
		if err := printResources(stdout, c.json, node.ResourcesFromProto(resp.GetResources())); err != nil || c.json {
			return err
		}
		printReadLine(stdout, resp.GetRead())
		return nil
	})
}

// cmdDrain and cmdUndrain drain or undrain a member.
func cmdDrain(ctx context.Context, args []string, stdout, stderr io.Writer, getenv env) error {
	return setDrain(ctx, "drain", true, args, stdout, getenv)
}

func cmdUndrain(ctx context.Context, args []string, stdout, stderr io.Writer, getenv env) error {
	return setDrain(ctx, "undrain", false, args, stdout, getenv)
}

func setDrain(ctx context.Context, cmd string, draining bool, args []string, stdout io.Writer, getenv env) error {
	var id string
	what := "Drains a member: it takes no new resources and hands its own to live members."
	if !draining {
		what = "Undrains a member: it takes resources again."
	}
	c, err := parseClient(cmd, what, args, getenv, stdout,
		func(fs *flag.FlagSet) { fs.StringVar(&id, "node", "", "member id (default: the node at --addr)") })
	if err != nil {
		return err
	}
	return withClient(ctx, c, func(ctx context.Context, cl heartbeatpb.CoordinatorClient) error {
		resp, err := cl.SetDrain(ctx, &heartbeatpb.SetDrainRequest{NodeId: id, Draining: draining})
		if err != nil {
			return fmt.Errorf("%s via %s: %w", cmd, c.addr, err)
		}
		who := id
		if who == "" {
			who = "node at " + c.addr
		}
		fmt.Fprintf(stdout, "%sed %s (revision %d)\n", cmd, who, resp.GetRevision())
		return nil
	})
}
