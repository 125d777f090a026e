//go:build unix

package election

import (
	"errors"
	"os"
	"syscall"
)

// tryShared takes a shared, non-blocking flock on f: false while another
// open file holds bbolt's exclusive lock on it. Closing f drops it.
func tryShared(f *os.File) (bool, error) {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return false, nil
	}
	return err == nil, err
}
