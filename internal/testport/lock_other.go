//go:build !unix

package testport

import "sync"

// held stands in for file locks where flock does not exist: it keeps the
// reservations of this process apart (not those of other processes).
var held sync.Map

func tryLock(path string) (unlock func(), ok bool, err error) {
	if _, loaded := held.LoadOrStore(path, struct{}{}); loaded {
		return nil, false, nil
	}
	return func() { held.Delete(path) }, true, nil
}
