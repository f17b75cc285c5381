package seccomp

import "golang.org/x/sys/unix"

const (
	auditArch = unix.AUDIT_ARCH_X86_64
	// X32Bit marks x32 syscall numbers, which share the x86-64 audit
	// architecture: the filter refuses them.
	X32Bit = 0x40000000
	// maxSyscall is the highest syscall number this architecture defines.
	maxSyscall = unix.SYS_RSEQ_SLICE_YIELD
)

// seccompBypass lists the calls the kernel never shows to seccomp: the
// uprobe trampolines' own syscalls, which deliver SIGILL to any other
// caller. The sweep cannot test them (they would kill the worker).
var seccompBypass = map[uintptr]string{unix.SYS_URETPROBE: "uretprobe", unix.SYS_UPROBE: "uprobe"}

// archSyscalls are the table's calls that only x86-64 has.
var archSyscalls = map[string]uintptr{
	"fork":  unix.SYS_FORK,
	"vfork": unix.SYS_VFORK,
}
