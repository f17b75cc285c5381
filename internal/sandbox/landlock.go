//go:build linux

package sandbox

import (
	"errors"
	"fmt"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Landlock is implemented here on x/sys/unix rather than with go-landlock:
// go-landlock v0.11 needs libcap's psx module, which is not in go.sum, and
// the worker needs only one thing from Landlock: a ruleset with no rules.

// landlockRulesetAttr is struct landlock_ruleset_attr; the size passed to
// the kernel grows with the ABI (fs, then net from ABI 4, scoped from ABI 6).
type landlockRulesetAttr struct {
	handledAccessFS  uint64
	handledAccessNet uint64
	scoped           uint64
}

// landlockFSRights is every filesystem right the kernel of a given ABI
// knows: EXECUTE through MAKE_SYM (ABI 1), REFER (2), TRUNCATE (3),
// IOCTL_DEV (5).
func landlockFSRights(abi int) uint64 {
	rights := uint64(unix.LANDLOCK_ACCESS_FS_MAKE_SYM<<1) - 1
	if abi >= 2 {
		rights |= unix.LANDLOCK_ACCESS_FS_REFER
	}
	if abi >= 3 {
		rights |= unix.LANDLOCK_ACCESS_FS_TRUNCATE
	}
	if abi >= 5 {
		rights |= unix.LANDLOCK_ACCESS_FS_IOCTL_DEV
	}
	return rights
}

// landlockTSYNCABI is the first ABI whose landlock_restrict_self can
// restrict every thread of the process at once.
const landlockTSYNCABI = 8

// restrictLandlock denies the worker every filesystem and network right its
// kernel can take away. The thread calling it must have no_new_privs.
func restrictLandlock() LandlockStatus {
	var st LandlockStatus
	abi, _, e := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if e != 0 {
		st.Error = fmt.Sprintf("not supported by this kernel (%v)", e)
		return st
	}
	st.ABI = int(abi)
	attr := landlockRulesetAttr{handledAccessFS: landlockFSRights(st.ABI)}
	size := unsafe.Sizeof(attr.handledAccessFS)
	if st.ABI >= 4 {
		attr.handledAccessNet = unix.LANDLOCK_ACCESS_NET_BIND_TCP | unix.LANDLOCK_ACCESS_NET_CONNECT_TCP
		size += unsafe.Sizeof(attr.handledAccessNet)
	}
	if st.ABI >= 6 {
		attr.scoped = unix.LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | unix.LANDLOCK_SCOPE_SIGNAL
		size += unsafe.Sizeof(attr.scoped)
	}
	fd, _, e := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, uintptr(unsafe.Pointer(&attr)), size, 0)
	if e != 0 {
		st.Error = fmt.Sprintf("creating the ruleset: %v", e)
		return st
	}
	defer unix.Close(int(fd))
	if st.ABI >= landlockTSYNCABI {
		if _, _, e := unix.Syscall(unix.SYS_LANDLOCK_RESTRICT_SELF, fd, unix.LANDLOCK_RESTRICT_SELF_TSYNC, 0); e == 0 {
			st.FS, st.Net, st.Scopes, st.Threads = attr.handledAccessFS, attr.handledAccessNet, attr.scoped, "all threads"
			return st
		}
	}
	all, err := allThreadsSyscall(unix.SYS_LANDLOCK_RESTRICT_SELF, fd, 0, 0)
	if err != nil {
		st.Error = fmt.Sprintf("restricting: %v", err)
		return st
	}
	st.FS, st.Net, st.Scopes, st.Threads = attr.handledAccessFS, attr.handledAccessNet, attr.scoped, threadsWord(all)
	return st
}

func threadsWord(all bool) string {
	if all {
		return "all threads"
	}
	return "serving thread only (cgo binary)"
}

// allThreadsSyscall runs a syscall on every thread of the process, which
// Go can do only in binaries without cgo; with cgo it runs it on the calling
// thread alone and says so. The worker serves from the thread it was set up
// on, so the payload is covered either way.
func allThreadsSyscall(nr, a1, a2, a3 uintptr) (all bool, err error) {
	_, _, e := syscall.AllThreadsSyscall(nr, a1, a2, a3)
	if errors.Is(e, syscall.ENOTSUP) {
		_, _, e = unix.RawSyscall(nr, a1, a2, a3)
		return false, errnoErr(e)
	}
	return true, errnoErr(e)
}

func errnoErr(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}
