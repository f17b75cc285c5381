//go:build !linux

package gateway

import "errors"

// OpenFilesLimit is the process's soft RLIMIT_NOFILE; only Linux is
// supported.
func OpenFilesLimit() (uint64, error) {
	return 0, errors.New("reading RLIMIT_NOFILE: only supported on Linux")
}
