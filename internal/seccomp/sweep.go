//go:build linux

package seccomp

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// SweepResult is the exhaustive sweep: every syscall number the policy does
// not list, called with zero arguments inside a worker.
type SweepResult struct {
	// Max is the highest number tried (beyond the architecture's table).
	Max int `json:"max"`
	// ArchMax is the architecture's highest defined syscall number.
	ArchMax int `json:"arch_max"`
	// Denied counts the numbers that failed with EPERM (x32 included).
	Denied int `json:"denied"`
	// Clone3 is what clone3 returned (want ENOSYS).
	Clone3 string `json:"clone3"`
	// Skipped lists numbers the kernel never filters (see Bypass).
	Skipped []string `json:"skipped,omitempty"`
	// Failures lists numbers that did anything but fail with EPERM.
	Failures []string `json:"failures,omitempty"`
}

// SweepMax is where the sweep stops: past every architecture's table, so
// numbers a future kernel adds are covered too.
const SweepMax = 1023

// Sweep calls every syscall number rules do not list and checks it fails
// with EPERM; on x86-64 it repeats the range with the x32 bit set. It is
// meant to run in a process under the filter of rules (a sandbox worker's
// self-test): anywhere else it makes every system call there is.
func Sweep(rules []Rule) SweepResult {
	listed := map[uintptr]bool{}
	for _, r := range rules {
		listed[syscallNumbers[r.Syscall]] = true
	}
	res := SweepResult{Max: SweepMax, ArchMax: maxSyscall}
	_, _, e := unix.RawSyscall6(syscallNumbers["clone3"], 0, 0, 0, 0, 0, 0)
	res.Clone3 = ErrnoName(e)
	bases := []uintptr{0}
	if X32Bit != 0 {
		bases = append(bases, X32Bit)
	}
	for _, base := range bases {
		for nr := uintptr(0); nr <= SweepMax; nr++ {
			if base == 0 && listed[nr] {
				continue
			}
			if _, bypass := seccompBypass[nr]; bypass && base == 0 {
				res.Skipped = append(res.Skipped, fmt.Sprintf("%d (%s: bypasses seccomp, SIGILL outside a uprobe)", nr, seccompBypass[nr]))
				continue
			}
			r, _, e := unix.RawSyscall6(base|nr, 0, 0, 0, 0, 0, 0)
			if e == unix.EPERM {
				res.Denied++
				continue
			}
			res.Failures = append(res.Failures, fmt.Sprintf("%#x: returned %d, %s", base|nr, int(r), ErrnoName(e)))
		}
	}
	return res
}
