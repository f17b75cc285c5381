//go:build !linux

package privilege

import (
	"errors"
	"fmt"
)

// errNotLinux is what every probe returns on systems other than Linux.
var errNotLinux = fmt.Errorf("privilege checks need Linux: %w", errors.ErrUnsupported)

// ProbeKernel fails: capabilities and bpffs are Linux's.
func ProbeKernel() (Kernel, error) { return Kernel{}, errNotLinux }

// Effective fails: capabilities are Linux's.
func Effective() (CapSet, error) { return 0, errNotLinux }

// Required fails: capabilities are Linux's.
func Required() ([]Need, error) { return nil, errNotLinux }

// Check fails: capabilities are Linux's.
func Check() (Report, error) { return Report{}, errNotLinux }

// CheckCapabilities fails: capabilities are Linux's.
func CheckCapabilities() error { return errNotLinux }

// MemcgAccounting fails: BPF is Linux's.
func MemcgAccounting() (bool, error) { return false, errNotLinux }

// RaiseMemlock fails: BPF is Linux's.
func RaiseMemlock(need uint64, _ MemlockOptions) (MemlockResult, error) {
	return MemlockResult{Need: need}, errNotLinux
}
