//go:build race

package transport

// raceEnabled: the race detector instruments every copy of a large message as one
// long non-preemptible call, which stalls the whole process at the next GC; timing
// bounds of tests that move tens of MiB are loosened under it.
const raceEnabled = true
