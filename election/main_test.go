package election

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain runs the internal and the external tests (package
// election_test, the cluster tests over internal/testcluster) of this
// package, and checks that none leaves a goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
