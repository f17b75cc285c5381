package vmtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aegis-edge/aegis/internal/testutil/timescale"
)

// Config describes one guest run. Kernel, Init and Binary are required.
type Config struct {
	// Kernel is a directory laid out by scripts/kernels/fetch.sh: vmlinuz
	// and lib/modules/<release>/ with modules.dep.
	Kernel string
	// Init is a statically linked binary whose main calls GuestMain when
	// it runs as PID 1 (cmd/vmexec is one).
	Init string
	// Busybox is a static busybox whose applets BusyboxApplets are linked
	// into /bin; empty for none.
	Busybox string
	// Modules are kernel modules to load before the test, by name (veth);
	// their dependencies are loaded first, built-in ones are skipped.
	Modules []string
	// Binary is the statically linked test binary and Args its arguments.
	Binary string
	Args   []string
	// Dir is the test's working directory (go test runs a test binary in
	// its package's directory, where testdata lives). Empty for /.
	Dir string
	// Tree is copied into the guest at the same path; it must hold Dir.
	// Empty for the Go module around Dir (tests may read files of sibling
	// packages, such as a committed eBPF object), or Dir itself outside a
	// module.
	Tree string
	// Env is the test's environment; CI=true is added unless it is set.
	Env []string
	// Sysctls are key=value kernel settings applied before the test, to
	// reproduce a host's tuning; none by default, so the guest keeps the
	// distribution's defaults.
	Sysctls []string
	// CPUs and MemoryMB size the guest (default 2 and 1024).
	CPUs, MemoryMB int
	// Timeout bounds the whole guest run, boot included (default 10m).
	Timeout time.Duration
	// QEMU is the emulator binary (default qemu-system-x86_64).
	QEMU string
	// Stdout receives the test's output, Stderr the harness's messages and,
	// when the guest ends without a status, its kernel console.
	Stdout, Stderr io.Writer
}

// BusyboxApplets are the shell tools linked into the guest's /bin. ip is
// left out on purpose: busybox's ip lacks netns support, and tests look it
// up with exec.LookPath to decide whether to use iproute2.
var BusyboxApplets = []string{
	"awk", "cat", "chmod", "cp", "cut", "dmesg", "echo", "env", "false",
	"find", "grep", "head", "id", "kill", "ln", "ls", "mkdir", "mount",
	"mv", "nsenter", "ps", "readlink", "rm", "sed", "sh", "sleep", "sort",
	"stat", "sysctl", "tail", "test", "tr", "true", "umount", "uname",
	"unshare", "wc", "xargs",
}

// maxMirror bounds the package directory copied into the guest.
const maxMirror = 256 << 20

// Errors of a guest run that are not the test's own failures.
var (
	// ErrNoStatus means the guest ended without reporting the test's exit
	// status: it crashed, hung or could not boot.
	ErrNoStatus = errors.New("guest ended without reporting a status")
	// ErrNotStarted comes with ErrNoStatus when the guest ended before it
	// started the test binary (a crash at boot, as a 6.12 guest under TCG
	// once had): the test did not run, so booting again is safe.
	ErrNotStarted = errors.New("the test binary never started")
	// ErrNotStatic means a binary meant for the guest is dynamically
	// linked; build it with CGO_ENABLED=0.
	ErrNotStatic = errors.New("binary is not statically linked (build with CGO_ENABLED=0)")
)

// Run boots the kernel with the test binary and returns the test's exit
// status. An error means the guest could not report one (ErrNoStatus, with
// the console copied to Stderr, and ErrNotStarted too if it ended before
// the test binary started) or the run could not start.
func Run(ctx context.Context, cfg Config) (int, error) {
	cfg.defaults()
	vmlinuz := filepath.Join(cfg.Kernel, "vmlinuz")
	if _, err := os.Stat(vmlinuz); err != nil {
		return 0, fmt.Errorf("kernel: %w (fetch kernels with scripts/kernels/fetch.sh)", err)
	}
	tmp, err := os.MkdirTemp("", "vmtest-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(tmp)

	token := randomToken()
	initrd := filepath.Join(tmp, "initrd.cpio")
	if err := cfg.writeInitramfs(initrd, token); err != nil {
		return 0, fmt.Errorf("building initramfs: %w", err)
	}
	console := filepath.Join(tmp, "console.log")

	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, cfg.QEMU, cfg.qemuArgs(vmlinuz, initrd, console)...)
	cmd.Stdin = nil
	cmd.Stderr = cfg.Stderr
	// QEMU must not outlive the wrapper, whatever kills it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("starting %s: %w", cfg.QEMU, err)
	}
	got, copyErr := copyUntilMarker(cfg.Stdout, stdout, token)
	waitErr := cmd.Wait()
	switch {
	case got.found:
		return got.status, nil
	case ctx.Err() != nil:
		err = fmt.Errorf("%w: no status within %v", ErrNoStatus, cfg.Timeout)
	case waitErr != nil:
		err = fmt.Errorf("%w: qemu: %v", ErrNoStatus, waitErr)
	case copyErr != nil:
		err = fmt.Errorf("%w: reading guest output: %v", ErrNoStatus, copyErr)
	default:
		err = ErrNoStatus
	}
	if !got.started {
		err = fmt.Errorf("%w (%w)", err, ErrNotStarted)
	}
	if log, rerr := os.ReadFile(console); rerr == nil {
		fmt.Fprintf(cfg.Stderr, "--- guest console (%s) ---\n%s--- end of guest console ---\n", cfg.Kernel, log)
	}
	return 0, err
}

func (cfg *Config) defaults() {
	if cfg.CPUs == 0 {
		cfg.CPUs = 2
	}
	if cfg.MemoryMB == 0 {
		cfg.MemoryMB = 1024
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Minute
	}
	if cfg.QEMU == "" {
		cfg.QEMU = "qemu-system-x86_64"
	}
	if cfg.Dir == "" {
		cfg.Dir = "/"
	}
	if cfg.Tree == "" {
		cfg.Tree = moduleRoot(cfg.Dir)
	}
	if cfg.Stdout == nil {
		cfg.Stdout = io.Discard
	}
	if cfg.Stderr == nil {
		cfg.Stderr = io.Discard
	}
}

// qemuArgs boots with TCG: KVM is unusable on the CI machine (emulation
// errors, then hangs). The first serial port is the kernel console, kept
// in a file for diagnostics; the second carries the test's output to
// QEMU's stdout.
func (cfg *Config) qemuArgs(vmlinuz, initrd, console string) []string {
	return []string{
		"-accel", "tcg,thread=multi", "-cpu", "max",
		"-smp", strconv.Itoa(cfg.CPUs), "-m", strconv.Itoa(cfg.MemoryMB),
		"-nodefaults", "-display", "none", "-monitor", "none", "-no-reboot",
		"-kernel", vmlinuz, "-initrd", initrd,
		// no_timer_check: under TCG on a loaded host the kernel's check of
		// the IO-APIC timer can fail and panic the boot (seen on 6.1).
		// cryptomgr.notests: the crypto self-tests at boot can stall a
		// vCPU for good under TCG on a loaded host (a 6.1 guest sat in
		// cryptomgr_test, soft-locked, until the package's timeout).
		"-append", "console=ttyS0 quiet panic=-1 rdinit=/init random.trust_cpu=on no_timer_check cryptomgr.notests",
		"-chardev", "file,id=console,path=" + console,
		"-chardev", "stdio,id=result,signal=off",
		"-serial", "chardev:console", "-serial", "chardev:result",
	}
}

// guestEnd is what the guest's output said of the test: whether it
// started, and its status if it ended.
type guestEnd struct {
	started, found bool
	status         int
}

// copyUntilMarker copies the guest's output to w, line by line, until the
// marker line carrying token; it reports whether the start line came and
// the status in the marker. Neither line is copied.
func copyUntilMarker(w io.Writer, r io.Reader, token string) (end guestEnd, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, rerr := br.ReadString('\n')
		bare := strings.TrimRight(line, "\r\n")
		if s, ok := parseMarker(bare, token); ok {
			end.status, end.found = s, true
			// Drain the rest (normally nothing) so QEMU never blocks.
			_, rerr = io.Copy(io.Discard, br)
			return end, rerr
		}
		if bare == startLine(token) && !end.started {
			end.started = true
		} else if _, werr := io.WriteString(w, line); werr != nil && err == nil {
			err = werr
		}
		if rerr == io.EOF {
			return end, err
		}
		if rerr != nil {
			return end, rerr
		}
	}
}

func randomToken() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// writeInitramfs packs everything the guest needs into an uncompressed
// cpio archive (decompressing under TCG would cost boot time).
func (cfg *Config) writeInitramfs(file, token string) error {
	for _, b := range []string{cfg.Init, cfg.Binary, cfg.Busybox} {
		if b == "" {
			continue
		}
		if err := checkStatic(b); err != nil {
			return err
		}
	}
	modules, err := cfg.moduleFiles()
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	c := newCPIOWriter(&buf)
	if err := c.CopyFile("init", cfg.Init); err != nil {
		return err
	}
	if cfg.Busybox != "" {
		if err := c.CopyFile("bin/busybox", cfg.Busybox); err != nil {
			return err
		}
		for _, a := range BusyboxApplets {
			if err := c.Symlink("bin/"+a, "busybox"); err != nil {
				return err
			}
		}
	}
	for _, m := range modules {
		if err := c.CopyFile(string(m), m.host(cfg.Kernel)); err != nil {
			return err
		}
	}
	if err := c.CopyFile(cfg.Binary, cfg.Binary); err != nil {
		return err
	}
	if rel, err := filepath.Rel(cfg.Tree, cfg.Dir); err != nil || strings.HasPrefix(rel, "..") {
		return fmt.Errorf("working directory %s is outside the copied tree %s", cfg.Dir, cfg.Tree)
	}
	if err := mirrorDir(c, cfg.Tree, cfg.Binary); err != nil {
		return err
	}
	p := plan{
		Binary: cfg.Binary, Args: cfg.Args, Dir: cfg.Dir,
		Env: guestEnv(cfg.Env), Modules: guestPaths(modules), Sysctls: cfg.Sysctls, Token: token,
	}
	data, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if err := c.File(planPath, 0o644, data); err != nil {
		return err
	}
	if err := c.Close(); err != nil {
		return err
	}
	return os.WriteFile(file, buf.Bytes(), 0o600)
}

// EmulatedTimeScale is the floor the guest's tests put under their time
// scale (see internal/testutil/timescale): TCG runs the tests' code at
// least this many times slower than the host, whatever a calibration in
// the guest happens to measure.
const EmulatedTimeScale = 10

// guestEnv completes the test's environment: CI=true so privileged tests
// fail rather than skip, a PATH and HOME that exist in the guest, and the
// floor of the tests' time scale under emulation.
func guestEnv(env []string) []string {
	out := append([]string(nil), env...)
	have := map[string]bool{}
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		have[k] = true
	}
	for _, kv := range []string{"CI=true", "PATH=/bin", "HOME=/root", "TMPDIR=/tmp",
		timescale.EnvMin + "=" + strconv.Itoa(EmulatedTimeScale)} {
		if k, _, _ := strings.Cut(kv, "="); !have[k] {
			out = append(out, kv)
		}
	}
	return out
}

// moduleFile is a module's path inside the guest (/lib/modules/...).
type moduleFile string

func (m moduleFile) host(kernel string) string { return filepath.Join(kernel, string(m)) }

func guestPaths(ms []moduleFile) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = "/" + string(m)
	}
	return out
}

// moduleFiles resolves cfg.Modules to files in load order.
func (cfg *Config) moduleFiles() ([]moduleFile, error) {
	if len(cfg.Modules) == 0 {
		return nil, nil
	}
	releases, err := os.ReadDir(filepath.Join(cfg.Kernel, "lib/modules"))
	if err != nil {
		return nil, fmt.Errorf("kernel modules: %w", err)
	}
	if len(releases) != 1 {
		return nil, fmt.Errorf("kernel modules: want one release under %s/lib/modules, found %d", cfg.Kernel, len(releases))
	}
	base := path.Join("lib/modules", releases[0].Name())
	var builtin map[string]bool
	if f, err := os.Open(filepath.Join(cfg.Kernel, base, "modules.builtin")); err == nil {
		builtin, err = parseBuiltin(f)
		f.Close()
		if err != nil {
			return nil, err
		}
	}
	f, err := os.Open(filepath.Join(cfg.Kernel, base, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("kernel modules: %w (scripts/kernels/fetch.sh runs depmod)", err)
	}
	defer f.Close()
	deps, err := parseModulesDep(f)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, n := range cfg.Modules {
		if !builtin[moduleName(n)] {
			names = append(names, n)
		}
	}
	order, err := deps.loadOrder(names)
	if err != nil {
		return nil, err
	}
	out := make([]moduleFile, len(order))
	for i, o := range order {
		out[i] = moduleFile(path.Join(base, o))
	}
	return out, nil
}

// checkStatic refuses a dynamically linked binary: the guest has no
// dynamic loader or libc.
func checkStatic(file string) error {
	f, err := elf.Open(file)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s: %w", file, ErrNotStatic)
		}
	}
	return nil
}

// moduleRoot returns the nearest directory at or above dir holding go.mod,
// or dir when there is none.
func moduleRoot(dir string) string {
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if d == filepath.Dir(d) {
			return dir
		}
	}
}

// mirrorDir copies the tree at dir into the archive at the same path,
// leaving out skip (already added) and version-control directories.
func mirrorDir(c *cpioWriter, dir, skip string) error {
	if dir == "/" {
		return nil
	}
	total := 0
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == skip {
			return nil
		}
		if d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		switch {
		case d.IsDir():
			return c.Dir(p, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return c.Symlink(p, target)
		case d.Type().IsRegular():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			if total += int(fi.Size()); total > maxMirror {
				return fmt.Errorf("%s holds more than %d MiB; too much to copy into the guest", dir, maxMirror>>20)
			}
			return c.CopyFile(p, p)
		}
		return nil // devices, sockets, fifos: not test data
	})
}
