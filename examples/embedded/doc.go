// Command embedded runs a Heartbeat node inside its own process (package
// node) instead of beside it, and uses it through the Go client (package
// client) like any application would: it waits until the node leads,
// registers a few resources, prints the leadership and its assignments, and
// follows assignment changes until SIGINT/SIGTERM (or --duration), then
// shuts the node down gracefully.
//
// By default it is a cluster of one on free loopback ports, with its data in
// data/embedded (a second run resumes from it):
//
//	go run ./examples/embedded --duration 5s
//
// The node is built with node.DefaultConfig and node.New, served by Run
// until a context ends (Run then calls Shutdown: drain, leadership
// hand-off, stop). An embedding program that needs more than the client
// API can reach the node's parts directly: Status, Membership().View(),
// Election().
package main
