//go:build linux

package seccomp

import (
	"errors"
	"fmt"
	"io"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Data is the kernel's struct seccomp_data: the call a filter saw.
type Data struct {
	Nr   int32
	Arch uint32
	IP   uint64
	Args [6]uint64
}

// seccompNotif and seccompNotifResp mirror the kernel's struct
// seccomp_notif and seccomp_notif_resp.
type seccompNotif struct {
	ID    uint64
	PID   uint32
	Flags uint32
	Data  Data
}

type seccompNotifResp struct {
	ID    uint64
	Val   int64
	Error int32
	Flags uint32
}

// TakeListener copies the worker's seccomp listener into the supervisor
// with pidfd_getfd: the supervisor takes it, the worker never sends a
// descriptor. The copy is checked to be a seccomp listener.
func TakeListener(pidfd, fd int) (*os.File, error) {
	nfd, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		return nil, fmt.Errorf("pidfd_getfd: %w", err)
	}
	target, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", nfd))
	if err != nil || target != "anon_inode:seccomp notify" {
		unix.Close(nfd)
		return nil, fmt.Errorf("worker's fd %d is %q, not a seccomp listener", fd, target)
	}
	if err := unix.SetNonblock(nfd, true); err != nil {
		unix.Close(nfd)
		return nil, err
	}
	return os.NewFile(uintptr(nfd), "seccomp-listener"), nil
}

// ServeNotifications answers every call the worker's filter hands over with
// EPERM, after reporting it. It returns nil when the worker is gone and
// os.ErrClosed when the listener is closed under it.
func ServeNotifications(f *os.File, report func(Data)) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	for {
		var n seccompNotif
		var recvErr error
		err := rc.Read(func(fd uintptr) bool {
			// RECV blocks whatever the file flags: only call it when the
			// kernel says a notification is pending.
			p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			if k, err := unix.Poll(p, 0); err != nil || k == 0 {
				return false
			}
			if p[0].Revents&unix.POLLIN == 0 {
				recvErr = io.EOF // POLLHUP: the filter has no task left
				return true
			}
			n = seccompNotif{}
			_, _, e := unix.Syscall(unix.SYS_IOCTL, fd, unix.SECCOMP_IOCTL_NOTIF_RECV, uintptr(unsafe.Pointer(&n)))
			recvErr = errnoErr(e)
			return true
		})
		switch {
		case err != nil:
			return err
		case errors.Is(recvErr, io.EOF):
			return nil
		case errors.Is(recvErr, unix.ENOENT), errors.Is(recvErr, unix.EINTR):
			continue // the caller died or was interrupted before we got it
		case recvErr != nil:
			return fmt.Errorf("receiving a seccomp notification: %w", recvErr)
		}
		report(n.Data)
		resp := seccompNotifResp{ID: n.ID, Error: -int32(unix.EPERM)}
		var sendErr error
		rc.Control(func(fd uintptr) {
			_, _, e := unix.Syscall(unix.SYS_IOCTL, fd, unix.SECCOMP_IOCTL_NOTIF_SEND, uintptr(unsafe.Pointer(&resp)))
			sendErr = errnoErr(e)
		})
		if sendErr != nil && !errors.Is(sendErr, unix.ENOENT) {
			return fmt.Errorf("answering a seccomp notification: %w", sendErr)
		}
	}
}

// errnoErr is nil for no error, else the errno.
func errnoErr(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}
