//go:build linux || darwin || freebsd || openbsd || netbsd || dragonfly

package cache

import (
	"fmt"
	"os"
	"syscall"
)

// lockDir takes an exclusive advisory lock on path so that two processes (or two Stores
// in one process) never share a data dir: each would wipe the other's temp files and
// hold an index the other silently invalidates.
func lockDir(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("in use by another store: %w", err)
	}
	return func() { f.Close() }, nil // closing the file releases the lock
}
