package bench

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"testing"

	"go.uber.org/goleak"
)

// burnEnv makes the test binary act as the busy phase's CPU burner (see TestRunnerEndToEnd).
const burnEnv = "HBBENCH_TEST_BURN"

func TestMain(m *testing.M) {
	if os.Getenv(burnEnv) == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		defer stop()
		Burn(ctx, 2)
		return
	}
	goleak.VerifyTestMain(m)
}
