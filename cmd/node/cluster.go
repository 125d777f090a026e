package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/node"
	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

// leadershipTimeout is the default --timeout of step-down and transfer: the
// new leader must win an election first.
const leadershipTimeout = 30 * time.Second

// leaveTimeout is the default --timeout of leave: the node drains first.
const leaveTimeout = time.Minute

// maxPriority is the highest leader priority.
const maxPriority = 100

const stepDownUsage = `Usage: heartbeat step-down [flags]

Makes the current leader hand leadership to another voter (raft picks the
most up-to-date one). Any node accepts it and forwards it to the leader.
Prints the leader before and after.
`

func cmdStepDown(ctx context.Context, args []string, stdout, _ io.Writer, getenv env) error {
	c, pos, err := parseClientArgs("step-down", stepDownUsage, args, getenv, stdout,
		func(fs *flag.FlagSet) { defaultTimeout(fs, leadershipTimeout) })
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("unexpected argument %q (step-down takes none; to pick the next leader: heartbeat transfer ID)", pos[0])
	}
	return withClient(ctx, c, func(ctx context.Context, cl heartbeatpb.CoordinatorClient) error {
		resp, err := cl.StepDown(ctx, &heartbeatpb.StepDownRequest{})
		if err != nil {
			return fmt.Errorf("step-down via %s: %w", c.addr, err)
		}
		return printLeadershipChange(stdout, c.json, resp.GetChange())
	})
}

const transferUsage = `Usage: heartbeat transfer ID [flags]

Hands leadership to the voter ID. Any node accepts it. Refused for an
unknown id (NotFound), and for a non-voter or a dead, left, draining or
application-unhealthy member (InvalidArgument). A no-op when ID already
leads. Prints the leader before and after.
`

func cmdTransfer(ctx context.Context, args []string, stdout, _ io.Writer, getenv env) error {
	c, pos, err := parseClientArgs("transfer", transferUsage, args, getenv, stdout,
		func(fs *flag.FlagSet) { defaultTimeout(fs, leadershipTimeout) })
	if err != nil {
		return err
	}
	switch {
	case len(pos) == 0:
		return usageErrorf("missing the id of the voter that should lead (heartbeat transfer ID)")
	case len(pos) > 1:
		return usageErrorf("unexpected argument %q (transfer takes one id)", pos[1])
	}
	id := pos[0]
	return withClient(ctx, c, func(ctx context.Context, cl heartbeatpb.CoordinatorClient) error {
		resp, err := cl.TransferLeadership(ctx, &heartbeatpb.TransferLeadershipRequest{NodeId: id})
		if err != nil {
			return fmt.Errorf("transfer to %s via %s: %w", id, c.addr, err)
		}
		return printLeadershipChange(stdout, c.json, resp.GetChange())
	})
}

// printLeadershipChange prints the answer of a step-down or transfer.
func printLeadershipChange(w io.Writer, asJSON bool, p *heartbeatpb.LeadershipChange) error {
	ch := node.LeadershipChangeFromProto(p)
	if asJSON {
		return printJSON(w, ch)
	}
	_, err := fmt.Fprintf(w, "leader %s -> %s (term %d, fencing token %d)\n", dash(ch.Previous), dash(ch.Leader.ID), ch.Term, ch.FencingToken)
	return err
}

const priorityUsage = `Usage: heartbeat priority [--node ID] N [flags]

Sets a member's leader priority N (0..100; default 0): while a healthy,
caught-up voter has a higher priority than the leader, the leader hands
leadership to it. --node names the member (default: the node at --addr).
`

func cmdPriority(ctx context.Context, args []string, stdout, _ io.Writer, getenv env) error {
	var id string
	c, pos, err := parseClientArgs("priority", priorityUsage, args, getenv, stdout,
		func(fs *flag.FlagSet) { fs.StringVar(&id, "node", "", "member id (default: the node at --addr)") })
	if err != nil {
		return err
	}
	switch {
	case len(pos) == 0:
		return usageErrorf("missing the priority (heartbeat priority [--node ID] N, N in 0..%d)", maxPriority)
	case len(pos) > 1:
		return usageErrorf("unexpected argument %q (priority takes one number)", pos[1])
	}
	prio, err := strconv.ParseUint(pos[0], 10, 32)
	if err != nil || prio > maxPriority {
		return usageErrorf("priority %q: want a whole number in 0..%d", pos[0], maxPriority)
	}
	return withClient(ctx, c, func(ctx context.Context, cl heartbeatpb.CoordinatorClient) error {
		resp, err := cl.SetLeaderPriority(ctx, &heartbeatpb.SetLeaderPriorityRequest{NodeId: id, Priority: uint32(prio)})
		if err != nil {
			return fmt.Errorf("priority via %s: %w", c.addr, err)
		}
		who := id
		if who == "" {
			who = "node at " + c.addr
		}
		if c.json {
			return printJSON(stdout, map[string]any{"node_id": id, "priority": prio, "revision": resp.GetRevision()})
		}
		_, err = fmt.Fprintf(stdout, "set the leader priority of %s to %d (revision %d)\n", who, prio, resp.GetRevision())
		return err
	})
}

const joinUsage = `Usage: heartbeat join --id ID --peer-addr HOST:PORT [--nonvoter] [flags]

Adds node ID, reachable at peer address HOST:PORT, to the cluster's raft
configuration as a voter (--nonvoter: a non-voter), through the node at
--addr. Start the node itself with --join (or after this, with the same
id and peer address); it then registers its membership record. A repeat of
the same join changes nothing. Neither --id nor --peer-addr is read from the
environment (HEARTBEAT_ID and HEARTBEAT_PEER_ADDR configure 'run').
`

func cmdJoin(ctx context.Context, args []string, stdout, _ io.Writer, getenv env) error {
	var id, peer string
	var nonVoter bool
	c, pos, err := parseClientArgs("join", joinUsage, args, getenv, stdout, func(fs *flag.FlagSet) {
		fs.StringVar(&id, "id", "", "id of the node to add (required)")
		fs.StringVar(&peer, "peer-addr", "", "peer address host:port of the node to add (required)")
		fs.BoolVar(&nonVoter, "nonvoter", false, "add it as a non-voter")
		defaultTimeout(fs, 15*time.Second)
	})
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return usageErrorf("unexpected argument %q (flags start with --)", pos[0])
	case id == "":
		return usageErrorf("missing --id (the node to add)")
	case peer == "":
		return usageErrorf("missing --peer-addr (the peer address of the node to add)")
	}
	return withClient(ctx, c, func(ctx context.Context, cl heartbeatpb.CoordinatorClient) error {
		resp, err := cl.Join(ctx, &heartbeatpb.JoinRequest{NodeId: id, PeerAddress: peer, Nonvoter: nonVoter})
		if err != nil {
			return fmt.Errorf("join %s via %s: %w", id, c.addr, err)
		}
		if c.json {
			return printJSON(stdout, map[string]any{"node_id": id, "peer_address": peer, "voter": !nonVoter, "index": resp.GetRevision()})
		}
		kind := "voter"
		if nonVoter {
			kind = "non-voter"
		}
		if resp.GetRevision() == 0 {
			_, err = fmt.Fprintf(stdout, "%s is already a member at %s (no change)\n", id, peer)
		} else {
			_, err = fmt.Fprintf(stdout, "added %s at %s as a %s (log index %d)\n", id, peer, kind, resp.GetRevision())
		}
		return err
	})
}

const leaveUsage = `Usage: heartbeat leave [flags]

Makes the node at --addr leave the cluster gracefully: it drains (its
resources move to live members), hands off leadership, is recorded as left,
is removed from the raft configuration and stops. Returns once the
departure is committed.
`

func cmdLeave(ctx context.Context, args []string, stdout, _ io.Writer, getenv env) error {
	c, pos, err := parseClientArgs("leave", leaveUsage, args, getenv, stdout,
		func(fs *flag.FlagSet) { defaultTimeout(fs, leaveTimeout) })
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("unexpected argument %q (leave takes none: it acts on the node at --addr; to remove another member: heartbeat remove --id ID)", pos[0])
	}
	return withClient(ctx, c, func(ctx context.Context, cl heartbeatpb.CoordinatorClient) error {
		resp, err := cl.Leave(ctx, &heartbeatpb.LeaveRequest{})
		if err != nil {
			return fmt.Errorf("leave via %s: %w", c.addr, err)
		}
		if c.json {
			return printJSON(stdout, map[string]any{"node_id": resp.GetNodeId(), "moved": resp.GetMoved()})
		}
		_, err = fmt.Fprintf(stdout, "%s left the cluster (%d resources handed off)\n", resp.GetNodeId(), resp.GetMoved())
		return err
	})
}
