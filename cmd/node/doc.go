// Command heartbeat is the Heartbeat node binary (build it with
// `go build -o bin/heartbeat ./cmd/node`) and its command-line client.
//
//	heartbeat [run] [flags]          run a node until SIGINT/SIGTERM (graceful stop)
//	heartbeat status  [--addr A]     this node's view
//	heartbeat members [--addr A]     the raft configuration
//	heartbeat leader  [--addr A] [--watch]
//	heartbeat health  [--addr A]     exit 0 if the node is SERVING (ready)
//	heartbeat remove  --id ID [--peer P]  remove a member (via a peer port)
//	heartbeat version
//
// Every run flag has a HEARTBEAT_* environment equivalent; a flag on the
// command line wins over the environment. Exit codes: 0 ok, 1 runtime
// failure, 2 usage error.
//
// The file layout: main.go dispatches subcommands and maps errors to exit
// codes; flags.go applies HEARTBEAT_* variables under the command line;
// run.go turns the run flags into a node.Config and runs the node (the node
// package does the work: this command stays thin); client.go holds the
// client commands, which speak to a node's client gRPC port.
package main
