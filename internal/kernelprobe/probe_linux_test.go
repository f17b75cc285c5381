package kernelprobe

import (
	"bufio"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/aegis-edge/aegis/internal/testutil"
	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// byVersion are the features whose presence follows the mainline version
// on the kernels CI boots (Debian's configurations enable them all).
var byVersion = []string{XDP, XDPLink, RingBuf, LPMTrie, LRUMaps, KtimeBootNs, Jiffies64,
	CapBPF, MemcgAccounting, SeccompTSYNC, SeccompUserNotif}

// TestProbeAgreesWithKernel runs on this machine's kernel and, through
// make test-kernels, on each kernel of the matrix: every feature the
// running version should have is found, and no probe fails as root.
func TestProbeAgreesWithKernel(t *testing.T) {
	testutil.RequireRoot(t)
	r, err := Probe(Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kernel %s", r.Kernel)
	for _, f := range r.Features {
		t.Logf("%-20s available=%-5v %s", f.Name, f.Available, f.Detail)
		if f.Unknown() {
			t.Errorf("%s: probe failed as root: %s", f.Name, f.ProbeError)
		}
	}
	for _, name := range byVersion {
		f, _ := r.Feature(name)
		if want, known := releaseAtLeast(r.Kernel, f.MinKernel); known && want && !f.Available {
			t.Errorf("%s: missing on %s although it came in %s: %s", name, r.Kernel, f.MinKernel, f.Detail)
		}
	}
}

// landlockABIs is the mainline release that brought each Landlock ABI.
var landlockABIs = []string{1: "5.13", 2: "5.19", 3: "6.2", 4: "6.7", 5: "6.10", 6: "6.12", 7: "6.15"}

func TestLandlockABI(t *testing.T) {
	abi, err := LandlockABI()
	if err != nil {
		if !errors.Is(err, ebpf.ErrNotSupported) {
			t.Fatalf("LandlockABI: %v; want an ABI or ErrNotSupported", err)
		}
		t.Logf("Landlock missing: %v", err)
		return
	}
	release := kernelRelease()
	// The kernel offers at least the ABI its version brought.
	for level := len(landlockABIs) - 1; level >= 1; level-- {
		if ok, _ := releaseAtLeast(release, landlockABIs[level]); ok {
			if abi < level {
				t.Errorf("Landlock ABI %d on %s, which brought ABI %d", abi, release, level)
			}
			break
		}
	}
	r, err := Probe(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if f, _ := r.Feature(Landlock); !f.Available || !strings.Contains(f.Detail, "ABI") {
		t.Errorf("report row %+v disagrees with LandlockABI %d", f, abi)
	}
}

// TestCgroupVersionMatchesMounts checks the statfs-based detection against
// the mount table.
func TestCgroupVersionMatchesMounts(t *testing.T) {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fstype := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) >= 3 {
			fstype[fields[1]] = fields[2] // the last mount on a path wins
		}
	}
	want, wantHybrid := 0, fstype[CgroupRoot+"/unified"] == "cgroup2"
	switch fstype[CgroupRoot] {
	case "cgroup2":
		want, wantHybrid = 2, false
	case "tmpfs":
		for p, ft := range fstype {
			if strings.HasPrefix(p, CgroupRoot+"/") && ft == "cgroup" {
				want = 1
			}
		}
	}
	v, hybrid, err := CgroupVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v != want || hybrid != wantHybrid {
		t.Errorf("CgroupVersion = %d (hybrid %v); the mount table says %d (hybrid %v)", v, hybrid, want, wantHybrid)
	}
}

func TestFilterFlagKnown(t *testing.T) {
	tests := []struct {
		errno   unix.Errno
		known   bool
		wantErr bool
	}{
		{unix.EFAULT, true, false},
		{unix.EINVAL, false, false},
		{unix.ENOSYS, false, false},
		{unix.EACCES, false, true},
		{0, false, true},
	}
	for _, tt := range tests {
		known, err := filterFlagKnown(tt.errno)
		if known != tt.known || (err != nil) != tt.wantErr {
			t.Errorf("filterFlagKnown(%v) = %v, %v; want %v, error %v", tt.errno, known, err, tt.known, tt.wantErr)
		}
	}
	// An unknown flag bit must read as unknown on any kernel.
	if known, err := filterFlagKnown(seccomp(seccompSetModeFilter, 1<<30, nil)); known || err != nil {
		t.Errorf("flag 1<<30: known %v, %v", known, err)
	}
}

// TestMemcgProbeRestoresLimit checks that the probe puts RLIMIT_MEMLOCK
// back as it found it.
func TestMemcgProbeRestoresLimit(t *testing.T) {
	testutil.RequireRoot(t)
	var orig unix.Rlimit
	if err := unix.Prlimit(0, unix.RLIMIT_MEMLOCK, nil, &orig); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Prlimit(0, unix.RLIMIT_MEMLOCK, &orig, nil) })
	// A soft limit of its own, below the hard one, which stays.
	set := unix.Rlimit{Cur: min(64<<20, orig.Max), Max: orig.Max}
	if err := unix.Prlimit(0, unix.RLIMIT_MEMLOCK, &set, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := probeMemcg(); err != nil {
		t.Fatalf("probe: %v", err)
	}
	var after unix.Rlimit
	if err := unix.Prlimit(0, unix.RLIMIT_MEMLOCK, nil, &after); err != nil {
		t.Fatal(err)
	}
	if after != set {
		t.Errorf("RLIMIT_MEMLOCK is %+v after the probe, was %+v", after, set)
	}
}

// TestXDPLinkProbeLeavesNoTrace checks that the probe attaches nothing to
// the machine's loopback and leaves no thread in its namespace.
func TestXDPLinkProbeLeavesNoTrace(t *testing.T) {
	testutil.RequireRoot(t)
	before, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := HaveXDPLink(); err != nil && !errors.Is(err, ebpf.ErrNotSupported) {
			t.Fatalf("HaveXDPLink: %v", err)
		}
	}
	// Every thread of the process, parked ones included, is still in our
	// namespace.
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		ns, err := os.Readlink("/proc/self/task/" + task.Name() + "/ns/net")
		if err != nil && !errors.Is(err, os.ErrNotExist) { // a thread may exit meanwhile
			t.Errorf("thread %s: %v", task.Name(), err)
		}
		if err == nil && ns != before {
			t.Errorf("thread %s is in network namespace %s, want %s", task.Name(), ns, before)
		}
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if x := lo.Attrs().Xdp; x != nil && x.Attached {
		t.Errorf("an XDP program (id %d) is attached to this namespace's lo", x.ProgId)
	}
}
