//go:build linux

package seccomp

import (
	"fmt"
	"io"
	"strings"

	"golang.org/x/sys/unix"
)

// Rule admits one system call into a worker, unconditionally or when its
// arguments pass every check, or answers it with an errno of its own.
type Rule struct {
	// Syscall is the name as in the kernel's syscall table (no sys_ prefix).
	Syscall string
	// Hot calls are checked first and carry no argument checks, so the
	// kernel's per-syscall action cache allows them without running the
	// filter at all.
	Hot bool
	// Args must all hold for the call to be allowed; otherwise the
	// default action applies. Empty: allowed whatever the arguments.
	Args []ArgCheck
	// Errno, when non-zero, answers the call with this error instead of
	// allowing it (clone3: ENOSYS makes callers fall back to clone).
	Errno unix.Errno
	// Why the worker needs it; printed with the policy.
	Why string
}

// ArgCheck holds when the 64-bit argument Index equals one of OneOf.
type ArgCheck struct {
	Index int
	OneOf []uint64
	// Names label the values in OneOf for printing.
	Names []string
}

// Thread creation flags. Go's runtime creates threads with GoThreadFlags;
// glibc's pthread_create (only in binaries linked with cgo, such as test
// binaries) uses glibcThreadFlags. Both share the address space and stay in
// the thread group: no fork, no new namespaces.
const (
	GoThreadFlags = unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND | unix.CLONE_SYSVSEM | unix.CLONE_THREAD
	// goTLSThreadFlags is what a pure-Go (CGO_ENABLED=0) binary on amd64
	// really passes: runtime·clone adds CLONE_SETTLS to set the new
	// thread's FS base itself. Found by the kernel matrix: workers built
	// that way died at their first thread started after the filter.
	goTLSThreadFlags = GoThreadFlags | unix.CLONE_SETTLS
	glibcThreadFlags = GoThreadFlags | unix.CLONE_SETTLS | unix.CLONE_PARENT_SETTID | unix.CLONE_CHILD_CLEARTID
)

// WorkerPID is a sandbox worker's own pid: it is always the first process
// of its pid namespace, and the policy lets it signal only itself.
const WorkerPID = 1

// Policy returns the worker's seccomp allowlist, a copy the caller may
// change. See policy.
func Policy() []Rule {
	out := make([]Rule, len(policy))
	for i, r := range policy {
		r.Args = append([]ArgCheck(nil), r.Args...)
		for j, a := range r.Args {
			a.OneOf = append([]uint64(nil), a.OneOf...)
			a.Names = append([]string(nil), a.Names...)
			r.Args[j] = a
		}
		out[i] = r
	}
	return out
}

// policy is the worker's seccomp allowlist, measured on Go 1.26 (see
// docs/SANDBOX.md): what the runtime and the serving loop call once the
// worker is set up, and nothing else. Every other call is denied with EPERM
// (after the supervisor has counted it, when it listens). Changing it
// changes testdata/policy.golden: review both together.
var policy = []Rule{
	// Hot: the scheduler, the netpoller and the IPC socket.
	{Syscall: "futex", Hot: true, Why: "runtime locks and parking of threads"},
	{Syscall: "read", Hot: true, Why: "IPC socket, netpoller eventfd"},
	{Syscall: "write", Hot: true, Why: "IPC socket, netpoller wake-up"},
	{Syscall: "epoll_pwait", Hot: true, Why: "netpoller"},
	{Syscall: "nanosleep", Hot: true, Why: "runtime usleep"},
	{Syscall: "sched_yield", Hot: true, Why: "runtime osyield"},
	{Syscall: "madvise", Hot: true, Why: "returning memory to the kernel"},

	// Memory.
	{Syscall: "mmap", Why: "heap, stacks, wazero code buffers; never executable",
		Args: []ArgCheck{{Index: 2, OneOf: []uint64{unix.PROT_NONE, unix.PROT_READ | unix.PROT_WRITE},
			Names: []string{"PROT_NONE", "PROT_READ|PROT_WRITE"}}}},
	{Syscall: "munmap", Why: "heap and stacks"},
	{Syscall: "mincore", Why: "runtime probes (heap growth)"},
	{Syscall: "mprotect", Why: "glibc thread stacks (cgo binaries); wazero seals compiled code read+exec (never writable and executable)",
		Args: []ArgCheck{{Index: 2, OneOf: []uint64{unix.PROT_NONE, unix.PROT_READ, unix.PROT_READ | unix.PROT_WRITE, unix.PROT_READ | unix.PROT_EXEC},
			Names: []string{"PROT_NONE", "PROT_READ", "PROT_READ|PROT_WRITE", "PROT_READ|PROT_EXEC"}}}},

	// Signals: preemption (SIGURG) and crash handling.
	{Syscall: "rt_sigaction", Why: "runtime signal set-up"},
	{Syscall: "rt_sigprocmask", Why: "new threads, signal masking"},
	{Syscall: "rt_sigreturn", Why: "returning from a signal handler"},
	{Syscall: "sigaltstack", Why: "per-thread signal stacks"},
	{Syscall: "restart_syscall", Why: "restarting an interrupted sleep"},
	{Syscall: "getpid", Why: "preemption signals are sent to ourselves"},
	{Syscall: "gettid", Why: "preemption signals are sent to a thread"},
	{Syscall: "tgkill", Why: "preemption signal to a thread of this process only",
		Args: []ArgCheck{{Index: 0, OneOf: []uint64{WorkerPID}, Names: []string{"own pid (1)"}}}},

	// Threads.
	{Syscall: "clone", Why: "new runtime threads, thread flags only",
		Args: []ArgCheck{{Index: 0, OneOf: []uint64{GoThreadFlags, goTLSThreadFlags, glibcThreadFlags}, Names: []string{"Go thread", "Go thread setting its TLS (amd64)", "glibc thread"}}}},
	{Syscall: "clone3", Errno: unix.ENOSYS, Why: "flags live in memory a filter cannot read: callers fall back to clone"},
	{Syscall: "rseq", Why: "glibc thread start (cgo binaries): glibc aborts when registration fails"},
	{Syscall: "set_robust_list", Why: "glibc thread start (cgo binaries)"},
	{Syscall: "exit", Why: "thread exit"},
	{Syscall: "exit_group", Why: "process exit"},
	{Syscall: "sched_getaffinity", Why: "GOMAXPROCS updates"},

	// Netpoller set-up (lazy) and the IPC socket.
	{Syscall: "epoll_create1", Why: "netpoller (lazy set-up)"},
	{Syscall: "epoll_ctl", Why: "netpoller registration"},
	{Syscall: "eventfd2", Why: "netpoller wake-up (lazy set-up)"},
	{Syscall: "fcntl", Why: "os.File flags"},
	{Syscall: "close", Why: "closing descriptors"},

	// Misc runtime.
	{Syscall: "clock_gettime", Why: "vDSO fallback"},
	{Syscall: "getrandom", Why: "runtime and crypto/rand seeds"},
	{Syscall: "pread64", Why: "runtime re-reads the cgroup CPU limit (its file was closed: fails harmlessly)"},
	{Syscall: "openat", Why: "runtime probes (no file is reachable: empty root, Landlock)"},
	{Syscall: "prctl", Why: "runtime names anonymous mappings",
		Args: []ArgCheck{{Index: 0, OneOf: []uint64{unix.PR_SET_VMA}, Names: []string{"PR_SET_VMA"}}}},
}

// FormatPolicy writes the policy as the text `aegis sandbox policy` prints
// and testdata/policy.golden holds. It names no numbers, so it is the same
// on every architecture.
func FormatPolicy(w io.Writer, rules []Rule) error {
	var b strings.Builder
	b.WriteString("# aegis sandbox worker seccomp policy\n")
	b.WriteString("# architectures: x86-64 (x32 numbers denied), arm64; any other: kill process\n")
	b.WriteString("# default: EPERM (counted by the supervisor when it listens)\n")
	for _, r := range rules {
		fmt.Fprintf(&b, "%-18s ", r.Syscall)
		switch {
		case r.Errno != 0:
			fmt.Fprintf(&b, "errno %s", ErrnoName(r.Errno))
		case r.Hot:
			b.WriteString("allow (hot)")
		case len(r.Args) == 0:
			b.WriteString("allow")
		default:
			b.WriteString("allow if")
			for i, a := range r.Args {
				if i > 0 {
					b.WriteString(" and")
				}
				fmt.Fprintf(&b, " arg%d in {", a.Index)
				for j, v := range a.OneOf {
					if j > 0 {
						b.WriteString(", ")
					}
					fmt.Fprintf(&b, "%#x", v)
					if j < len(a.Names) {
						fmt.Fprintf(&b, " %s", a.Names[j])
					}
				}
				b.WriteString("}")
			}
		}
		fmt.Fprintf(&b, "  # %s\n", r.Why)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// ErrnoName is the symbolic name of e (EPERM), its number if it has none,
// or "" for no error.
func ErrnoName(e unix.Errno) string {
	if e == 0 {
		return ""
	}
	if n := unix.ErrnoName(e); n != "" {
		return n
	}
	return fmt.Sprintf("%d", uintptr(e))
}
