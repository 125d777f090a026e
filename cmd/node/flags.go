package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// envName is the environment variable of a flag: HEARTBEAT_ and the flag's
// name upper-cased with '-' turned into '_' (--peer-addr: HEARTBEAT_PEER_ADDR).
func envName(flagName string) string {
	return "HEARTBEAT_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseFlags applies the environment to fs's flags (as their values before
// the command line), then parses args, so that a flag given on the command
// line wins. Flags in noEnv have no environment equivalent. Errors are usage
// errors; --help returns flag.ErrHelp after printing usage to stdout.
func parseFlags(fs *flag.FlagSet, args []string, getenv env, stdout io.Writer, usage string, noEnv ...string) error {
	pos, err := parseFlagsArgs(fs, args, getenv, stdout, usage, noEnv...)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErrorf("unexpected argument %q (flags start with --)", pos[0])
	}
	return nil
}

// parseFlagsArgs is parseFlags for a command that takes positional
// arguments: it returns them, in order. They may come before, between or
// after the flags.
func parseFlagsArgs(fs *flag.FlagSet, args []string, getenv env, stdout io.Writer, usage string, noEnv ...string) ([]string, error) {
	skip := map[string]bool{}
	for _, n := range noEnv {
		skip[n] = true
	}
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if envErr != nil || skip[f.Name] {
			return
		}
		name := envName(f.Name)
		if v, ok := lookup(getenv, name); ok {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = usageErrorf("environment %s=%q: %v", name, v, cleanFlagErr(err))
			}
		}
	})
	if envErr != nil {
		return nil, envErr
	}
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				printUsage(stdout, fs, usage, skip)
				return nil, flag.ErrHelp
			}
			return nil, usageErrorf("%v", cleanFlagErr(err))
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// lookup reads an environment variable; an empty value counts as unset.
func lookup(getenv env, name string) (string, bool) {
	v := getenv(name)
	return v, v != ""
}

// renamedFlags are flags of earlier versions that no command accepts any
// more, with what replaced them (CHANGELOG.md, "CLI"). They are refused like
// any unknown flag; the message says what to use instead.
var renamedFlags = map[string]string{
	"id":    "--node-id",
	"node":  "--node-id",
	"voter": "--nonvoter (the default is a voter)",
	"peer":  "--addr (remove goes through a node's client address)",
}

// renamedVars are environment variables of earlier versions of run; a set
// one is refused rather than silently ignored.
var renamedVars = map[string]string{
	"HEARTBEAT_ID":    "HEARTBEAT_NODE_ID",
	"HEARTBEAT_VOTER": "HEARTBEAT_NONVOTER (inverted: true means a non-voter)",
}

// renamedEnv returns a usage error naming a set variable of renamedVars.
func renamedEnv(getenv env) error {
	names := make([]string, 0, len(renamedVars))
	for n := range renamedVars {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, ok := lookup(getenv, n); ok {
			return usageErrorf("environment %s is no longer read: use %s (see CHANGELOG.md)", n, renamedVars[n])
		}
	}
	return nil
}

// cleanFlagErr rewords the flag package's "not defined" message, naming the
// replacement of a renamed flag.
func cleanFlagErr(err error) string {
	const undefined = "flag provided but not defined: "
	msg := err.Error()
	if !strings.HasPrefix(msg, undefined) {
		return msg
	}
	name := strings.TrimPrefix(msg, undefined)
	out := "unknown flag " + name
	if to, ok := renamedFlags[strings.TrimLeft(name, "-")]; ok {
		out += " (replaced by " + to + "; see CHANGELOG.md)"
	}
	return out
}

// printUsage prints usage text and a table of the flags, their environment
// variables and defaults.
func printUsage(w io.Writer, fs *flag.FlagSet, usage string, noEnv map[string]bool) {
	fmt.Fprint(w, usage)
	fmt.Fprintln(w, "\nFlags (environment variable; default):")
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	sort.Strings(names)
	for _, n := range names {
		f := fs.Lookup(n)
		env := envName(n)
		if noEnv[n] {
			env = "-"
		}
		def := f.DefValue
		if def == "" {
			def = `""`
		}
		usage := strings.ReplaceAll(f.Usage, "\n", "\n"+strings.Repeat(" ", 27)) // under the first line
		fmt.Fprintf(w, "  --%-22s %s\n  %24s (%s; %s)\n", n, usage, "", env, def)
	}
}
