package vmtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// guestMounts are the file systems the privileged tests expect, in mount
// order.
var guestMounts = []struct{ source, target, fstype string }{
	{"devtmpfs", "/dev", "devtmpfs"},
	{"proc", "/proc", "proc"},
	{"sysfs", "/sys", "sysfs"},
	{"bpffs", "/sys/fs/bpf", "bpf"},
	{"cgroup2", "/sys/fs/cgroup", "cgroup2"},
}

// guestDirs are created in the root file system (the unpacked initramfs,
// itself a writable tmpfs) rather than mounted, so that the test binary and
// package directory the host put under /tmp stay visible.
var guestDirs = []string{"/tmp", "/run", "/root"}

// GuestMain is the guest's init: it prepares the machine, runs the test
// binary the plan names, writes its output and then the status marker to
// the second serial port, and powers off. It never returns. It must run as
// PID 1 of a guest booted by Run.
func GuestMain() {
	out, token, status := guestRun()
	if out != nil {
		fmt.Fprintln(out, marker(token, status))
		out.Sync()
	}
	unix.Sync()
	// Power off; with QEMU's -no-reboot a failed power-off that reboots
	// ends the guest as well.
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	select {}
}

// guestRun does GuestMain's work and returns where the marker goes, the
// token and the status. Failures before the test runs go to the console
// and to the result port when it is open, with statusSetupFailed.
func guestRun() (out *os.File, token string, status int) {
	fail := func(err error) (*os.File, string, int) {
		msg := fmt.Sprintf("vmtest guest: %v\n", err)
		os.Stderr.WriteString(msg) // the kernel console
		if out != nil {
			out.WriteString(msg)
		}
		return out, token, statusSetupFailed
	}
	if err := leaveRootfs(); err != nil {
		return fail(fmt.Errorf("moving off the initramfs root: %w", err))
	}
	for _, m := range guestMounts {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			return fail(err)
		}
		if err := unix.Mount(m.source, m.target, m.fstype, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return fail(fmt.Errorf("mounting %s on %s: %w", m.fstype, m.target, err))
		}
	}
	for _, d := range guestDirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fail(err)
		}
	}
	if err := os.Chmod("/tmp", 0o1777); err != nil {
		return fail(err)
	}
	out, err := openResultPort(resultPort)
	if err != nil {
		return fail(err)
	}
	data, err := os.ReadFile(planPath)
	if err != nil {
		return fail(err)
	}
	var p plan
	if err := json.Unmarshal(data, &p); err != nil {
		return fail(fmt.Errorf("reading %s: %w", planPath, err))
	}
	token = p.Token
	for _, m := range p.Modules {
		if err := loadModule(m); err != nil {
			return fail(err)
		}
	}
	for _, kv := range p.Sysctls {
		if err := setSysctl(kv); err != nil {
			return fail(err)
		}
	}
	if err := loopbackUp(); err != nil {
		return fail(err)
	}
	return out, token, runTest(p, out)
}

// openResultPort opens the serial port in raw output mode, so the host
// reads the bytes the test wrote (no "\n" to "\r\n" translation).
func openResultPort(dev string) (*os.File, error) {
	f, err := os.OpenFile(dev, os.O_WRONLY|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", dev, err)
	}
	t, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("reading %s settings: %w", dev, err)
	}
	t.Oflag &^= unix.OPOST
	if err := unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, t); err != nil {
		f.Close()
		return nil, fmt.Errorf("setting %s raw: %w", dev, err)
	}
	return f, nil
}

// loadModule loads one module file with finit_module; compressed modules
// are left to the kernel to decompress (CONFIG_MODULE_DECOMPRESS).
func loadModule(file string) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("loading module: %w", err)
	}
	defer f.Close()
	flags := 0
	if ext := filepath.Ext(file); ext != ".ko" {
		flags = unix.MODULE_INIT_COMPRESSED_FILE
	}
	if err := unix.FinitModule(int(f.Fd()), "", flags); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("loading module %s: %w", file, err)
	}
	return nil
}

// setSysctl applies "kernel.perf_event_paranoid=2" through /proc/sys.
func setSysctl(kv string) error {
	key, value, ok := strings.Cut(kv, "=")
	if !ok || key == "" {
		return fmt.Errorf("sysctl %q: want key=value", kv)
	}
	file := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	if err := os.WriteFile(file, []byte(value), 0); err != nil {
		return fmt.Errorf("sysctl %s: %w", key, err)
	}
	return nil
}

func loopbackUp() error {
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(lo)
	}
	if err != nil {
		return fmt.Errorf("bringing lo up: %w", err)
	}
	return nil
}

// runTest runs the test binary with its output on out and returns the
// status to report.
func runTest(p plan, out *os.File) int {
	cmd := exec.Command(p.Binary, p.Args...)
	cmd.Dir, cmd.Env = p.Dir, p.Env
	// Through a pipe, so the guest knows whether the output ended with a
	// newline and the marker starts on a line of its own.
	lw := &lastByteWriter{w: out}
	cmd.Stdout, cmd.Stderr = lw, lw
	// A test that leaves a child holding the output open must not hang the
	// guest once the test itself has exited.
	cmd.WaitDelay = 10 * time.Second
	// Before the test writes anything, so the line stands alone: a guest
	// that dies after it may have died in the test and is not retried.
	fmt.Fprintln(out, startLine(p.Token))
	err := cmd.Run()
	if lw.last != '\n' && lw.n > 0 {
		out.WriteString("\n")
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			fmt.Fprintf(out, "vmtest guest: test binary killed by %v\n", ws.Signal())
			return statusSignaled
		}
		return ee.ExitCode()
	default:
		fmt.Fprintf(out, "vmtest guest: running %s: %v\n", p.Binary, err)
		return statusSetupFailed
	}
}

type lastByteWriter struct {
	w    io.Writer
	n    int
	last byte
}

func (l *lastByteWriter) Write(b []byte) (int, error) {
	n, err := l.w.Write(b)
	if n > 0 {
		l.n += n
		l.last = b[n-1]
	}
	return n, err
}

// leaveRootfs copies the initramfs into a tmpfs and makes that the root, as
// a distribution's initramfs does before starting init: pivot_root(2) (which
// the sandbox's workers use) refuses to move the initial rootfs, so a guest
// left on it could not test them.
func leaveRootfs() error {
	const newRoot = "/.root"
	if err := os.MkdirAll(newRoot, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", newRoot, "tmpfs", 0, "mode=0755"); err != nil {
		return err
	}
	skip := map[string]bool{newRoot: true, "/proc": true, "/sys": true, "/dev": true}
	err := filepath.WalkDir("/", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if skip[path] {
			return filepath.SkipDir
		}
		dst := filepath.Join(newRoot, path)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(dst, info.Mode().Perm())
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(target, dst)
		case d.Type().IsRegular():
			return copyFile(path, dst, info.Mode().Perm())
		}
		return nil // devices and sockets are not part of the image
	})
	if err != nil {
		return err
	}
	if err := os.Chdir(newRoot); err != nil {
		return err
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return err
	}
	if err := unix.Chroot("."); err != nil {
		return err
	}
	return os.Chdir("/")
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
