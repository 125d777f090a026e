package node

import (
	"net"
	"testing"
)

// TestLoopback: the gateway dials its own client port on 127.0.0.1 when the
// port is bound to a wildcard, IPv6 "[::]" included: ::1 does not exist in
// a Docker container without IPv6, and the chaos suite's every HTTP call
// failed there with "cannot assign requested address".
func TestLoopback(t *testing.T) {
	for in, want := range map[string]string{
		":7401":          "127.0.0.1:7401",
		"0.0.0.0:7401":   "127.0.0.1:7401",
		"[::]:7401":      "127.0.0.1:7401",
		"127.0.0.1:7401": "127.0.0.1:7401",
		"10.0.0.5:7401":  "10.0.0.5:7401",
		"[::1]:7401":     "[::1]:7401",
	} {
		addr, err := net.ResolveTCPAddr("tcp", in)
		if err != nil {
			t.Fatal(err)
		}
		if got := loopback(addr); got != want {
			t.Errorf("loopback(%s) = %s, want %s", in, got, want)
		}
	}
}
