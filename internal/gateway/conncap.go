package gateway

import "fmt"

// AutoMaxConnsCeiling is the most connections a derived cap allows: each
// open connection costs some 10–20 KiB of memory besides its descriptor.
const AutoMaxConnsCeiling = 8192

// minReserve is the fewest descriptors kept for the node itself: the state
// store, the audit log, BPF objects, worker pipes, the admin socket, the
// functions' outbound fetches.
const minReserve = 256

// Reserve is how many of nofile open files the gateway leaves to the rest
// of the node: a quarter, at least 256.
func Reserve(nofile uint64) uint64 { return max(minReserve, nofile/4) }

// MaxConns resolves gateway.max_conns against the open-files limit nofile
// (RLIMIT_NOFILE's soft limit): 0 derives a cap of what the reserve leaves,
// at most AutoMaxConnsCeiling; a configured cap that eats into the reserve
// is an error, so that no number of gateway clients can take the
// descriptors the admin socket and the rest of the node need.
func MaxConns(configured int, nofile uint64) (int, error) {
	reserve := Reserve(nofile)
	if nofile <= reserve {
		return 0, fmt.Errorf("gateway.max_conns: the open-files limit (RLIMIT_NOFILE) is %d, not more than the node's reserve of %d: raise it (LimitNOFILE= in the unit)", nofile, reserve)
	}
	room := nofile - reserve
	if configured == 0 {
		return int(min(room, AutoMaxConnsCeiling)), nil
	}
	if configured < 0 || uint64(configured) > room {
		return 0, fmt.Errorf("gateway.max_conns: %d would leave the node fewer than its reserve of %d of the %d open files (RLIMIT_NOFILE): set at most %d, or raise the limit (LimitNOFILE= in the unit)",
			configured, reserve, nofile, room)
	}
	return configured, nil
}
