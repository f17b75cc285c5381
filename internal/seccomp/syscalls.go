//go:build linux

package seccomp

import (
	"fmt"
	"maps"

	"golang.org/x/sys/unix"
)

// syscallNumbers names the calls the policy, the self-test and the
// violation reports mention: the calls both architectures have, whose
// numbers x/sys/unix gives per architecture, and the calls only this
// architecture has (archSyscalls, in the arch files).
var syscallNumbers = func() map[string]uintptr {
	m := map[string]uintptr{
		"futex":             unix.SYS_FUTEX,
		"read":              unix.SYS_READ,
		"write":             unix.SYS_WRITE,
		"epoll_pwait":       unix.SYS_EPOLL_PWAIT,
		"nanosleep":         unix.SYS_NANOSLEEP,
		"sched_yield":       unix.SYS_SCHED_YIELD,
		"madvise":           unix.SYS_MADVISE,
		"mmap":              unix.SYS_MMAP,
		"munmap":            unix.SYS_MUNMAP,
		"mincore":           unix.SYS_MINCORE,
		"rt_sigaction":      unix.SYS_RT_SIGACTION,
		"rt_sigprocmask":    unix.SYS_RT_SIGPROCMASK,
		"rt_sigreturn":      unix.SYS_RT_SIGRETURN,
		"sigaltstack":       unix.SYS_SIGALTSTACK,
		"restart_syscall":   unix.SYS_RESTART_SYSCALL,
		"getpid":            unix.SYS_GETPID,
		"gettid":            unix.SYS_GETTID,
		"tgkill":            unix.SYS_TGKILL,
		"clone":             unix.SYS_CLONE,
		"clone3":            unix.SYS_CLONE3,
		"exit":              unix.SYS_EXIT,
		"exit_group":        unix.SYS_EXIT_GROUP,
		"sched_getaffinity": unix.SYS_SCHED_GETAFFINITY,
		"epoll_create1":     unix.SYS_EPOLL_CREATE1,
		"epoll_ctl":         unix.SYS_EPOLL_CTL,
		"eventfd2":          unix.SYS_EVENTFD2,
		"fcntl":             unix.SYS_FCNTL,
		"close":             unix.SYS_CLOSE,
		"clock_gettime":     unix.SYS_CLOCK_GETTIME,
		"getrandom":         unix.SYS_GETRANDOM,
		"pread64":           unix.SYS_PREAD64,
		"openat":            unix.SYS_OPENAT,
		"prctl":             unix.SYS_PRCTL,
		"execve":            unix.SYS_EXECVE,
		"execveat":          unix.SYS_EXECVEAT,
		"socket":            unix.SYS_SOCKET,
		"connect":           unix.SYS_CONNECT,
		"kill":              unix.SYS_KILL,
		"ptrace":            unix.SYS_PTRACE,
		"mount":             unix.SYS_MOUNT,
		"umount2":           unix.SYS_UMOUNT2,
		"chroot":            unix.SYS_CHROOT,
		"pivot_root":        unix.SYS_PIVOT_ROOT,
		"unshare":           unix.SYS_UNSHARE,
		"setns":             unix.SYS_SETNS,
		"setuid":            unix.SYS_SETUID,
		"setgid":            unix.SYS_SETGID,
		"io_uring_setup":    unix.SYS_IO_URING_SETUP,
		"bpf":               unix.SYS_BPF,
		"perf_event_open":   unix.SYS_PERF_EVENT_OPEN,
		"userfaultfd":       unix.SYS_USERFAULTFD,
		"keyctl":            unix.SYS_KEYCTL,
		"process_vm_readv":  unix.SYS_PROCESS_VM_READV,
		"ioctl":             unix.SYS_IOCTL,
		"personality":       unix.SYS_PERSONALITY,
		"mprotect":          unix.SYS_MPROTECT,
		"rseq":              unix.SYS_RSEQ,
		"set_robust_list":   unix.SYS_SET_ROBUST_LIST,
	}
	maps.Copy(m, archSyscalls)
	return m
}()

// Number returns the number of the syscall name on this architecture,
// false if the policy's table does not know it (or the architecture has
// no such call, as fork on arm64).
func Number(name string) (uintptr, bool) {
	nr, ok := syscallNumbers[name]
	return nr, ok
}

// SyscallName names a number for violation reports.
func SyscallName(nr int32) string {
	for name, n := range syscallNumbers {
		if uintptr(nr) == n {
			return name
		}
	}
	if X32Bit != 0 && nr&X32Bit != 0 {
		return fmt.Sprintf("x32:%d", nr&^X32Bit)
	}
	return fmt.Sprintf("syscall-%d", nr)
}

// Bypass returns the calls the kernel never shows to seccomp on this
// architecture, by number (a copy).
func Bypass() map[uintptr]string { return maps.Clone(seccompBypass) }
