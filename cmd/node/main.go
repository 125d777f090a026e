package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
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

// commands maps each subcommand to its implementation.
var commands = map[string]func(ctx context.Context, args []string, stdout, stderr io.Writer, getenv env) error{
	"run":     cmdRun,
	"status":  cmdStatus,
	"members": cmdMembers,
	"leader":  cmdLeader,
	"health":  cmdHealth,
	"remove":  cmdRemove,
	"version": cmdVersion,

	"resources":   cmdResources,
	"assignments": cmdAssignments,
	"drain":       cmdDrain,
	"undrain":     cmdUndrain,

	"step-down": cmdStepDown,
	"transfer":  cmdTransfer,
	"priority":  cmdPriority,
	"join":      cmdJoin,
	"leave":     cmdLeave,
}

// run dispatches to a subcommand and turns its error into an exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv env) int {
	name := "run"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		name, args = args[0], args[1:]
	}
	if name == "help" {
		fmt.Fprint(stdout, topUsage)
		return exitOK
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "heartbeat: unknown command %q\n\n%s", name, topUsage)
		return exitUsage
	}
	err := cmd(ctx, args, stdout, stderr, getenv)
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
	default:
		fmt.Fprintf(stderr, "heartbeat %s: %v\n", name, err)
		return exitFailure
	}
}

const topUsage = `Heartbeat: a coordination sidecar on Raft: leader election with fencing,
membership with failure detection, resources that always have one live owner.

Usage:
  heartbeat [run] [flags]            run a node (the default command)
  heartbeat status  [--addr A]       show a node's view of the cluster
  heartbeat members [--addr A] [--watch]
                                     list the members: state (alive, suspect, dead, left),
                                     suffrage, leader, app health, drain, resources owned,
                                     leader priority; --watch prints every change
  heartbeat resources list|put ID [--weight N]|delete ID [--addr A]
                                     list resources with owners and epochs, register, delete
  heartbeat assignments [--node ID]  the resources a member owns (default: the node asked)
  heartbeat drain|undrain [--node ID]
                                     hand a member's resources off / let it take work again
  heartbeat leader  [--addr A] [--watch]
                                     show the leader; --watch streams changes
  heartbeat step-down [--addr A]     make the leader hand leadership to another voter
  heartbeat transfer ID [--addr A]   hand leadership to voter ID
  heartbeat priority [--node ID] N   set a member's leader priority (0..100); a healthy voter
                                     with a higher priority than the leader's is handed leadership
  heartbeat join --id ID --peer-addr A [--nonvoter]
                                     add a node to the cluster (then start it)
  heartbeat leave   [--addr A]       make the node at --addr leave the cluster and stop
  heartbeat remove  --id ID [--addr A | --peer P]
                                     remove another member (Coordinator at --addr, or the
                                     peer port --peer)
  heartbeat health  [--addr A]       exit 0 if the node is ready (SERVING)
  heartbeat version                  print the version

Every command that asks a node takes --addr (the node's client address,
default 127.0.0.1:7401, or HEARTBEAT_ADDR) and --timeout; the read commands
(status, members, leader, resources list, assignments, health) print a table
by default and JSON with --json.
Run 'heartbeat <command> --help' for the flags of a command.
Exit codes: 0 ok, 1 runtime failure, 2 usage error.
`
