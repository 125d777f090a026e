//go:build !race

package transport

// raceEnabled reports whether the tests run under the race detector.
const raceEnabled = false
