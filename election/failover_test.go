package election

import (
	"testing"
	"time"
)

func TestOpenBackoff(t *testing.T) {
	n := &Node{}
	tests := []struct {
		k        int
		min, max time.Duration
	}{
		{1, 50 * time.Millisecond, 200 * time.Millisecond},
		{2, 100 * time.Millisecond, 400 * time.Millisecond},
		{3, 200 * time.Millisecond, 800 * time.Millisecond},
		{10, maxOpenBackoff, maxOpenBackoff},
		{1000, maxOpenBackoff, maxOpenBackoff},
	}
	for _, tc := range tests {
		for i := 0; i < 100; i++ {
			if d := n.openBackoff(tc.k); d < tc.min || d > tc.max {
				t.Fatalf("openBackoff(%d) = %v, want within [%v, %v]", tc.k, d, tc.min, tc.max)
			}
		}
	}
}
