package testcluster

import (
	"bytes"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// Writer sends what is written to it to t.Log, one call a write with the
// trailing newline cut, so logs show only for a failing test (or with -v).
// Once the test has ended it drops what it is given: a node's late
// goroutines may still log, and t.Log after the end panics.
type Writer struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

// NewWriter returns a Writer for t, silenced by t.Cleanup.
func NewWriter(t testing.TB) *Writer {
	w := &Writer{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return w
}

// Write logs p unless the test has ended; it never fails.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers and readers
// (a node or a command logs from its goroutines while the test reads).
// The zero value is ready to use.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// LogLevel is the level the harness's nodes log at: Warn, or the level
// the environment variable HEARTBEAT_TEST_LOG names ("debug", "info",
// "error"). Logs go to the test's log (Writer): they show for a failing
// test or with -v.
func LogLevel() hclog.Level {
	if l := hclog.LevelFromString(os.Getenv("HEARTBEAT_TEST_LOG")); l != hclog.NoLevel {
		return l
	}
	return hclog.Warn
}
