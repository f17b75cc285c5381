package seccomp

import "golang.org/x/sys/unix"

const (
	auditArch = unix.AUDIT_ARCH_AARCH64
	// X32Bit is zero: arm64 has no second ABI sharing its audit arch.
	X32Bit     = 0
	maxSyscall = unix.SYS_RSEQ_SLICE_YIELD
)

// seccompBypass lists the calls the kernel never shows to seccomp (none
// on arm64).
var seccompBypass = map[uintptr]string{}

// archSyscalls are the table's calls that only arm64 has (none: its table
// is the common one, without fork and vfork).
var archSyscalls = map[string]uintptr{}
