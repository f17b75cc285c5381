//go:build linux

package privilege

import (
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func caps(needs []Need) []Capability {
	out := make([]Capability, len(needs))
	for i, n := range needs {
		out[i] = n.Cap
	}
	return out
}

func TestCapabilityNumbersMatchTheKernelHeaders(t *testing.T) {
	for c, want := range map[Capability]int{
		CapNetAdmin:    unix.CAP_NET_ADMIN,
		CapSysAdmin:    unix.CAP_SYS_ADMIN,
		CapSysResource: unix.CAP_SYS_RESOURCE,
		CapPerfmon:     unix.CAP_PERFMON,
		CapBPF:         unix.CAP_BPF,
	} {
		if int(c) != want {
			t.Errorf("%s is %d, linux/capability.h says %d", c, int(c), want)
		}
	}
	if got := Capability(5).String(); got != "CAP_5" {
		t.Errorf("unnamed capability prints %q", got)
	}
}

func TestRequiredDependsOnTheKernel(t *testing.T) {
	tests := []struct {
		name   string
		kernel Kernel
		want   []Capability
	}{
		{"5.8 and later", Kernel{LastCap: CapBPF, BPFFSMounted: true}, []Capability{CapBPF, CapNetAdmin, CapPerfmon}},
		{"newer capabilities beyond CAP_BPF", Kernel{LastCap: CapBPF + 1, BPFFSMounted: true}, []Capability{CapBPF, CapNetAdmin, CapPerfmon}},
		{"before 5.8", Kernel{LastCap: 37, BPFFSMounted: true}, []Capability{CapSysAdmin, CapNetAdmin}},
		{"bpffs to mount", Kernel{LastCap: CapBPF + 1}, []Capability{CapBPF, CapNetAdmin, CapPerfmon, CapSysAdmin}},
		{"bpffs to mount before 5.8", Kernel{LastCap: 37}, []Capability{CapSysAdmin, CapNetAdmin}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := tc.kernel.Required()
			if got := caps(req); !slices.Equal(got, tc.want) {
				t.Fatalf("required %v, want %v", got, tc.want)
			}
			for _, n := range req {
				if n.Why == "" {
					t.Errorf("%s has no reason", n.Cap)
				}
			}
			if !tc.kernel.BPFFSMounted && !slices.ContainsFunc(req, func(n Need) bool { return strings.Contains(n.Why, "bpffs") }) {
				t.Errorf("no need mentions mounting bpffs: %v", req)
			}
		})
	}
}

func TestMissingAcceptsWhatTheKernelAccepts(t *testing.T) {
	modern := Kernel{LastCap: CapBPF + 1, BPFFSMounted: true}.Required()
	old := Kernel{LastCap: 37, BPFFSMounted: true}.Required()
	set := func(cs ...Capability) CapSet {
		var s CapSet
		for _, c := range cs {
			s = s.With(c)
		}
		return s
	}
	tests := []struct {
		name string
		req  []Need
		eff  CapSet
		want []Capability
	}{
		{"exact set", modern, set(CapBPF, CapNetAdmin, CapPerfmon), nil},
		{"sys_admin stands in for bpf and perfmon", modern, set(CapSysAdmin, CapNetAdmin), nil},
		{"sys_admin does not stand in for net_admin", modern, set(CapSysAdmin), []Capability{CapNetAdmin}},
		{"bpf alone", modern, set(CapBPF), []Capability{CapNetAdmin, CapPerfmon}},
		{"nothing", modern, 0, []Capability{CapBPF, CapNetAdmin, CapPerfmon}},
		{"bpf is no use before 5.8", old, set(CapBPF, CapNetAdmin, CapPerfmon), []Capability{CapSysAdmin}},
		{"old kernel satisfied", old, set(CapSysAdmin, CapNetAdmin), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := caps(Missing(tc.req, tc.eff)); !slices.Equal(got, tc.want) {
				t.Fatalf("missing %v, want %v", got, tc.want)
			}
		})
	}
}

func TestMissingErrorNamesEachCapabilityAndWhy(t *testing.T) {
	req := Kernel{LastCap: CapBPF, BPFFSMounted: true}.Required()
	r := Report{Required: req, Effective: CapSet(0).With(CapPerfmon), Missing: Missing(req, CapSet(0).With(CapPerfmon))}
	err := r.Err()
	if !errors.Is(err, ErrMissingCapabilities) {
		t.Fatalf("error %v does not match ErrMissingCapabilities", err)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "missing capabilities: CAP_BPF (") {
		t.Errorf("error %q does not start with the first missing capability", msg)
	}
	for _, n := range r.Missing {
		if !strings.Contains(msg, n.Cap.String()+" ("+n.Why+")") {
			t.Errorf("error %q does not name %s with its reason", msg, n.Cap)
		}
	}
	if strings.Contains(msg, "CAP_PERFMON") {
		t.Errorf("error %q names a capability the process holds", msg)
	}
	if (Report{Required: req, Effective: 1<<64 - 1}).Err() != nil {
		t.Error("a report with nothing missing has an error")
	}
}

// The effective set read with capget must be what the kernel shows in
// /proc/self/status.
func TestEffectiveMatchesProcStatus(t *testing.T) {
	eff, err := Effective()
	if err != nil {
		t.Fatal(err)
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			want, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			if uint64(eff) != want {
				t.Fatalf("Effective %#x, /proc/self/status CapEff %#x", uint64(eff), want)
			}
			return
		}
	}
	t.Fatal("no CapEff line in /proc/self/status")
}

func TestProbeKernelReadsTheRunningKernel(t *testing.T) {
	k, err := ProbeKernel()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := strconv.Atoi(strings.TrimSpace(string(b))); int(k.LastCap) != want {
		t.Errorf("LastCap %d, cap_last_cap %d", k.LastCap, want)
	}
	mounts, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	mounted := false
	for line := range strings.Lines(string(mounts)) {
		f := strings.Fields(line)
		if len(f) >= 3 && f[1] == BPFFSRoot && f[2] == "bpf" {
			mounted = true
		}
	}
	if k.BPFFSMounted != mounted {
		t.Errorf("BPFFSMounted %v, /proc/self/mounts says %v", k.BPFFSMounted, mounted)
	}
}
