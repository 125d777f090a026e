package testcluster

import (
	"context"
	"testing"
	"time"

	"github.com/heartbeat-sidecar/heartbeat/internal/testport"
)

// DefaultWait bounds Context and a Cluster's waits unless told otherwise,
// and is the usual timeout of testwait.Eventually in tests of a Cluster. It is generous: the machine is shared and -race is slow.
const DefaultWait = 30 * time.Second

// Context returns a context that ends with the test or after DefaultWait,
// whichever comes first.
func Context(t testing.TB) context.Context {
	return ContextWithin(t, DefaultWait)
}

// ContextWithin returns a context that ends with the test or after d.
func ContextWithin(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// FreePorts reserves n loopback TCP ports for the rest of the test, for
// addresses that must be known before a process listens on them (see
// internal/testport: no other test binary and no ":0" listener or outgoing
// connection is given them meanwhile).
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	return testport.Ports(t, n)
}

// FreeAddrs is FreePorts as "127.0.0.1:port" addresses, for the peer
// addresses of an initial cluster (or an address nothing listens on).
func FreeAddrs(t testing.TB, n int) []string {
	t.Helper()
	return testport.Addrs(t, n)
}
