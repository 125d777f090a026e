// Package testcluster is the one in-process cluster harness of the
// project's tests: real nodes over real gRPC on loopback, data in
// t.TempDir() bolt files, a faultnet network for partitions when asked, the
// lenient timings a shared, -race-slowed machine needs, and everything
// closed when the test ends (t.Cleanup).
//
// It has two levels, like a node has:
//
//   - Cluster starts whole Heartbeat nodes (package node) n1..nN with an
//     initial cluster on free loopback peer ports and ":0" (or, with
//     Options.FixedClientAddrs, reserved) client ports, optionally every
//     peer transport wrapped by one internal/faultnet network; it kills,
//     restarts, joins and isolates nodes, finds the leader and the
//     followers, and waits for every membership record. The tests of node,
//     client, cmd/node and the examples use it.
//   - ElectionCluster starts election nodes (package election) over
//     rpc/transport, every transport wrapped by one faultnet network and a
//     Hook (break a held stream, refuse redials), with a LogFSM or the
//     state machine a test gives; it kills, restarts, isolates and heals
//     nodes, waits for a leader and reads each node's metrics. The tests
//     of election and rpc/api use it: they test what package node would
//     hide.
//
// Around them: Context and ContextWithin give a context that ends with the
// test; FreeAddrs and FreePorts reserve loopback ports for the test
// (internal/testport); Writer sends logs to t.Log and goes quiet once the
// test has ended (a node's late goroutines may still log), at LogLevel
// (HEARTBEAT_TEST_LOG); SyncBuffer is a bytes buffer safe for concurrent
// writers and readers. The one polling helper is internal/testwait's
// Eventually, a leaf package, so that internal tests this package cannot
// serve use it too.
//
// Nothing but tests imports this package. It imports node, and node imports
// election, membership and the rpc packages, so the tests of those packages
// that use it are external test packages (package election_test,
// package api_test, package node_test); what such a test needs of its
// package's internals, an export_test.go file of that package hands it.
//
// A cluster is driven from the test's goroutine: its methods are not safe
// for concurrent use, though the nodes they return are.
package testcluster
