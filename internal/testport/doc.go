// Package testport hands tests loopback TCP ports that stay theirs for the
// whole test, across the parallel test binaries of `go test ./...`.
//
// The usual trick — listen on "127.0.0.1:0", note the port, close the
// listener, bind it again later — races: the kernel gives the same port to
// the next ":0" listener or to the source end of an outgoing connection,
// and with nine test binaries dialing loopback at once that happens (CI saw
// "bind: address already in use" on a node's peer port). A port that a test
// binds, closes and binds again (a restarted node) is exposed for longer.
//
// So ports come from a range below the kernel's ephemeral range (which
// starts at 32768 on Linux), where neither ":0" listeners nor outgoing
// connections are given ports, and each port is reserved across processes
// by an exclusive flock on a file named for it in the temp directory. The
// lock is held until the test ends (t.Cleanup); a crashed test binary's
// locks go with its process. A probe listen skips ports that something
// outside the tests holds.
//
// Nothing but tests imports this package; it has no project dependencies,
// so the tests of any package (election and rpc included) can use it.
package testport
