package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/aegis-edge/aegis/internal/executor"
	"github.com/aegis-edge/aegis/internal/sandbox"
	"github.com/aegis-edge/aegis/internal/seccomp"
	"github.com/spf13/cobra"
)

func newSandboxCmd(e *env) *cobra.Command {
	cmd := groupCmd("sandbox", "Inspect and test the worker sandbox")
	policy := &cobra.Command{
		Use:   "policy",
		Short: "Print the workers' seccomp allowlist",
		Args:  args(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			return seccomp.FormatPolicy(e.stdout, seccomp.Policy())
		},
	}
	selftest := &cobra.Command{
		Use:   "selftest",
		Short: "Start a worker, try every escape and sweep every syscall from inside it (root)",
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runSelftest(cmd.Context(), e)
		},
	}
	cmd.AddCommand(policy, selftest)
	return cmd
}

// newSandboxWorkerCmd is the hidden command the supervisor starts workers
// with (sandbox.WorkerSubcommand); it never returns.
func newSandboxWorkerCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "sandbox-worker",
		Hidden: true,
		Args:   cobra.ArbitraryArgs,
		Run:    func(*cobra.Command, []string) { sandbox.WorkerMain(executor.WorkerHandlers()) },
	}
}

func runSelftest(ctx context.Context, e *env) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	p, err := sandbox.NewPool(ctx, sandbox.Config{Size: 1, Handler: sandbox.HandlerSelftest})
	if err != nil {
		return fmt.Errorf("starting a worker: %w", err)
	}
	defer p.Close()
	rep := p.Reports()[0]
	fmt.Fprintf(e.stdout, "worker pid %d (%s), set up in %s\n", rep.PID, rep.Arch, rep.SetupTime.Round(time.Microsecond))
	for _, l := range [][2]string{
		{"identity", fmt.Sprintf("uid %d gid %d, no capabilities", rep.UID, rep.GID)},
		{"root", rep.Root}, {"rlimits", rep.Rlimits}, {"cgroup", rep.Cgroup},
		{"landlock", rep.Landlock.String()}, {"ssbd", rep.SSBD},
		{"seccomp", rep.Seccomp}, {"violations", rep.Violations},
	} {
		fmt.Fprintf(e.stdout, "  %-10s %s\n", l[0], l[1])
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	res, err := sandbox.RunSelftest(ctx, p, os.Getpid(), ln.Addr().(*net.TCPAddr).Port)
	if err != nil {
		return err
	}
	failed := 0
	for _, a := range res.Attempts {
		fmt.Fprintln(e.stdout, a)
		if !a.Refused() {
			failed++
		}
	}
	s := res.Sweep
	fmt.Fprintf(e.stdout, "sweep: %d syscall numbers denied with EPERM (0..%d, x86-64 x32 range included; table ends at %d), clone3 %s\n",
		s.Denied, s.Max, s.ArchMax, s.Clone3)
	for _, sk := range s.Skipped {
		fmt.Fprintf(e.stdout, "sweep: skipped %s\n", sk)
	}
	for _, f := range s.Failures {
		fmt.Fprintf(e.stdout, "sweep: NOT DENIED %s\n", f)
	}
	st := p.Stats()
	fmt.Fprintf(e.stdout, "supervisor: %d violations counted for the self-test\n", st.Violations[sandbox.SelftestFunction])
	if failed > 0 || len(s.Failures) > 0 || s.Clone3 != "ENOSYS" {
		return fmt.Errorf("sandbox self-test failed: %d attempts not refused, %d syscalls not denied", failed, len(s.Failures))
	}
	fmt.Fprintln(e.stdout, "sandbox self-test passed")
	return nil
}
