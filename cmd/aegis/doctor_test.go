package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/aegis-edge/aegis/internal/kernelprobe"
	"github.com/aegis-edge/aegis/internal/sandbox"
	"github.com/aegis-edge/aegis/internal/testutil"
)

// doctorRows maps each feature row of the table to its status column.
func doctorRows(t *testing.T, stdout string) map[string]string {
	t.Helper()
	rows := map[string]string{}
	for _, line := range strings.Split(stdout, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 {
			rows[f[0]] = f[1]
		}
	}
	return rows
}

func TestDoctorTable(t *testing.T) {
	testutil.RequireRoot(t)
	code, stdout, stderr := cli("doctor")
	r, err := kernelprobe.Probe(kernelprobe.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	_, capErr := sandbox.ProbeMemoryCap()
	if len(r.MissingRequired()) > 0 || capErr != nil {
		want = 1
	}
	if code != want {
		t.Fatalf("exit %d, want %d (stderr %q)", code, want, stderr)
	}
	if !strings.HasPrefix(stdout, "kernel "+r.Kernel+" ") {
		t.Errorf("output does not start with the kernel release %s:\n%s", r.Kernel, stdout)
	}
	rows := doctorRows(t, stdout)
	if got, wantCap := rows[memoryCapRow], map[bool]string{true: "yes", false: "no"}[capErr == nil]; got != wantCap {
		t.Errorf("row %s: %q, want %q (probe: %v)\n%s", memoryCapRow, got, wantCap, capErr, stdout)
	}
	for _, f := range r.Features {
		if got := rows[f.Name]; got != featureStatus(f) {
			t.Errorf("row %s: status %q, want %q\n%s", f.Name, got, featureStatus(f), stdout)
		}
		// Every gap comes with what aegis does about it.
		if !f.Available && !strings.Contains(stdout, f.Fallback) {
			t.Errorf("gap %s without its fallback %q:\n%s", f.Name, f.Fallback, stdout)
		}
	}
}

// TestDoctorForcedGapsKeepExitZero hides features that have fallbacks:
// doctor names the fallbacks and still succeeds.
func TestDoctorForcedGapsKeepExitZero(t *testing.T) {
	testutil.RequireRoot(t)
	if r, _ := kernelprobe.Probe(kernelprobe.Options{}); len(r.MissingRequired()) > 0 {
		t.Skipf("this kernel lacks required features %v; the exit status would not tell", r.MissingRequired())
	}
	code, stdout, stderr := cli("doctor", "--without", kernelprobe.XDPLink+","+kernelprobe.MemcgAccounting)
	if code != 0 {
		t.Fatalf("exit %d, want 0 (stderr %q)", code, stderr)
	}
	rows := doctorRows(t, stdout)
	for _, name := range []string{kernelprobe.XDPLink, kernelprobe.MemcgAccounting} {
		if rows[name] != "no" {
			t.Errorf("row %s: %q, want no", name, rows[name])
		}
	}
	for _, want := range []string{"netlink", "RLIMIT_MEMLOCK"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output does not mention the %s fallback:\n%s", want, stdout)
		}
	}
}

// TestDoctorMissingRequiredExitsOne needs no privilege: a hidden feature
// is missing whoever asks, and an unprobed one counts as missing too.
func TestDoctorMissingRequiredExitsOne(t *testing.T) {
	code, stdout, stderr := cli("doctor", "--without", kernelprobe.XDP)
	if code != 1 {
		t.Fatalf("exit %d, want 1 (stdout %q)", code, stdout)
	}
	if !strings.Contains(stderr, kernelprobe.XDP) {
		t.Errorf("stderr %q does not name the missing feature", stderr)
	}
	if !strings.Contains(stdout, kernelprobe.XDP+" (required, no fallback)") {
		t.Errorf("the table does not flag %s as required:\n%s", kernelprobe.XDP, stdout)
	}
}

func TestDoctorJSON(t *testing.T) {
	code, stdout, stderr := cli("doctor", "--json", "--without", kernelprobe.RingBuf)
	var r kernelprobe.Report
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("output is not a report: %v\n%s", err, stdout)
	}
	var mc struct {
		MemoryCap *memoryCap `json:"memory_cap"`
	}
	if err := json.Unmarshal([]byte(stdout), &mc); err != nil || mc.MemoryCap == nil || mc.MemoryCap.Detail == "" {
		t.Fatalf("no memory_cap in the report (%v):\n%s", err, stdout)
	}
	want := 0
	if len(r.MissingRequired()) > 0 || !mc.MemoryCap.Available {
		want = 1
	}
	if code != want {
		t.Errorf("exit %d, want %d (stderr %q)", code, want, stderr)
	}
	if len(r.Features) != len(kernelprobe.Names()) {
		t.Errorf("%d features in the JSON, want %d", len(r.Features), len(kernelprobe.Names()))
	}
	if f, ok := r.Feature(kernelprobe.RingBuf); !ok || f.Available || f.Fallback == "" {
		t.Errorf("ringbuf row %+v; want missing with its fallback", f)
	}
}

func TestDoctorUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"doctor", "--without", "no-such-feature"},
		{"doctor", "extra"},
	} {
		if code, _, stderr := cli(args...); code != 2 {
			t.Errorf("aegis %s: exit %d, want 2 (stderr %q)", strings.Join(args, " "), code, stderr)
		}
	}
}

// Where workers cannot get a memory cgroup, doctor says so in its row,
// names the setting that allows running without one, and exits 1: the
// node would refuse to start its workers.
func TestDoctorMemoryCapRow(t *testing.T) {
	testutil.RequireRoot(t)
	if r, _ := kernelprobe.Probe(kernelprobe.Options{}); len(r.MissingRequired()) > 0 {
		t.Skipf("this kernel lacks required features %v; the exit status would not tell", r.MissingRequired())
	}
	probe := probeWorkerCgroup
	t.Cleanup(func() { probeWorkerCgroup = probe })
	for _, tc := range []struct {
		name   string
		probe  func() (string, error)
		status string
		code   int
	}{
		{"works", probe, "yes", 0},
		{"unavailable", func() (string, error) {
			return "", fmt.Errorf("%w: cgroup v1: no memory controller mounted", sandbox.ErrNoMemoryCap)
		}, "no", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			probeWorkerCgroup = tc.probe
			code, stdout, stderr := cli("doctor")
			if code != tc.code {
				t.Fatalf("exit %d, want %d (stderr %q)", code, tc.code, stderr)
			}
			if got := doctorRows(t, stdout)[memoryCapRow]; got != tc.status {
				t.Errorf("row %s: %q, want %q\n%s", memoryCapRow, got, tc.status, stdout)
			}
			if tc.code != 0 && (!strings.Contains(stdout, "functions.allow_no_memory_cap") || !strings.Contains(stderr, memoryCapRow)) {
				t.Errorf("the refusal is not explained:\nstdout %s\nstderr %s", stdout, stderr)
			}
		})
	}
}
