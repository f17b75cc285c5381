// Package vmtest runs a Go test binary inside a QEMU guest booted on a
// chosen kernel, so that the privileged suites (eBPF, namespaces, seccomp)
// run against kernels other than the machine's own. It is the engine of
// cmd/vmexec, the `go test -exec` wrapper that `make test-kernels` uses.
//
// The host side (Run) packs an initramfs holding a static init (the vmexec
// binary itself), the statically linked test binary at its host path, a
// mirror of the package directory (for testdata), the kernel modules the
// tests need with their dependencies, and busybox for the few shell tools
// tests may run. QEMU boots it with TCG, the guest's kernel console goes to
// a log, and the test's output comes back over a second serial port,
// followed by a marker line that carries the exit status.
//
// The guest side (GuestMain) is PID 1: it mounts proc, sysfs, devtmpfs,
// bpffs, cgroup2 and tmpfs, loads the modules, brings loopback up, runs the
// test binary with CI=true (so privileged tests cannot skip), reports the
// status and powers the machine off.
//
// It is not a general VM manager: no disk, no network device, no shared
// filesystem; one guest runs one test binary and is thrown away. It is
// for tests only and never part of the aegis binary.
package vmtest
