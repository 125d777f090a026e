package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/client"
)

// leadershipTimeout is the default --timeout of step-down and transfer: the
// new leader must win an election first.
const leadershipTimeout = 30 * time.Second

// leaveTimeout is the default --timeout of leave: the node drains first.
const leaveTimeout = time.Minute

// maxPriority is the highest leader priority.
const maxPriority = 100

// memberArg returns the member a command acts on: --node-id, or the one
// positional argument that is its documented shorthand. Both given must
// agree.
func memberArg(cmd, flagID string, pos []string) (string, error) {
	switch {
	case len(pos) > 1:
		return "", usageErrorf("unexpected argument %q (%s takes one member id)", pos[1], cmd)
	case len(pos) == 1 && flagID != "" && pos[0] != flagID:
		return "", usageErrorf("--node-id %q and argument %q name different members", flagID, pos[0])
	case len(pos) == 1:
		return pos[0], nil
	}
	return flagID, nil
}

const stepDownUsage = `Usage: heartbeat step-down [flags]

Makes the current leader hand leadership to another voter (raft picks the
most up-to-date one). Any node accepts it and forwards it to the leader; it
is not repeated after an attempt whose outcome is unknown. Prints the leader
before and after.
`

func cmdStepDown(ctx context.Context, args []string, stdout, _ io.Writer, getenv env) error {
	c, pos, err := parseClientArgs("step-down", stepDownUsage, args, getenv, stdout,
		func(fs *flag.FlagSet) { defaultTimeout(fs, leadershipTimeout) })
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("unexpected argument %q (step-down takes none; to pick the next leader: heartbeat transfer --node-id ID)", pos[0])
	}
	return withClient(ctx, c, func(ctx context.Context, cl *client.Client) error {
		ch, err := cl.StepDown(ctx)
		if err != nil {
			return fmt.Errorf("step-down via %s: %w", c.addr(), err)
		}
		return printLeadershipChange(stdout, c.json, ch)
	})
}

const transferUsage = `Usage: heartbeat transfer --node-id ID [flags]
       heartbeat transfer ID [flags]          (shorthand)

Hands leadership to the voter ID. Any node accepts it. Refused for an
unknown id (NotFound), and for a non-voter or a dead, left, draining or
application-unhealthy member (InvalidArgument). A no-op when ID already
leads. Prints the leader before and after.
`

func cmdTransfer(ctx context.Context, args []string, stdout, _ io.Writer, getenv env) error {
	var flagID string
	c, pos, err := parseClientArgs("transfer", transferUsage, args, getenv, stdout, func(fs *flag.FlagSet) {
		nodeIDFlag(fs, &flagID, "id of the voter that should lead (required)")
		defaultTimeout(fs, leadershipTimeout)
	})
	if err != nil {
		return err
	}
	id, err := memberArg("transfer", flagID, pos)
	if err != nil {
		return err
	}
	if id == "" {
		return usageErrorf("missing --node-id (the voter that should lead)")
	}
	return withClient(ctx, c, func(ctx context.Context, cl *client.Client) error {
		ch, err := cl.TransferLeadership(ctx, id)
		if err != nil {
			return fmt.Errorf("transfer to %s via %s: %w", id, c.addr(), err)
		}
		return printLeadershipChange(stdout, c.json, ch)
	})
}

// printLeadershipChange prints the answer of a step-down or transfer.
func printLeadershipChange(w io.Writer, asJSON bool, ch client.LeadershipChange) error {
	v := changeOf(ch)
	if asJSON {
		return printJSON(w, v)
	}
	_, err := fmt.Fprintf(w, "leader %s -> %s (term %d, fencing token %d)\n", dash(v.Previous), dash(v.Leader.NodeID), v.Term, v.FencingToken)
	return err
}

const priorityUsage = `Usage: heartbeat priority [--node-id ID] --priority N [flags]
       heartbeat priority [--node-id ID] N [flags]     (shorthand)

Sets a member's leader priority N (0..100; default 0): while a healthy,
caught-up voter has a higher priority than the leader, the leader hands
leadership to it. --node-id names the member (default: the node at --addr).
`

func cmdPriority(ctx context.Context, args []string, stdout, _ io.Writer, getenv env) error {
	var id string
	prio := -1
	c, pos, err := parseClientArgs("priority", priorityUsage, args, getenv, stdout, func(fs *flag.FlagSet) {
		nodeIDFlag(fs, &id, "member id (default: the node at --addr)")
		fs.IntVar(&prio, "priority", -1, fmt.Sprintf("the leader priority, 0..%d (required)", maxPriority))
	})
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 1:
		return usageErrorf("unexpected argument %q (priority takes one number)", pos[1])
	case len(pos) == 1 && prio >= 0:
		return usageErrorf("unexpected argument %q (the priority is given by --priority)", pos[0])
	case len(pos) == 1:
		p, err := strconv.ParseUint(pos[0], 10, 32)
		if err != nil || p > maxPriority {
			return usageErrorf("priority %q: want a whole number in 0..%d", pos[0], maxPriority)
		}
		prio = int(p)
	case prio == -1:
		return usageErrorf("missing --priority (heartbeat priority [--node-id ID] --priority N, N in 0..%d)", maxPriority)
	}
	if prio < 0 || prio > maxPriority {
		return usageErrorf("--priority %d: want 0..%d", prio, maxPriority)
	}
	return withClient(ctx, c, func(ctx context.Context, cl *client.Client) error {
		id, err := resolveID(ctx, cl, id)
		if err != nil {
			return fmt.Errorf("priority via %s: %w", c.addr(), err)
		}
		res, err := cl.SetLeaderPriority(ctx, id, uint32(prio))
		if err != nil {
			return fmt.Errorf("priority of %s via %s: %w", id, c.addr(), err)
		}
		return printWrite(stdout, c.json, res, fmt.Sprintf("set the leader priority of %s to %d", id, prio),
			map[string]any{"node_id": id, "priority": prio})
	})
}

const joinUsage = `Usage: heartbeat join --node-id ID --peer-addr HOST:PORT [--nonvoter] [flags]

Adds node ID, reachable at peer address HOST:PORT, to the cluster's raft
configuration as a voter (--nonvoter: a non-voter), through any node (the
call follows the leader). A voter enters as a learner: a non-voter the
leader promotes once the node answers and has caught up, so a node that
never comes up never counts toward the quorum. Start the node itself with --join (or after this,
with the same id and peer address); it then registers its membership record.
A repeat of the same join changes nothing (revision 0). Neither --node-id nor
--peer-addr is read from the environment (HEARTBEAT_NODE_ID and
HEARTBEAT_PEER_ADDR configure 'run').
`

func cmdJoin(ctx context.Context, args []string, stdout, _ io.Writer, getenv env) error {
	var id, peer string
	var nonVoter bool
	c, pos, err := parseClientArgs("join", joinUsage, args, getenv, stdout, func(fs *flag.FlagSet) {
		nodeIDFlag(fs, &id, "id of the node to add (required)")
		fs.StringVar(&peer, "peer-addr", "", "peer address host:port of the node to add (required)")
		fs.BoolVar(&nonVoter, "nonvoter", false, "add it as a non-voter (default: a voter)")
		defaultTimeout(fs, 15*time.Second)
	})
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return usageErrorf("unexpected argument %q (flags start with --)", pos[0])
	case id == "":
		return usageErrorf("missing --node-id (the node to add)")
	case peer == "":
		return usageErrorf("missing --peer-addr (the peer address of the node to add)")
	}
	return withClient(ctx, c, func(ctx context.Context, cl *client.Client) error {
		rev, err := cl.Join(ctx, id, peer, !nonVoter)
		if err != nil {
			return fmt.Errorf("join %s via %s: %w", id, c.addr(), err)
		}
		if c.json {
			return printJSON(stdout, map[string]any{"node_id": id, "peer_address": peer, "nonvoter": nonVoter, "revision": rev})
		}
		kind := "learner (the leader promotes it to voter once it answers and has caught up)"
		if nonVoter {
			kind = "non-voter"
		}
		if rev == 0 {
			_, err = fmt.Fprintf(stdout, "%s is already a member at %s (no change, revision 0)\n", id, peer)
		} else {
			_, err = fmt.Fprintf(stdout, "added %s at %s as a %s (revision %d)\n", id, peer, kind, rev)
		}
		return err
	})
}

const leaveUsage = `Usage: heartbeat leave [flags]

Makes the node at --addr leave the cluster gracefully: it drains (its
resources move to live members), hands off leadership, is recorded as left,
is removed from the raft configuration and stops. Returns once the
departure is committed. Sent once, to the first --addr only.
`

func cmdLeave(ctx context.Context, args []string, stdout, _ io.Writer, getenv env) error {
	c, pos, err := parseClientArgs("leave", leaveUsage, args, getenv, stdout,
		func(fs *flag.FlagSet) { defaultTimeout(fs, leaveTimeout) })
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("unexpected argument %q (leave takes none: it acts on the node at --addr; to remove another member: heartbeat remove --node-id ID)", pos[0])
	}
	return withClient(ctx, c, func(ctx context.Context, cl *client.Client) error {
		res, err := cl.Leave(ctx)
		if err != nil {
			return fmt.Errorf("leave via %s: %w", c.addr(), err)
		}
		if c.json {
			return printJSON(stdout, map[string]any{"node_id": res.NodeID, "moved": res.Moved})
		}
		_, err = fmt.Fprintf(stdout, "%s left the cluster (%d resources handed off)\n", res.NodeID, res.Moved)
		return err
	})
}

const removeUsage = `Usage: heartbeat remove --node-id ID [flags]
       heartbeat remove ID [flags]            (shorthand)

Removes the member ID from the cluster (for a node that is gone for good)
and records it as left, through any node (the call follows the leader; it
is not repeated after an attempt whose outcome is unknown). Refused
(FailedPrecondition) when it would leave the cluster without a voter
majority; NotFound for an unknown id. The id is never read from the
environment.
`

func cmdRemove(ctx context.Context, args []string, stdout, _ io.Writer, getenv env) error {
	var flagID string
	c, pos, err := parseClientArgs("remove", removeUsage, args, getenv, stdout, func(fs *flag.FlagSet) {
		nodeIDFlag(fs, &flagID, "id of the member to remove (required)")
		defaultTimeout(fs, 15*time.Second)
	})
	if err != nil {
		return err
	}
	id, err := memberArg("remove", flagID, pos)
	if err != nil {
		return err
	}
	if id == "" {
		return usageErrorf("missing --node-id (the member to remove)")
	}
	return withClient(ctx, c, func(ctx context.Context, cl *client.Client) error {
		rev, err := cl.Remove(ctx, id)
		if err != nil {
			return fmt.Errorf("remove %s via %s: %w", id, c.addr(), err)
		}
		if c.json {
			return printJSON(stdout, map[string]any{"node_id": id, "revision": rev})
		}
		_, err = fmt.Fprintf(stdout, "removed %s (revision %d)\n", id, rev)
		return err
	})
}
