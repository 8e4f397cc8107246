//go:build !(linux || darwin || freebsd || openbsd || netbsd || dragonfly)

package cache

// lockDir is a no-op where flock is unavailable; the caller must not share a data dir.
func lockDir(string) (func(), error) { return func() {}, nil }
