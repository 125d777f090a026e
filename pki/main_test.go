package pki

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when one leaves a goroutine behind
// (a handshake or a gRPC server not waited for).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
