package testport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// [RangeLow, RangeHigh) is the range ports are taken from: below Linux's
// ephemeral range (32768–60999) and clear of the ports the project's scripts
// use (local cluster 74xx, compose 76xx/77xx, benchmarks from 27400).
const (
	RangeLow  = 12000
	RangeHigh = 27000
)

// ErrExhausted is returned when every port in the range is reserved or busy.
var ErrExhausted = errors.New("testport: no free port in range")

// lockDir is where the per-port lock files live.
func lockDir() string { return filepath.Join(os.TempDir(), "heartbeat-testports") }

// Ports reserves n distinct loopback ports for the rest of the test. It
// fails the test if it cannot.
func Ports(t testing.TB, n int) []int {
	t.Helper()
	out := make([]int, 0, n)
	for range n {
		p, release, err := reserve()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(release)
		out = append(out, p)
	}
	return out
}

// Addrs is Ports as "127.0.0.1:port" addresses.
func Addrs(t testing.TB, n int) []string {
	t.Helper()
	out := make([]string, 0, n)
	for _, p := range Ports(t, n) {
		out = append(out, net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	}
	return out
}

// Addr is one reserved "127.0.0.1:port" address.
func Addr(t testing.TB) string {
	t.Helper()
	return Addrs(t, 1)[0]
}

// reserve finds a port no other reservation holds and nothing listens on,
// and returns it with the function that gives it back.
func reserve() (int, func(), error) {
	return reserveFrom(rand.IntN(RangeHigh - RangeLow))
}

// reserveFrom is reserve searching the range from offset start.
func reserveFrom(start int) (int, func(), error) {
	if err := os.MkdirAll(lockDir(), 0o777); err != nil {
		return 0, nil, fmt.Errorf("testport: %w", err)
	}
	span := RangeHigh - RangeLow
	for i := range span {
		port := RangeLow + (start+i)%span
		unlock, ok, err := tryLock(filepath.Join(lockDir(), strconv.Itoa(port)))
		if err != nil {
			return 0, nil, fmt.Errorf("testport: %w", err)
		}
		if !ok {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			unlock() // held by something that is not a test of ours
			continue
		}
		_ = ln.Close()
		return port, unlock, nil
	}
	return 0, nil, ErrExhausted
}
