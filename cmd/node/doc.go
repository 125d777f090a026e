// Command heartbeat is the Heartbeat node binary (build it with
// `go build -o bin/heartbeat ./cmd/node`) and its command-line client.
//
//	heartbeat [run] [flags]          run a node until SIGINT/SIGTERM (graceful stop)
//	heartbeat status  [--addr A]     this node's view
//	heartbeat members [--addr A] [--watch]  the members; --watch prints every change
//	heartbeat leader  [--addr A] [--watch]
//	heartbeat resources list|put ID|delete ID
//	heartbeat assignments [--node ID]
//	heartbeat drain|undrain [--node ID]
//	heartbeat step-down [--addr A]   the leader hands leadership to another voter
//	heartbeat transfer ID [--addr A] hand leadership to voter ID
//	heartbeat priority [--node ID] N set a member's leader priority (0..100)
//	heartbeat join --id ID --peer-addr A [--nonvoter]  add a node
//	heartbeat leave   [--addr A]     the node at --addr leaves the cluster
//	heartbeat remove  --id ID [--addr A | --peer P]  remove another member
//	heartbeat health  [--addr A]     exit 0 if the node is SERVING (ready)
//	heartbeat version
//
// Every run flag has a HEARTBEAT_* environment equivalent; a flag on the
// command line wins over the environment. The read commands print tables,
// or JSON with --json. Exit codes: 0 ok, 1 runtime failure, 2 usage error.
//
// The file layout: main.go dispatches subcommands and maps errors to exit
// codes; flags.go applies HEARTBEAT_* variables under the command line (and
// collects positional arguments); run.go turns the run flags into a
// node.Config and runs the node (the node package does the work: this
// command stays thin); client.go holds the read commands, resources.go the
// resource commands, cluster.go the leadership and membership changes and
// admin.go remove — all speak to a node's client gRPC port (remove also to
// a peer port).
package main
