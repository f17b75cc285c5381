//go:build linux

package main

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/aegis-edge/aegis/internal/sandbox"
	"github.com/aegis-edge/aegis/internal/seccomp"
	"github.com/aegis-edge/aegis/internal/testutil"
)

// The test binary is the aegis binary of sandbox workers too: the pool
// re-executes /proc/self/exe as `aegis sandbox-worker` with an empty
// environment (so AEGIS_TEST_MAIN cannot be used), and this init, which
// runs before TestMain, turns such a process into the command.
func init() {
	if len(os.Args) > 1 && os.Args[1] == sandbox.WorkerSubcommand && os.Getenv("AEGIS_TEST_MAIN") == "" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
	}
}

func TestSandboxPolicyPrintsThePolicy(t *testing.T) {
	code, out, stderr := cli("sandbox", "policy")
	var want bytes.Buffer
	seccomp.FormatPolicy(&want, seccomp.Policy())
	if code != 0 || out != want.String() {
		t.Fatalf("exit %d, stderr %q, output:\n%s", code, stderr, out)
	}
	for _, args := range [][]string{{"sandbox"}, {"sandbox", "policy", "extra"}, {"sandbox", "selftest", "extra"}} {
		if code, _, _ := cli(args...); code != 2 {
			t.Errorf("aegis %s: exit %d, want 2", strings.Join(args, " "), code)
		}
	}
}

// The self-test runs as a separate aegis process, as an operator would run
// it, and its workers are that process re-executed.
func TestSandboxSelftest(t *testing.T) {
	testutil.RequireRoot(t)
	cmd := exec.Command("/proc/self/exe", "sandbox", "selftest")
	cmd.Env = []string{"AEGIS_TEST_MAIN=1"}
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("selftest: %v", err)
	}
	for _, want := range []string{"sandbox self-test passed", "refused    execve /bin/sh", "refused    socket AF_VSOCK",
		"refused    ioctl TIOCSTI with high bits set", "sweep: ", "clone3 ENOSYS", "landlock   ABI"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("output lacks %q", want)
		}
	}
	if bytes.Contains(out, []byte("ESCAPED")) || bytes.Contains(out, []byte("NOT DENIED")) {
		t.Errorf("the self-test reports an escape")
	}
}

func TestSandboxWorkerRefusesWithoutSupervisor(t *testing.T) {
	// Started by hand, without the IPC socket, a worker exits at once.
	cmd := exec.Command("/proc/self/exe", "sandbox-worker")
	cmd.Env = []string{"AEGIS_TEST_MAIN=1"}
	if err := cmd.Run(); err == nil {
		t.Fatal("a worker without a supervisor ran successfully")
	}
}
