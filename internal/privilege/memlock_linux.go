package privilege

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// memlockMu serialises this package's changes to RLIMIT_MEMLOCK, and memcg
// caches the probe: the answer is a property of the kernel.
var (
	memlockMu sync.Mutex
	memcg     *bool
)

// MemcgAccounting reports whether the kernel charges BPF maps to the memory
// cgroup (5.11 and later) rather than to RLIMIT_MEMLOCK.
//
// It finds out by lowering the soft limit to zero for the time it takes to
// create a one-entry array map, then restoring it: the map can only be
// created if the limit is not consulted. Call it before loading anything,
// while nothing else in the process creates BPF objects; a map created
// concurrently on a pre-5.11 kernel would see the zero limit. The answer is
// cached after the first successful probe.
func MemcgAccounting() (bool, error) {
	memlockMu.Lock()
	defer memlockMu.Unlock()
	if memcg != nil {
		return *memcg, nil
	}
	ok, err := probeMemcg()
	if err != nil {
		return false, err
	}
	memcg = &ok
	return ok, nil
}

func probeMemcg() (bool, error) {
	var old unix.Rlimit
	if err := unix.Prlimit(0, unix.RLIMIT_MEMLOCK, nil, &old); err != nil {
		return false, fmt.Errorf("reading RLIMIT_MEMLOCK: %w", err)
	}
	// Lowering the soft limit is always allowed; the hard one stays, so the
	// restore below needs no privilege either.
	zero := unix.Rlimit{Cur: 0, Max: old.Max}
	if err := unix.Prlimit(0, unix.RLIMIT_MEMLOCK, &zero, nil); err != nil {
		return false, fmt.Errorf("lowering RLIMIT_MEMLOCK for the accounting probe: %w", err)
	}
	m, mapErr := newProbeMap()
	if err := unix.Prlimit(0, unix.RLIMIT_MEMLOCK, &old, nil); err != nil {
		if m != nil {
			m.Close()
		}
		return false, fmt.Errorf("restoring RLIMIT_MEMLOCK after the accounting probe: %w", err)
	}
	if mapErr == nil {
		m.Close()
		return true, nil
	}
	if !errors.Is(mapErr, unix.EPERM) {
		return false, fmt.Errorf("creating the accounting probe map: %w", mapErr)
	}
	// EPERM also means "not allowed at all": tell the two apart by trying
	// again under the restored limit.
	m, err := newProbeMap()
	if err != nil {
		return false, fmt.Errorf("probing BPF memory accounting: creating a BPF map is refused even within RLIMIT_MEMLOCK (is CAP_BPF missing?): %w", err)
	}
	m.Close()
	return false, nil
}

func newProbeMap() (*ebpf.Map, error) {
	return ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
}

// RaiseMemlock makes RLIMIT_MEMLOCK cover need bytes of BPF objects (see
// MemlockNeed) where the kernel charges them to it, that is before 5.11
// (or always with opts.Force).
//
// The soft limit goes to need plus headroom (a quarter, at least 8 MiB),
// never above the ceiling (MemlockCeiling) and never to unlimited; the hard
// limit is raised only if it is below that, which needs CAP_SYS_RESOURCE, so
// a service unit should grant the room with LimitMEMLOCK= instead. A limit is
// never lowered. The result says what changed, for the caller to log and
// audit; it is filled in as far as RaiseMemlock got, even with an error.
func RaiseMemlock(need uint64, opts MemlockOptions) (MemlockResult, error) {
	res := MemlockResult{Need: need}
	if !opts.Force {
		ok, err := MemcgAccounting()
		if err != nil {
			return res, err
		}
		if ok {
			old, err := getMemlock()
			if err != nil {
				return res, err
			}
			res.Old, res.New, res.Skipped = old, old, SkipMemcg
			return res, nil
		}
	}

	memlockMu.Lock()
	defer memlockMu.Unlock()
	old, err := getMemlock()
	if err != nil {
		return res, err
	}
	res.Old, res.New = old, old
	res.Target, res.Capped = memlockTarget(need, opts.ceiling(), uint64(os.Getpagesize()))
	nl, change := planMemlock(old, res.Target)
	if !change {
		res.Skipped = SkipSufficient
		return res, nil
	}
	lim := unix.Rlimit{Cur: nl.Soft, Max: nl.Hard}
	if err := unix.Prlimit(0, unix.RLIMIT_MEMLOCK, &lim, nil); err != nil {
		if errors.Is(err, unix.EPERM) && nl.Hard > old.Hard {
			return res, fmt.Errorf("raising RLIMIT_MEMLOCK to %s needs CAP_SYS_RESOURCE above the hard limit of %s (or grant it with LimitMEMLOCK=): %w",
				formatBytes(nl.Soft), formatBytes(old.Hard), err)
		}
		return res, fmt.Errorf("raising RLIMIT_MEMLOCK to %s: %w", formatBytes(nl.Soft), err)
	}
	res.New, res.Changed = nl, true
	return res, nil
}

func getMemlock() (Rlimit, error) {
	var l unix.Rlimit
	if err := unix.Prlimit(0, unix.RLIMIT_MEMLOCK, nil, &l); err != nil {
		return Rlimit{}, fmt.Errorf("reading RLIMIT_MEMLOCK: %w", err)
	}
	return Rlimit{Soft: l.Cur, Hard: l.Max}, nil
}
