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

// cleanFlagErr rewords the flag package's "not defined" message.
func cleanFlagErr(err error) string {
	const undefined = "flag provided but not defined: "
	if msg := err.Error(); strings.HasPrefix(msg, undefined) {
		return "unknown flag " + strings.TrimPrefix(msg, undefined)
	}
	return err.Error()
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
		fmt.Fprintf(w, "  --%-22s %s\n  %24s (%s; %s)\n", n, f.Usage, "", env, def)
	}
}
