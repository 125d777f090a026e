// Package testcluster is the shared test harness for packages that run real
// Heartbeat nodes in process: nodes of package node on loopback gRPC, with
// the lenient timings a shared, -race-slowed machine needs.
//
// It is an ordinary package so that the tests of several packages (client,
// cmd/node, the examples) can import it; nothing but tests imports it. The
// tests of node and rpc/api keep their own helpers: node is what this
// package starts, and rpc/api is imported by node, so either importing this
// package would be an import cycle.
//
// What it provides:
//
//   - the one polling helper is internal/testwait's Eventually (a leaf
//     package, so that tests this package cannot serve use it too);
//     DefaultWait is the usual bound of a wait on a Cluster;
//   - Context and ContextWithin give a context that ends with the test;
//   - FreeAddrs and FreePorts reserve loopback ports for the test, for
//     addresses that must be known before a node starts;
//   - Writer sends logs to t.Log and goes quiet once the test has ended
//     (a node's late goroutines may still log); SyncBuffer is a bytes
//     buffer safe for concurrent writers and readers;
//   - Cluster starts voters n1..nN with an initial cluster on free loopback
//     peer ports and ":0" (or, with Options.FixedClientAddrs, reserved)
//     client ports, optionally every peer transport wrapped by one
//     internal/faultnet network; it kills, restarts, joins and isolates nodes,
//     finds the leader and the followers, waits for every membership
//     record, and closes what still runs when the test ends (t.Cleanup).
//
// A Cluster is driven from the test's goroutine: its methods are not safe
// for concurrent use, though the nodes they return are.
package testcluster
