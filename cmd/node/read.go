package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/heartbeat-sidecar/heartbeat/proto/heartbeatpb"
)

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

// consistency is the wire value of the flag.
func (r readFlags) consistency() heartbeatpb.Consistency {
	if r.stale {
		return heartbeatpb.Consistency_CONSISTENCY_STALE
	}
	return heartbeatpb.Consistency_CONSISTENCY_CONSISTENT
}

// printReadLine prints how fresh an answer was, as the last line of a
// command's human output: "read: consistent at revision 12, leader n1" or
// "read: stale at revision 9, leader n1 last heard 40ms ago".
func printReadLine(w io.Writer, info *heartbeatpb.ReadInfo) {
	if info == nil {
		return
	}
	mode := "stale"
	if info.GetConsistent() {
		mode = "consistent"
	}
	leader := "no leader known"
	if info.GetKnownLeader() {
		leader = "leader " + info.GetLeaderNodeId()
		ms := int64(-1)
		if d := info.GetSinceLeaderContact(); d != nil {
			ms = d.AsDuration().Milliseconds()
		}
		switch {
		case ms > 0 && !info.GetConsistent():
			leader += fmt.Sprintf(" last heard %dms ago", ms)
		case ms < 0:
			leader += " never heard from"
		}
	}
	fmt.Fprintf(w, "read: %s at revision %d, %s\n", mode, info.GetRevision(), leader)
}
