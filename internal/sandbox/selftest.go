//go:build linux

package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"unsafe"

	"github.com/aegis-edge/aegis/internal/seccomp"
	"golang.org/x/sys/unix"
)

// Attempt is one escape the self-test tried from inside a worker.
type Attempt struct {
	Name string `json:"name"`
	// Errno is the error the worker got ("" if the call succeeded: an escape).
	Errno string `json:"errno"`
	// Want lists the errors that mean the intended layer refused it.
	Want []string `json:"want"`
}

// Refused reports whether the attempt failed with one of the wanted errors.
func (a Attempt) Refused() bool {
	for _, w := range a.Want {
		if a.Errno == w {
			return true
		}
	}
	return false
}

func (a Attempt) String() string {
	verdict := "refused"
	switch {
	case a.Errno == "":
		verdict = "ESCAPED"
	case !a.Refused():
		verdict = "UNEXPECTED"
	}
	errno := a.Errno
	if errno == "" {
		errno = "succeeded"
	}
	return fmt.Sprintf("%-10s %-44s %s (want %v)", verdict, a.Name, errno, a.Want)
}

func encodeAttempts(a []Attempt) []byte        { b, _ := json.Marshal(a); return b }
func encodeSweep(s seccomp.SweepResult) []byte { b, _ := json.Marshal(s); return b }

// atFDCWD is AT_FDCWD (-100) as a raw syscall argument.
const atFDCWD = ^uintptr(99)

func cstr(s string) uintptr { return uintptr(unsafe.Pointer(&append([]byte(s), 0)[0])) }

// escapeAttempts tries what a payload that escaped Wasm would try. It runs
// inside a worker; supervisor is the supervisor's pid as the host sees it
// and port a TCP listener on the host's loopback.
func escapeAttempts(supervisor, port int) []Attempt {
	eperm := []string{"EPERM"}
	var out []Attempt
	try := func(name string, want []string, nr uintptr, args ...uintptr) {
		var a [6]uintptr
		copy(a[:], args)
		_, _, e := unix.RawSyscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5])
		out = append(out, Attempt{Name: name, Errno: seccomp.ErrnoName(e), Want: want})
	}
	sys := func(name string) uintptr { nr, _ := seccomp.Number(name); return nr }

	argv := []uintptr{cstr("/bin/sh"), 0}
	try("execve /bin/sh", eperm, unix.SYS_EXECVE, cstr("/bin/sh"), uintptr(unsafe.Pointer(&argv[0])), 0)
	if nr, ok := seccomp.Number("fork"); ok {
		try("fork", eperm, nr)
	}
	if nr, ok := seccomp.Number("vfork"); ok {
		try("vfork", eperm, nr)
	}
	try("clone as fork (SIGCHLD)", eperm, unix.SYS_CLONE, uintptr(unix.SIGCHLD))
	try("clone with CLONE_VFORK|CLONE_VM", eperm, unix.SYS_CLONE, unix.CLONE_VFORK|unix.CLONE_VM|uintptr(unix.SIGCHLD))
	try("clone with namespace flags", eperm, unix.SYS_CLONE,
		unix.CLONE_NEWUSER|unix.CLONE_NEWNS|unix.CLONE_NEWPID|unix.CLONE_NEWNET|uintptr(unix.SIGCHLD))
	try("clone thread into a new mount namespace", eperm, unix.SYS_CLONE, seccomp.GoThreadFlags|unix.CLONE_NEWNS)
	try("clone3", []string{"ENOSYS"}, sys("clone3"))
	for _, s := range []struct {
		name        string
		domain, typ uintptr
		protocol    uintptr
	}{
		{"AF_INET", unix.AF_INET, unix.SOCK_STREAM, 0},
		{"AF_INET6", unix.AF_INET6, unix.SOCK_DGRAM, 0},
		{"AF_UNIX", unix.AF_UNIX, unix.SOCK_STREAM, 0},
		{"AF_NETLINK", unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE},
		{"AF_PACKET", unix.AF_PACKET, unix.SOCK_RAW, 0x0300},
		{"AF_ALG", unix.AF_ALG, unix.SOCK_SEQPACKET, 0},
		{"AF_VSOCK", unix.AF_VSOCK, unix.SOCK_STREAM, 0},
	} {
		try("socket "+s.name, eperm, unix.SYS_SOCKET, s.domain, s.typ, s.protocol)
	}
	sa := unix.RawSockaddrInet4{Family: unix.AF_INET, Port: uint16(port>>8 | port<<8&0xff00), Addr: [4]byte{127, 0, 0, 1}}
	try(fmt.Sprintf("connect to 127.0.0.1:%d on the host", port), eperm,
		unix.SYS_CONNECT, ipcFD, uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
	notThere := []string{"ENOENT", "EACCES", "EPERM"}
	try("open /etc/passwd", notThere, unix.SYS_OPENAT, atFDCWD, cstr("/etc/passwd"), unix.O_RDONLY)
	try("open /proc/1/environ", notThere, unix.SYS_OPENAT, atFDCWD, cstr("/proc/1/environ"), unix.O_RDONLY)
	try("open / (Landlock)", []string{"EACCES"}, unix.SYS_OPENAT, atFDCWD, cstr("/"), unix.O_RDONLY|unix.O_DIRECTORY)
	try("ptrace attach to the supervisor", eperm, unix.SYS_PTRACE, unix.PTRACE_ATTACH, uintptr(supervisor))
	try("kill the supervisor", eperm, unix.SYS_KILL, uintptr(supervisor), uintptr(unix.SIGKILL))
	if supervisor != seccomp.WorkerPID {
		try("tgkill the supervisor", eperm, sys("tgkill"), uintptr(supervisor), uintptr(supervisor), uintptr(unix.SIGKILL))
	}
	try("mount tmpfs", eperm, unix.SYS_MOUNT, cstr("none"), cstr("/"), cstr("tmpfs"), 0, 0)
	try("umount2 /", eperm, unix.SYS_UMOUNT2, cstr("/"), unix.MNT_DETACH)
	try("chroot /", eperm, unix.SYS_CHROOT, cstr("/"))
	try("pivot_root", eperm, unix.SYS_PIVOT_ROOT, cstr("."), cstr("."))
	try("unshare user namespace", eperm, unix.SYS_UNSHARE, unix.CLONE_NEWUSER)
	try("setns", eperm, unix.SYS_SETNS, ipcFD, 0)
	try("setuid(0)", eperm, unix.SYS_SETUID, 0)
	try("setgid(0)", eperm, unix.SYS_SETGID, 0)
	var params [120]byte
	try("io_uring_setup", eperm, unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&params[0])))
	try("bpf", eperm, unix.SYS_BPF, unix.BPF_PROG_LOAD, 0, 0)
	try("perf_event_open", eperm, unix.SYS_PERF_EVENT_OPEN, 0, 0, ^uintptr(0), ^uintptr(0), 0)
	try("userfaultfd", eperm, unix.SYS_USERFAULTFD, 0)
	try("keyctl", eperm, unix.SYS_KEYCTL, unix.KEYCTL_GET_KEYRING_ID, ^uintptr(2), 0)
	var buf [8]byte
	iov := unix.Iovec{Base: &buf[0], Len: 8}
	try("process_vm_readv of the supervisor", eperm, unix.SYS_PROCESS_VM_READV, uintptr(supervisor),
		uintptr(unsafe.Pointer(&iov)), 1, uintptr(unsafe.Pointer(&iov)), 1, 0)
	c := byte('x')
	try("ioctl TIOCSTI", eperm, unix.SYS_IOCTL, ipcFD, unix.TIOCSTI, uintptr(unsafe.Pointer(&c)))
	try("ioctl TIOCSTI with high bits set", eperm, unix.SYS_IOCTL, ipcFD, 1<<32|unix.TIOCSTI, uintptr(unsafe.Pointer(&c)))
	try("personality ADDR_NO_RANDOMIZE", eperm, unix.SYS_PERSONALITY, 0x0040000)
	// Code may become executable only once it is no longer writable
	// (wazero's W^X sealing): writable and executable together is refused.
	try("mprotect a stack page writable and executable", eperm, unix.SYS_MPROTECT, uintptr(unsafe.Pointer(&buf[0]))&^0xfff, 4096, unix.PROT_READ|unix.PROT_WRITE|unix.PROT_EXEC)
	try("mmap executable memory", eperm, unix.SYS_MMAP, 0, 4096, unix.PROT_READ|unix.PROT_EXEC, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uintptr(0), 0)
	try("mmap writable and executable memory", eperm, unix.SYS_MMAP, 0, 4096, unix.PROT_READ|unix.PROT_WRITE|unix.PROT_EXEC, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uintptr(0), 0)
	try("prctl PR_SET_DUMPABLE 1", eperm, unix.SYS_PRCTL, unix.PR_SET_DUMPABLE, 1)
	if seccomp.X32Bit != 0 {
		try("x32 getpid", eperm, seccomp.X32Bit|sys("getpid"))
	}
	return out
}

// SelftestFunction is the function name self-test requests run under, so
// their violations are attributed to it.
const SelftestFunction = "selftest"

// SelftestResult is what RunSelftest found.
type SelftestResult struct {
	Attempts []Attempt
	Sweep    seccomp.SweepResult
}

// RunSelftest runs the escape suite and the sweep in a worker of p, whose
// handler must be HandlerSelftest. supervisor is the pid the worker should
// try to reach, port a TCP listener on the host's loopback.
func RunSelftest(ctx context.Context, p *Pool, supervisor, port int) (SelftestResult, error) {
	var res SelftestResult
	out, err := p.Do(ctx, SelftestFunction, fmt.Appendf(nil, "escape %d %d", supervisor, port))
	if err != nil {
		return res, fmt.Errorf("escape suite: %w", err)
	}
	if err := json.Unmarshal(out, &res.Attempts); err != nil {
		return res, fmt.Errorf("escape suite: %w", err)
	}
	if out, err = p.Do(ctx, SelftestFunction, []byte("sweep")); err != nil {
		return res, fmt.Errorf("sweep: %w", err)
	}
	if err := json.Unmarshal(out, &res.Sweep); err != nil {
		return res, fmt.Errorf("sweep: %w", err)
	}
	return res, nil
}
