package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/heartbeat-sidecar/heartbeat/election"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
	// exitCorrupt: run found a file of its data dir corrupt
	// (election.ErrCorrupt); restarting will not help, a supervisor should
	// not loop on it.
	exitCorrupt = 3
)

// usageError is a mistake in the command line or environment (exit 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// usageErrorf returns a usage error with a message for the user.
func usageErrorf(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// env is how the commands read the environment (tests pass a map).
type env func(string) string

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, restore the default action: a second
		// Ctrl-C ends a slow graceful stop at once.
		<-ctx.Done()
		stop()
	}()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// cmdFunc is a subcommand: it parses its own arguments (flags and the
// HEARTBEAT_* environment) and writes its output to stdout.
type cmdFunc func(ctx context.Context, args []string, stdout, stderr io.Writer, getenv env) error

// command is one subcommand and the line that describes it in the help.
type command struct {
	name    string
	summary string
	run     cmdFunc
}

// commands are the subcommands in the order the help lists them. Every one
// but run, tls and version is a client of package client: it asks the node
// at --addr (HEARTBEAT_ADDR).
var commands = []command{
	{"run", "run a node until SIGINT/SIGTERM (the default when the first argument is a flag)", cmdRun},
	{"status", "the node's view: state, term, leader, fencing token, lease, indexes", cmdStatus},
	{"members", "the members: state, suffrage, leader, app health, drain, owned, priority (--watch)", cmdMembers},
	{"leader", "the leader, its addresses, term and fencing token (--watch: every change)", cmdLeader},
	{"resources", "list, register (put) or delete resources", cmdResources},
	{"assignments", "the resources a member owns (--watch: every change)", cmdAssignments},
	{"drain", "make a member hand its resources off and take no new ones", cmdDrain},
	{"undrain", "let a drained member take resources again", cmdUndrain},
	{"priority", "set a member's leader priority (0..100)", cmdPriority},
	{"step-down", "make the leader hand leadership to another voter", cmdStepDown},
	{"transfer", "hand leadership to the voter --node-id", cmdTransfer},
	{"join", "add a node (--node-id, --peer-addr) to the cluster, then start it", cmdJoin},
	{"leave", "make the node at --addr leave the cluster gracefully and stop", cmdLeave},
	{"remove", "remove another member (--node-id) for good", cmdRemove},
	{"app-heartbeat", "tell the node at --addr that its application is alive for --ttl", cmdAppHeartbeat},
	{"health", "exit 0 if the node at --addr is ready (gRPC health SERVING)", cmdHealth},
	{"snapshot", "save a backup of the cluster state (admin), check one, or restore one into a new data dir", cmdSnapshot},
	{"recover", "rebuild a cluster that lost its quorum from the survivors' data dirs (offline)", cmdRecover},
	{"tls", "make the cluster's CA and certificates (init) or show what one grants (inspect)", cmdTLS},
	{"version", "print the version", cmdVersion},
}

// lookupCommand returns the subcommand called name.
func lookupCommand(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	switch arg {
	case "help", "-h", "-help", "--help":
		return true
	}
	return false
}

// run dispatches to a subcommand and turns its error into an exit code.
// No arguments, "help", "-h" and "--help" print the list of subcommands;
// "help CMD" is "CMD --help"; a first argument that is a flag means run.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv env) int {
	switch {
	case len(args) == 0 || (isHelp(args[0]) && len(args) == 1):
		fmt.Fprint(stdout, topUsage())
		return exitOK
	case args[0] == "help":
		args = []string{args[1], "--help"}
	case strings.HasPrefix(args[0], "-"):
		args = append([]string{"run"}, args...)
	}
	name, args := args[0], args[1:]
	cmd, ok := lookupCommand(name)
	if !ok {
		fmt.Fprintf(stderr, "heartbeat: unknown command %q\n\n%s", name, topUsage())
		return exitUsage
	}
	err := cmd.run(ctx, args, stdout, stderr, getenv)
	var uerr *usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &uerr):
		fmt.Fprintf(stderr, "heartbeat %s: %v\n", name, err)
		fmt.Fprintf(stderr, "run 'heartbeat %s --help' for usage\n", name)
		return exitUsage
	case errors.Is(err, errUnhealthy):
		return exitFailure
	case errors.Is(err, election.ErrCorrupt):
		fmt.Fprintf(stderr, "heartbeat %s: %v\n", name, err)
		return exitCorrupt
	default:
		fmt.Fprintf(stderr, "heartbeat %s: %v\n", name, err)
		return exitFailure
	}
}

// topUsage is the help of the binary: one line per subcommand.
func topUsage() string {
	var b strings.Builder
	b.WriteString(`Heartbeat: a coordination sidecar on Raft: leader election with fencing,
membership with failure detection, resources that always have one live owner.

Usage: heartbeat <command> [flags]

Commands:
`)
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-14s %s\n", c.name, c.summary)
	}
	b.WriteString(`
Every command but run, tls and version asks a node: --addr host:port names its
client gRPC address (default $HEARTBEAT_ADDR, else 127.0.0.1:7401); a
comma-separated list adds fallbacks the client turns to when the first is
unreachable. Writes reach the leader from any node and print the revision
they committed at. The read commands (status, members, leader, resources
list, assignments) are consistent unless --stale, print a table, or JSON with
--json. A member is always named by --node-id.
Run 'heartbeat <command> --help' (or 'heartbeat help <command>') for the
flags of a command. Exit codes: 0 ok, 1 runtime failure, 2 usage error,
3 corrupt data dir (run).
`)
	return b.String()
}
