package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/client"
)

const leaderUsage = `Usage: heartbeat leader [--watch] [flags]

Prints the leader the node knows: id, peer, client and HTTP addresses, term,
fencing token; on the leader itself, the time its lease has left.

--watch streams every change until Ctrl-C. While the node watched leads it
also sends a lease renewal every 50 ms, printed at most once a second (--json:
one object per line, renewals included). When the stream breaks (the node
watched died) it prints a line with disconnected=true, reconnects (to the
node at --addr first, then to the other members, which it learns from that
node when the watch starts) and prints the current leadership again with
reconnected=true and the endpoint that now serves it. The leadership is
unknown between those two lines.
`

// renewalLineEvery is how often leader --watch prints a lease renewal that
// changes nothing else (the node sends one every 50 ms while it leads).
const renewalLineEvery = time.Second

func cmdLeader(ctx context.Context, args []string, stdout, stderr io.Writer, getenv env) error {
	var watch bool
	var rf readFlags
	c, pos, err := parseClientArgs("leader", leaderUsage, args, getenv, stdout, rf.define(func(fs *flag.FlagSet) {
		fs.BoolVar(&watch, "watch", false, "stream leadership changes until interrupted")
	}))
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("unexpected argument %q (flags start with --)", pos[0])
	}
	if watch {
		return watchLeader(ctx, c, rf, stdout, stderr)
	}
	return withClient(ctx, c, func(ctx context.Context, cl *client.Client) error {
		l, err := cl.Leader(ctx, rf.opts()...)
		if err != nil {
			return fmt.Errorf("leader from %s: %w", c.addr(), err)
		}
		// The lease left as this machine's clock sees it (the watch uses
		// the serving node's own clock).
		v := leaderOf(l, time.Until(l.LeaseUntil))
		v.Read = readOf(l.Read)
		if c.json {
			return printJSON(stdout, v)
		}
		printLeaderLine(stdout, v, false)
		printReadLine(stdout, l.Read)
		return nil
	})
}

// watchLeader prints leadership events until ctx ends (a normal end) or the
// watch cannot go on.
func watchLeader(ctx context.Context, c clientFlags, rf readFlags, stdout, stderr io.Writer) error {
	cl, err := watchClient(ctx, c, stderr)
	if err != nil {
		return err
	}
	defer cl.Close()
	var last *leaderView // last printed (text only)
	var lastAt time.Time
	for ev := range cl.WatchLeader(ctx, rf.opts()...) {
		if ev.Err != nil && !ev.Disconnected {
			return fmt.Errorf("leader from %s: %w", ev.Endpoint, ev.Err)
		}
		v := leaderEventOf(ev)
		if c.json {
			if err := printJSONLine(stdout, v); err != nil {
				return err
			}
			continue
		}
		if last != nil && renewalOf(v, *last) && time.Since(lastAt) < renewalLineEvery {
			continue
		}
		printLeaderLine(stdout, v, true)
		last, lastAt = &v, time.Now()
	}
	return nil // interrupted: a normal end of --watch
}

// leaderEventOf is the view of one watch event.
func leaderEventOf(ev client.LeaderEvent) leaderView {
	var remaining time.Duration
	if ev.IsSelf && !ev.Observed.IsZero() {
		remaining = ev.LeaseUntil.Sub(ev.Observed) // both on the serving node's clock
	}
	v := leaderOf(ev.Leader, remaining)
	v.Observed, v.FellBehind, v.Reconnected, v.Disconnected = timePtr(ev.Observed), ev.FellBehind, ev.Reconnected, ev.Disconnected
	if ev.Err != nil {
		v.Error = ev.Err.Error()
	}
	return v
}

// renewalOf reports whether v only renews the leadership prev described:
// same leader, term, token and is_self, served by the same endpoint, and
// nothing skipped, broken or reconnected.
func renewalOf(v, prev leaderView) bool {
	return v.Leader.NodeID == prev.Leader.NodeID && v.Term == prev.Term && v.FencingToken == prev.FencingToken &&
		v.IsSelf == prev.IsSelf && v.Endpoint == prev.Endpoint &&
		!v.FellBehind && !v.Reconnected && !v.Disconnected && !prev.Disconnected
}

// printLeaderLine prints one leadership as key=value pairs; stamp prefixes
// the time the serving node saw it (watch lines).
func printLeaderLine(w io.Writer, v leaderView, stamp bool) {
	var b strings.Builder
	if stamp {
		at := time.Now()
		if v.Observed != nil {
			at = *v.Observed
		}
		b.WriteString(at.Format("15:04:05.000") + "  ")
	}
	if v.Disconnected {
		fmt.Fprintf(&b, "leader=(unknown) disconnected=true endpoint=%s error=%q", v.Endpoint, v.Error)
		fmt.Fprintln(w, b.String())
		return
	}
	if v.Leader.NodeID == "" {
		b.WriteString("leader=(none)")
	} else {
		fmt.Fprintf(&b, "leader=%s address=%s", v.Leader.NodeID, v.Leader.Address)
		if a := v.Leader.ClientAddress; a != "" {
			fmt.Fprintf(&b, " client=%s", a)
		}
		if a := v.Leader.HTTPAddress; a != "" {
			fmt.Fprintf(&b, " http=%s", a)
		}
	}
	fmt.Fprintf(&b, " term=%d fencing_token=%d", v.Term, v.FencingToken)
	if v.IsSelf {
		fmt.Fprintf(&b, " is_self=true lease_remaining=%dms", v.LeaseRemainingMs)
	}
	if v.FellBehind {
		b.WriteString(" fell_behind=true")
	}
	if v.Reconnected {
		fmt.Fprintf(&b, " reconnected=true endpoint=%s", v.Endpoint)
	}
	fmt.Fprintln(w, b.String())
}
