//go:build linux

// Command vmexec is a `go test -exec` wrapper that runs each test binary
// inside a QEMU guest booted on another kernel:
//
//	CGO_ENABLED=0 go test -exec "vmexec -kernel /var/cache/aegis-kernels/6.1" ./internal/shield
//
// go test calls it as `vmexec [flags] BINARY ARGS...` in the package's
// directory; vmexec boots the kernel with the binary, streams the test's
// output and exits with the test's status, so a failure in the guest fails
// go test with the guest's output. vmexec must itself be built with
// CGO_ENABLED=0: it is also the guest's init (when it runs as PID 1).
//
// Exit status: the test binary's, or 3 when the guest could not run it
// (setup error, crash, timeout; the guest console goes to stderr).
//
// `vmexec -timescale` prints this host's time scale (see
// internal/testutil/timescale) and exits: scripts/kernels/test.sh scales
// the matrix's own timeouts by it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/aegis-edge/aegis/internal/testutil/timescale"
	"github.com/aegis-edge/aegis/internal/vmtest"
)

func main() {
	if os.Getpid() == 1 {
		vmtest.GuestMain()
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// statusHarness is the exit status when the guest could not run the test;
// it differs from go test binaries' 1 (failed) and 2 (panic, bad flags).
const statusHarness = 3

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vmexec", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := vmtest.Config{Stdout: stdout, Stderr: stderr}
	fs.StringVar(&cfg.Kernel, "kernel", os.Getenv("VMEXEC_KERNEL"), "kernel directory from scripts/kernels/fetch.sh (env VMEXEC_KERNEL)")
	// xfrm_user and nfnetlink: vishvananda/netlink opens sockets of those
	// families for every handle; veth: the traffic tests.
	modules := fs.String("modules", "veth,xfrm_user,nfnetlink", "comma-separated kernel modules to load in the guest")
	fs.StringVar(&cfg.Busybox, "busybox", "/bin/busybox", "static busybox for the guest's shell tools; empty for none")
	fs.DurationVar(&cfg.Timeout, "timeout", 15*time.Minute, "bound on one guest run, boot included")
	fs.IntVar(&cfg.CPUs, "smp", 2, "guest CPUs")
	fs.IntVar(&cfg.MemoryMB, "m", 1024, "guest memory in MiB")
	fs.StringVar(&cfg.QEMU, "qemu", "qemu-system-x86_64", "QEMU binary")
	boots := fs.Int("boots", 2, "guest boots to try while the guest dies before the test starts (a test that started is never run again)")
	printScale := fs.Bool("timescale", false, "print this host's time scale for tests and exit")
	var env, sysctls multiFlag
	fs.Var(&env, "env", "KEY=VALUE for the test's environment (repeatable)")
	fs.Var(&sysctls, "sysctl", "key=value kernel setting in the guest, e.g. kernel.perf_event_paranoid=2 (repeatable)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *printScale {
		fmt.Fprintf(stdout, "%.1f\n", timescale.Factor())
		fmt.Fprintln(stderr, "vmexec:", timescale.Describe())
		return 0
	}
	if cfg.Kernel == "" || fs.NArg() == 0 {
		fmt.Fprintln(stderr, "usage: vmexec -kernel DIR [flags] TEST-BINARY [ARGS...]")
		return 2
	}
	if *boots < 1 {
		fmt.Fprintf(stderr, "vmexec: -boots %d: want at least 1\n", *boots)
		return 2
	}
	if *modules != "" {
		cfg.Modules = strings.Split(*modules, ",")
	}
	// The tests' time scale, when the caller fixed it, holds in the guest too.
	for _, k := range []string{timescale.EnvFactor, timescale.EnvMin} {
		if v, ok := os.LookupEnv(k); ok && !slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, k+"=") }) {
			env = append(env, k+"="+v)
		}
	}
	cfg.Env, cfg.Sysctls = env, sysctls
	cfg.Binary, cfg.Args = fs.Arg(0), fs.Args()[1:]
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "vmexec: %v\n", err)
		return statusHarness
	}
	cfg.Init = self
	if cfg.Dir, err = os.Getwd(); err != nil {
		fmt.Fprintf(stderr, "vmexec: %v\n", err)
		return statusHarness
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	status, err := bootUntilStarted(ctx, *boots, stderr, func() (int, error) { return vmtest.Run(ctx, cfg) })
	if err != nil {
		fmt.Fprintf(stderr, "vmexec: %s: %v\n", cfg.Kernel, err)
		if errors.Is(err, vmtest.ErrNotStatic) {
			fmt.Fprintln(stderr, "vmexec: build vmexec and the tests with CGO_ENABLED=0")
		}
		return statusHarness
	}
	return status
}

// bootUntilStarted runs the guest up to boots times, again only while it
// ends before the test binary starts: under TCG on a loaded host a guest
// kernel can crash at boot (a 6.12 guest once did, in its clock code), a
// fault of the emulation that says nothing of the code under test. A test
// that started is never run twice, so a test's own crash still fails.
func bootUntilStarted(ctx context.Context, boots int, stderr io.Writer, run func() (int, error)) (int, error) {
	for boot := 1; ; boot++ {
		status, err := run()
		if !errors.Is(err, vmtest.ErrNotStarted) || boot >= boots || ctx.Err() != nil {
			return status, err
		}
		fmt.Fprintf(stderr, "vmexec: boot %d of %d: %v; booting again\n", boot, boots, err)
	}
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }
