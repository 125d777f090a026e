// Command heartbeat is the Heartbeat node binary (build it with
// `go build -o bin/heartbeat ./cmd/node`) and its command-line client.
//
//	heartbeat run [flags]              run a node until SIGINT/SIGTERM (graceful stop)
//	heartbeat status|members|leader    read a node's view (--stale, --json; members and
//	                                   leader take --watch)
//	heartbeat resources list|put ID|delete ID
//	heartbeat assignments [--node-id ID] [--watch]
//	heartbeat drain|undrain [--node-id ID]
//	heartbeat priority [--node-id ID] --priority N
//	heartbeat step-down | transfer --node-id ID
//	heartbeat join --node-id ID --peer-addr A [--nonvoter]
//	heartbeat leave | remove --node-id ID
//	heartbeat app-heartbeat [--ttl D] | health | version
//	heartbeat tls init --out DIR --nodes n1,... [--clients name:role,...]
//	heartbeat tls inspect FILE...
//
// `heartbeat` alone (or help, --help) lists the subcommands; docs/cli.md is
// the reference. Every run flag has a HEARTBEAT_* environment equivalent; a
// flag on the command line wins over the environment. The client commands
// read only HEARTBEAT_ADDR (--addr); tls reads none. Exit codes: 0 ok, 1 runtime failure, 2
// usage error, 3 corrupt data dir (run: election.ErrCorrupt).
//
// Every command but run, tls and version is a client of package client (the
// project's Go client): writes follow the leader, calls retry until
// --timeout, and the --watch commands reconnect, to another member when the
// node asked is gone (connect.go learns the members when a watch starts).
//
// The file layout: main.go lists the subcommands, dispatches and maps errors
// to exit codes; flags.go applies HEARTBEAT_* variables under the command
// line (and refuses the spellings of earlier versions); connect.go parses
// the flags every client command shares and builds the client; run.go turns
// the run flags into a node.Config and runs the node (package node does the
// work); read.go (status, members, health, version), leader.go,
// resources.go (resources, assignments, drain, app-heartbeat) and cluster.go
// (priority, leadership and membership changes) hold the commands; view.go
// the JSON they print. tls.go (tls init, tls inspect) asks no node: it
// writes and reads certificate files through package pki.
package main
