package kernelprobe

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	ebpffeatures "github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// fromLibrary turns a cilium/ebpf feature test's answer into a probe's.
func fromLibrary(err error, detail string) (bool, string, error) {
	switch {
	case err == nil:
		return true, detail, nil
	case errors.Is(err, ebpf.ErrNotSupported):
		return false, "", notSupported("%v", err)
	default:
		return false, "", err
	}
}

func probeXDP() (bool, string, error) {
	return fromLibrary(ebpffeatures.HaveProgramType(ebpf.XDP), "")
}

func probeRingBuf() (bool, string, error) {
	return fromLibrary(ebpffeatures.HaveMapType(ebpf.RingBuf), "")
}

func probeLPMTrie() (bool, string, error) {
	return fromLibrary(ebpffeatures.HaveMapType(ebpf.LPMTrie), "")
}

func probeLRUMaps() (bool, string, error) {
	if ok, d, err := fromLibrary(ebpffeatures.HaveMapType(ebpf.LRUHash), ""); !ok {
		return ok, d, err
	}
	return fromLibrary(ebpffeatures.HaveMapType(ebpf.LRUCPUHash), "")
}

func probeKtimeBootNs() (bool, string, error) {
	return fromLibrary(ebpffeatures.HaveProgramHelper(ebpf.XDP, asm.FnKtimeGetBootNs), "")
}

func probeJiffies64() (bool, string, error) {
	return fromLibrary(ebpffeatures.HaveProgramHelper(ebpf.XDP, asm.FnJiffies64), "")
}

// HaveXDPLink reports whether XDP programs attach through bpf_link (5.9):
// nil if so, an error wrapping ebpf.ErrNotSupported if not, another error
// if the probe failed. It attaches a program that passes everything to the
// loopback device of a network namespace made for the probe and dropped
// after it; that needs CAP_SYS_ADMIN and CAP_BPF (or CAP_SYS_ADMIN alone).
func HaveXDPLink() error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:    ebpf.XDP,
		License: "GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, 2), // XDP_PASS
			asm.Return(),
		},
	})
	if err != nil {
		return fmt.Errorf("loading probe program: %w", err)
	}
	defer prog.Close()

	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("opening the current network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("new network namespace: %w", err)
			return
		}
		const loopback = 1 // lo is always the first device of a namespace
		l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: loopback, Flags: link.XDPGenericMode})
		if err == nil {
			l.Close()
		}
		// Back to the original namespace, which drops the probe's. Should
		// that fail, the thread stays locked and the runtime discards it
		// when this goroutine ends (or, for the main thread, parks it).
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		done <- err
	}()
	err = <-done
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ebpf.ErrNotSupported):
		// No BPF_LINK_CREATE at all (before 5.7).
		return err
	case errors.Is(err, unix.EINVAL):
		// BPF_LINK_CREATE without the XDP attach type (5.7, 5.8): lo and
		// the program are valid, so only the attach type can be refused.
		return fmt.Errorf("%w: %v", ebpf.ErrNotSupported, err)
	default:
		return err
	}
}

func probeXDPLink() (bool, string, error) {
	return fromLibrary(HaveXDPLink(), "")
}

// probeCapBPF asks whether the kernel knows CAP_BPF and tells whether this
// process holds the capabilities the loader wants.
func probeCapBPF() (bool, string, error) {
	data, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return false, "", err
	}
	last, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return false, "", fmt.Errorf("reading cap_last_cap: %w", err)
	}
	held := heldCapabilities()
	if last < unix.CAP_BPF {
		return false, "", notSupported("the kernel's last capability is %d; %s", last, held)
	}
	return true, held, nil
}

// heldCapabilities names which of the loader's capabilities the process has
// in its effective set.
func heldCapabilities() string {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return "capabilities unreadable: " + err.Error()
	}
	var have, lack []string
	for _, c := range []struct {
		name string
		bit  int
	}{{"CAP_BPF", unix.CAP_BPF}, {"CAP_NET_ADMIN", unix.CAP_NET_ADMIN}, {"CAP_SYS_ADMIN", unix.CAP_SYS_ADMIN}} {
		if data[c.bit/32].Effective&(1<<(c.bit%32)) != 0 {
			have = append(have, c.name)
		} else {
			lack = append(lack, c.name)
		}
	}
	s := "this process has " + orNone(have)
	if len(lack) > 0 {
		s += ", lacks " + strings.Join(lack, ", ")
	}
	return s
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// probeMemcg creates a small map with RLIMIT_MEMLOCK at zero: kernels that
// charge BPF memory to the memory cgroup (5.11) ignore the limit, older
// ones refuse with EPERM. A first map under the unchanged limit tells that
// refusal from a lack of privilege. The soft limit is restored before
// returning; maps created by other goroutines meanwhile could fail, so this
// runs before anything else loads.
func probeMemcg() (bool, string, error) {
	spec := &ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1}
	m, err := ebpf.NewMap(spec)
	if err != nil {
		return false, "", fmt.Errorf("creating a map: %w", err)
	}
	m.Close()

	var old unix.Rlimit
	if err := unix.Prlimit(0, unix.RLIMIT_MEMLOCK, nil, &old); err != nil {
		return false, "", fmt.Errorf("reading RLIMIT_MEMLOCK: %w", err)
	}
	zero := unix.Rlimit{Cur: 0, Max: old.Max}
	if err := unix.Prlimit(0, unix.RLIMIT_MEMLOCK, &zero, nil); err != nil {
		return false, "", fmt.Errorf("lowering RLIMIT_MEMLOCK: %w", err)
	}
	m, err = ebpf.NewMap(spec)
	if rerr := unix.Prlimit(0, unix.RLIMIT_MEMLOCK, &old, nil); rerr != nil {
		return false, "", fmt.Errorf("restoring RLIMIT_MEMLOCK: %w", rerr)
	}
	switch {
	case err == nil:
		m.Close()
		return true, "", nil
	case errors.Is(err, unix.EPERM):
		return false, "", notSupported("map creation counts against RLIMIT_MEMLOCK")
	default:
		return false, "", fmt.Errorf("creating a map under a zero RLIMIT_MEMLOCK: %w", err)
	}
}

// LandlockABI returns the Landlock ABI level the kernel offers (1 is 5.13),
// or an error wrapping ebpf.ErrNotSupported when Landlock is not built in
// or not enabled at boot.
func LandlockABI() (int, error) {
	abi, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	switch errno {
	case 0:
		return int(abi), nil
	case unix.ENOSYS:
		return 0, fmt.Errorf("%w: landlock_create_ruleset: not built into this kernel", ebpf.ErrNotSupported)
	case unix.EOPNOTSUPP:
		return 0, fmt.Errorf("%w: Landlock is built in but not enabled (lsm= boot parameter)", ebpf.ErrNotSupported)
	default:
		return 0, fmt.Errorf("landlock_create_ruleset: %w", errno)
	}
}

func probeLandlock() (bool, string, error) {
	abi, err := LandlockABI()
	if err != nil {
		return fromLibrary(err, "")
	}
	return true, fmt.Sprintf("ABI %d", abi), nil
}

// seccomp(2) operations.
const (
	seccompSetModeFilter = 1
	seccompGetNotifSizes = unix.SECCOMP_GET_NOTIF_SIZES
)

func seccomp(op, flags uintptr, arg unsafe.Pointer) unix.Errno {
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, op, flags, uintptr(arg))
	return errno
}

// filterFlagKnown interprets seccomp(SECCOMP_SET_MODE_FILTER, flag, NULL):
// the kernel checks the flags before it reads the filter, so EFAULT (from
// reading NULL) means the flag is known, EINVAL that it is not.
func filterFlagKnown(errno unix.Errno) (bool, error) {
	switch errno {
	case unix.EFAULT:
		return true, nil
	case unix.EINVAL:
		return false, nil
	case unix.ENOSYS:
		return false, nil // no seccomp at all
	case 0:
		return false, errors.New("seccomp accepted a NULL filter")
	default:
		return false, fmt.Errorf("seccomp: %w", errno)
	}
}

func probeSeccompTSYNC() (bool, string, error) {
	known, err := filterFlagKnown(seccomp(seccompSetModeFilter, unix.SECCOMP_FILTER_FLAG_TSYNC, nil))
	if err != nil {
		return false, "", err
	}
	if !known {
		return false, "", notSupported("seccomp filter mode or its TSYNC flag is missing")
	}
	return true, "", nil
}

func probeSeccompUserNotif() (bool, string, error) {
	var sizes struct{ notif, resp, data uint16 }
	switch errno := seccomp(seccompGetNotifSizes, 0, unsafe.Pointer(&sizes)); errno {
	case 0:
		return true, "", nil
	case unix.EINVAL, unix.ENOSYS:
		return false, "", notSupported("SECCOMP_GET_NOTIF_SIZES: %v", errno)
	default:
		return false, "", fmt.Errorf("SECCOMP_GET_NOTIF_SIZES: %w", errno)
	}
}

// CgroupRoot is where aegis expects the cgroup file systems.
const CgroupRoot = "/sys/fs/cgroup"

// CgroupVersion tells how cgroups are mounted at CgroupRoot: 2 for the
// unified hierarchy, 1 for v1 controllers (with or without a v2 hierarchy
// beside them, "hybrid"), 0 for none.
func CgroupVersion() (version int, hybrid bool, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(CgroupRoot, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return 0, false, nil
		}
		return 0, false, fmt.Errorf("statfs %s: %w", CgroupRoot, err)
	}
	switch st.Type {
	case unix.CGROUP2_SUPER_MAGIC:
		return 2, false, nil
	case unix.TMPFS_MAGIC:
		var u unix.Statfs_t
		hybrid = unix.Statfs(CgroupRoot+"/unified", &u) == nil && u.Type == unix.CGROUP2_SUPER_MAGIC
		ents, err := os.ReadDir(CgroupRoot)
		if err != nil {
			return 0, false, err
		}
		if len(ents) == 0 || hybrid && len(ents) == 1 {
			return 0, hybrid, nil
		}
		return 1, hybrid, nil
	default:
		return 0, false, nil
	}
}

func probeCgroupV2() (bool, string, error) {
	v, hybrid, err := CgroupVersion()
	if err != nil {
		return false, "", err
	}
	switch {
	case v == 2:
		ctrl, err := os.ReadFile(CgroupRoot + "/cgroup.controllers")
		if err != nil {
			return true, "", nil
		}
		return true, "controllers: " + orNone(strings.Fields(string(ctrl))), nil
	case v == 1 && hybrid:
		return false, "", notSupported("cgroup v1 controllers with an empty v2 hierarchy at %s/unified (hybrid)", CgroupRoot)
	case v == 1:
		return false, "", notSupported("cgroup v1")
	default:
		return false, "", notSupported("no cgroup file system at %s", CgroupRoot)
	}
}
