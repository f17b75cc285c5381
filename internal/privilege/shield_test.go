//go:build linux

package privilege_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/privilege"
	"github.com/aegis-edge/aegis/internal/shield"
	"github.com/aegis-edge/aegis/internal/testutil"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// The test binary doubles as the process under test. With envStage set to
// "launch" it enters a network namespace, shrinks its capability bounding set
// and re-executes itself with envStage "child" — what nsenter and setpriv
// would do, but without depending on util-linux (busybox's setpriv, in the
// kernel-matrix guests, cannot change the bounding set). As uid 0, execve
// sets the permitted and effective sets to the bounding set, so the child
// holds exactly the capabilities it was given.
const (
	envStage   = "AEGIS_PRIVILEGE_STAGE"
	envNetNS   = "AEGIS_PRIVILEGE_NETNS"   // namespace path to enter
	envCaps    = "AEGIS_PRIVILEGE_CAPS"    // comma-separated capability numbers to keep
	envPin     = "AEGIS_PRIVILEGE_PIN"     // the shield's pin path
	envIface   = "AEGIS_PRIVILEGE_IFACE"   // interface to attach to
	envNetlink = "AEGIS_PRIVILEGE_NETLINK" // "1": attach through netlink
	envPerf    = "AEGIS_PRIVILEGE_PERF"    // "1": events through the perf event array
)

func TestMain(m *testing.M) {
	switch os.Getenv(envStage) {
	case "launch":
		err := launch()
		fmt.Fprintf(os.Stderr, "launch: %v\n", err)
		os.Exit(3)
	case "child":
		os.Exit(child())
	}
	os.Exit(m.Run())
}

// launch never returns unless it fails: every step acts on this thread,
// whose namespace and capability sets execve hands on.
func launch() error {
	runtime.LockOSThread()
	fd, err := unix.Open(os.Getenv(envNetNS), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening namespace: %w", err)
	}
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("entering namespace: %w", err)
	}
	unix.Close(fd)

	keep := map[int]bool{}
	if s := os.Getenv(envCaps); s != "" {
		for f := range strings.SplitSeq(s, ",") {
			c, err := strconv.Atoi(f)
			if err != nil {
				return fmt.Errorf("capability %q: %w", f, err)
			}
			keep[c] = true
		}
	}
	k, err := privilege.ProbeKernel()
	if err != nil {
		return err
	}
	for c := 0; c <= int(k.LastCap); c++ {
		if !keep[c] {
			if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
				return fmt.Errorf("dropping capability %d from the bounding set: %w", c, err)
			}
		}
	}
	// Inheritable and ambient capabilities would survive execve on their own.
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clearing ambient capabilities: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("reading capabilities: %w", err)
	}
	data[0].Inheritable, data[1].Inheritable = 0, 0
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("clearing inheritable capabilities: %w", err)
	}

	exe, err := os.Executable()
	if err != nil {
		return err
	}
	env := append(slices.DeleteFunc(os.Environ(), func(s string) bool { return strings.HasPrefix(s, envStage+"=") }), envStage+"=child")
	return syscall.Exec(exe, []string{exe}, env)
}

// childReport is what the child did: each field is empty on success or
// holds the error of that step.
type childReport struct {
	Effective privilege.CapSet `json:"effective"`
	Check     string           `json:"check"`
	Memcg     bool             `json:"memcg"`
	MemcgErr  string           `json:"memcg_err"`
	Load      string           `json:"load"`
	Attach    string           `json:"attach"`
	Via       string           `json:"via"`
	Operate   string           `json:"operate"`
	Detach    string           `json:"detach"`
	// Kernel is the kernel's own verdict on loading and attaching the
	// shield's object directly, past the loader's capability check.
	Kernel string `json:"kernel"`
}

func (r childReport) ok() bool {
	return r.Check == "" && r.Load == "" && r.Attach == "" && r.Operate == "" && r.Detach == "" && r.Kernel == ""
}

// child checks its capabilities, asks the kernel directly to load and
// attach the shield's object, then loads, attaches, operates and detaches the
// shield through its loader (which checks the capabilities itself first).
func child() int {
	var rep childReport
	errText := func(err error) string {
		if err == nil {
			return ""
		}
		return err.Error()
	}
	defer func() { json.NewEncoder(os.Stdout).Encode(rep) }()

	eff, err := privilege.Effective()
	if err != nil {
		rep.Check = err.Error()
		return 1
	}
	rep.Effective = eff
	rep.Check = errText(privilege.CheckCapabilities())
	rep.Memcg, err = privilege.MemcgAccounting()
	rep.MemcgErr = errText(err)
	iface := os.Getenv(envIface)
	rep.Kernel = errText(loadAndAttachRaw(iface))

	s, err := shield.Load(shield.Options{PinPath: os.Getenv(envPin), NetlinkAttach: os.Getenv(envNetlink) == "1", PerfEvents: os.Getenv(envPerf) == "1"})
	if err != nil {
		rep.Load = err.Error()
		return 1
	}
	defer s.Close()
	info, err := s.Attach(iface, shield.XDPAuto)
	rep.Via = info.Via
	if err != nil {
		rep.Attach = err.Error()
		return 1
	}
	rep.Operate = errText(operate(s))
	rep.Detach = errText(s.Detach(iface))
	if !rep.ok() {
		return 1
	}
	return 0
}

// loadAndAttachRaw creates the shield's maps and program unpinned and
// attaches it, with nothing in between that checks capabilities.
func loadAndAttachRaw(iface string) error {
	spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(shield.Object()))
	if err != nil {
		return err
	}
	for _, m := range spec.Maps {
		m.Pinning = ebpf.PinNone
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	defer coll.Close()
	ifc, err := net.InterfaceByName(iface)
	if err != nil {
		return err
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: coll.Programs["aegis_xdp"], Interface: ifc.Index})
	if err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	return l.Close()
}

// operate does what the daemon does with a loaded shield: list changes,
// reads of rules and counters, and the event reader.
func operate(s *shield.Shield) error {
	p := netip.MustParsePrefix("198.51.100.0/24")
	if err := s.PutRules(shield.Blocklist, []shield.Rule{{Prefix: p, RuleID: 1}}); err != nil {
		return err
	}
	rules, err := s.Rules(shield.Blocklist)
	if err != nil {
		return err
	}
	if len(rules) != 1 || rules[0].Prefix != p {
		return fmt.Errorf("rules read back as %v", rules)
	}
	if err := s.DeleteRules(shield.Blocklist, []netip.Prefix{p}); err != nil {
		return err
	}
	if _, err := s.Counters(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // opens the reader, then returns as it closes
	return s.ReadEvents(ctx, func(shield.AutoBlock) {})
}

// runChild starts the launcher for one capability set and returns the
// child's report and exit status.
// childPaths selects the shield's fallback paths in the child.
type childPaths struct{ netlink, perf bool }

func runChild(t *testing.T, ns *testutil.NetNS, iface string, keep []privilege.Capability, paths childPaths) (childReport, int) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	nums := make([]string, len(keep))
	for i, c := range keep {
		nums[i] = strconv.Itoa(int(c))
	}
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Scale(time.Minute))
	defer cancel()
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(os.Environ(),
		envStage+"=launch",
		envNetNS+"="+ns.Path,
		envCaps+"="+strings.Join(nums, ","),
		envPin+"="+testutil.PinPath(t),
		envIface+"="+iface,
		envNetlink+"="+flag(paths.netlink),
		envPerf+"="+flag(paths.perf),
	)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("running child: %v", err)
		}
		code = ee.ExitCode()
	}
	var rep childReport
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("child (exit %d) wrote no report: %v\nstdout: %s\nstderr: %s", code, err, out, stderr.String())
	}
	if stderr.Len() > 0 {
		t.Logf("child stderr: %s", stderr.String())
	}
	return rep, code
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func setOf(cs []privilege.Capability) privilege.CapSet {
	var s privilege.CapSet
	for _, c := range cs {
		s = s.With(c)
	}
	return s
}

// TestShieldNeedsExactlyTheDocumentedCapabilities proves the documented set
// (privilege.Required, docs/SECURITY.md, deploy/aegis.service): a process
// holding only those capabilities passes the check and loads, attaches,
// operates and detaches the shield through bpf_link and through netlink, and
// the set of kernels before 5.8 does so through the perf event array; with any one of them removed the check and the loader name it, and
// the kernel itself refuses to load or attach the object.
func TestShieldNeedsExactlyTheDocumentedCapabilities(t *testing.T) {
	testutil.RequireRoot(t)
	req, err := privilege.Required()
	if err != nil {
		t.Fatal(err)
	}
	var documented []privilege.Capability
	for _, n := range req {
		if !slices.Contains(documented, n.Cap) {
			documented = append(documented, n.Cap)
		}
	}
	eff, err := privilege.Effective()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range append(slices.Clone(documented), privilege.CapSysAdmin) {
		if !eff.Has(c) {
			t.Fatalf("the test process lacks %s, so it cannot hand it to the child", c)
		}
	}
	memcg, err := privilege.MemcgAccounting()
	if err != nil {
		t.Fatal(err)
	}
	unprivBPF, err := os.ReadFile("/proc/sys/kernel/unprivileged_bpf_disabled")
	if err != nil {
		t.Fatal(err)
	}
	v := testutil.NewVethPair(t)

	var oldKernel []privilege.Capability // what kernels before 5.8 need
	for _, n := range (privilege.Kernel{LastCap: privilege.CapPerfmon - 1, BPFFSMounted: true}).Required() {
		oldKernel = append(oldKernel, n.Cap)
	}
	tests := []struct {
		name  string
		caps  []privilege.Capability
		paths childPaths
	}{
		{"documented set", documented, childPaths{}},
		{"documented set, netlink attach", documented, childPaths{netlink: true}},
		// The perf event array is the path of kernels before 5.8, which
		// need CAP_SYS_ADMIN anyway; with kernel.perf_event_paranoid=3
		// (Debian's default) opening it takes CAP_SYS_ADMIN even on new
		// kernels, so it is tested with the old kernels' set.
		{"pre-5.8 set, netlink attach and perf events", oldKernel, childPaths{netlink: true, perf: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep, code := runChild(t, v.A, v.IfA, tc.caps, tc.paths)
			if code != 0 || !rep.ok() {
				t.Fatalf("exit %d with %v: %+v", code, tc.caps, rep)
			}
			if rep.Effective != setOf(tc.caps) {
				t.Errorf("child held %#x, want exactly %#x", uint64(rep.Effective), uint64(setOf(tc.caps)))
			}
			want := shield.ViaLink
			if tc.paths.netlink {
				want = shield.ViaNetlink
			}
			if rep.Via != want {
				t.Errorf("attached via %q, want %q", rep.Via, want)
			}
			if rep.MemcgErr != "" || rep.Memcg != memcg {
				t.Errorf("memcg probe in the child: %v %q, in the test: %v", rep.Memcg, rep.MemcgErr, memcg)
			}
		})
	}

	for _, removed := range documented {
		t.Run("without "+removed.String(), func(t *testing.T) {
			keep := slices.DeleteFunc(slices.Clone(documented), func(c privilege.Capability) bool { return c == removed })
			rep, code := runChild(t, v.A, v.IfA, keep, childPaths{})
			if code == 0 || rep.ok() {
				t.Fatalf("child succeeded without %s: %+v", removed, rep)
			}
			if !strings.HasPrefix(rep.Check, "missing capabilities: ") || !strings.Contains(rep.Check, removed.String()+" (") {
				t.Errorf("check said %q, want it to name %s", rep.Check, removed)
			}
			for _, c := range keep {
				if strings.Contains(rep.Check, c.String()) {
					t.Errorf("check %q names %s, which the child held", rep.Check, c)
				}
			}
			if !strings.Contains(rep.Load, removed.String()+" (") {
				t.Errorf("the loader's error %q does not name %s", rep.Load, removed)
			}
			if rep.Kernel == "" {
				t.Errorf("the kernel loaded and attached the shield without %s", removed)
			}
			// Without CAP_BPF the probe cannot create its map at all, unless
			// the kernel lets anyone create one.
			if removed == privilege.CapBPF && strings.TrimSpace(string(unprivBPF)) != "0" &&
				!strings.Contains(rep.MemcgErr, "CAP_BPF") {
				t.Errorf("memcg probe without CAP_BPF: %v %q, want an error naming CAP_BPF", rep.Memcg, rep.MemcgErr)
			}
			t.Logf("without %s: the kernel says %q", removed, rep.Kernel)
		})
	}
}
