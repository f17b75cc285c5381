package privilege

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ProbeKernel reads the facts Required depends on from the running system.
func ProbeKernel() (Kernel, error) {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return Kernel{}, fmt.Errorf("reading the highest capability the kernel knows: %w", err)
	}
	last, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return Kernel{}, fmt.Errorf("parsing cap_last_cap %q: %w", b, err)
	}
	var st unix.Statfs_t
	mounted := unix.Statfs(BPFFSRoot, &st) == nil && st.Type == unix.BPF_FS_MAGIC
	return Kernel{LastCap: Capability(last), BPFFSMounted: mounted}, nil
}

// Effective returns the calling thread's effective capability set. Go runs
// goroutines on many threads, but the sets only differ between threads if
// something changed one thread's set on purpose; aegis never does.
func Effective() (CapSet, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, fmt.Errorf("reading capabilities: %w", err)
	}
	return CapSet(uint64(data[1].Effective)<<32 | uint64(data[0].Effective)), nil
}

// Required returns the capabilities the shield needs on the running kernel.
func Required() ([]Need, error) {
	k, err := ProbeKernel()
	if err != nil {
		return nil, err
	}
	return k.Required(), nil
}

// Check compares the process's effective capabilities with what the shield
// needs on the running kernel. The report is complete whether or not
// something is missing; the error is the report's Err, a *MissingError
// naming each missing capability, or a failure to read the facts.
func Check() (Report, error) {
	k, err := ProbeKernel()
	if err != nil {
		return Report{}, err
	}
	eff, err := Effective()
	if err != nil {
		return Report{}, err
	}
	req := k.Required()
	r := Report{Kernel: k, Effective: eff, Required: req, Missing: Missing(req, eff)}
	return r, r.Err()
}

// CheckCapabilities is Check for callers that only need the verdict: nil, or
// an error naming what is missing ("missing capabilities: CAP_BPF (...)").
func CheckCapabilities() error {
	_, err := Check()
	return err
}
