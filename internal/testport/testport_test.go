package testport

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

func TestPortsAreDistinctInRangeAndBindable(t *testing.T) {
	ports := Ports(t, 64)
	seen := map[int]bool{}
	for _, p := range ports {
		if p < RangeLow || p >= RangeHigh {
			t.Fatalf("port %d outside [%d, %d)", p, RangeLow, RangeHigh)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
	// Each can be bound, closed and bound again (a restarted node).
	for _, p := range ports[:4] {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		for range 2 {
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				t.Fatalf("bind reserved %s: %v", addr, err)
			}
			_ = ln.Close()
		}
	}
}

func TestReservedPortIsNotHandedOutAgain(t *testing.T) {
	p, release, err := reserve()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(lockDir(), strconv.Itoa(p))
	// A second open of the lock file (as another test binary would do) is
	// refused while the reservation is held...
	if _, ok, err := tryLock(path); err != nil || ok {
		t.Fatalf("second lock of a held port: ok=%v err=%v, want refused", ok, err)
	}
	release()
	// ...and granted once it is given back.
	unlock, ok, err := tryLock(path)
	if err != nil || !ok {
		t.Fatalf("lock after release: ok=%v err=%v", ok, err)
	}
	unlock()
}

func TestBusyPortIsSkipped(t *testing.T) {
	// Something outside the tests listens on a port in the range: reserve
	// must not return it.
	// The port must not be reserved by a test elsewhere, or reserve would
	// skip it for that reason and the probe would go untested.
	if err := os.MkdirAll(lockDir(), 0o777); err != nil {
		t.Fatal(err)
	}
	var ln net.Listener
	for p := RangeLow; p < RangeHigh && ln == nil; p++ {
		unlock, ok, err := tryLock(filepath.Join(lockDir(), strconv.Itoa(p)))
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			continue
		}
		unlock()
		ln, _ = net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	}
	if ln == nil {
		t.Fatal("no port in range to occupy")
	}
	defer ln.Close()
	busy := ln.Addr().(*net.TCPAddr).Port
	// Searching from the busy port itself must step past it.
	p, release, err := reserveFrom(busy - RangeLow)
	if err != nil {
		t.Fatal(err)
	}
	release()
	if p == busy {
		t.Fatalf("reserve returned port %d, which is in use", busy)
	}
}
