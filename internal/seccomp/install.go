//go:build linux

package seccomp

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Install loads prog on every thread of the process (TSYNC). With notify,
// the kernel returns a listener (its descriptor) for the supervisor;
// without, it returns -1. The caller must have set no_new_privs.
// TSYNC_ESRCH lets TSYNC and NEW_LISTENER share the return value.
func Install(prog []unix.SockFilter, notify bool) (int, error) {
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	flags := uintptr(unix.SECCOMP_FILTER_FLAG_TSYNC)
	if notify {
		// WAIT_KILLABLE_RECV: once the supervisor has a call, signals
		// (Go's preemption SIGURG) no longer interrupt its wait, so a call
		// is neither restarted nor counted twice.
		flags |= unix.SECCOMP_FILTER_FLAG_NEW_LISTENER | unix.SECCOMP_FILTER_FLAG_TSYNC_ESRCH | unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
	}
	r, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, flags, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(prog)
	if e != 0 {
		return -1, e
	}
	if !notify {
		if r != 0 {
			return -1, fmt.Errorf("thread %d could not be synchronised", r)
		}
		return -1, nil
	}
	return int(r), nil
}
