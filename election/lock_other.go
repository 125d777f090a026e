//go:build !unix

package election

import "os"

// tryShared: no flock here; bbolt's own open still refuses a file in use.
func tryShared(*os.File) (bool, error) { return true, nil }
