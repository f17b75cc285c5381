package gateway

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// OpenFilesLimit is the process's soft RLIMIT_NOFILE. The Go runtime has
// already raised it to the hard limit at start.
func OpenFilesLimit() (uint64, error) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 0, fmt.Errorf("reading RLIMIT_NOFILE: %w", err)
	}
	return rl.Cur, nil
}
