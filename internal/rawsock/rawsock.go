package rawsock

import (
	"io"
	"syscall"
)

// Read reads into p from the socket behind rc: one read(2) once the
// socket is readable. It returns io.EOF at the end of the stream, the
// poller's error (closed, deadline exceeded) or the call's errno.
func Read(rc syscall.RawConn, p []byte) (int, error) {
	var n int
	var errno syscall.Errno
	err := rc.Read(func(fd uintptr) bool {
		for {
			r, e := read(fd, p)
			switch e {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false
			}
			n, errno = r, e
			return true
		}
	})
	switch {
	case err != nil:
		return 0, err
	case errno != 0:
		return 0, errno
	case n == 0 && len(p) > 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write writes all of p to the socket behind rc, waiting in the poller
// while the socket's buffer is full. It returns how much was written and
// the poller's error or the call's errno.
func Write(rc syscall.RawConn, p []byte) (int, error) {
	n := 0
	var errno syscall.Errno
	err := rc.Write(func(fd uintptr) bool {
		for n < len(p) {
			r, e := write(fd, p[n:])
			switch e {
			case 0:
				n += r
			case syscall.EINTR:
			case syscall.EAGAIN:
				return false
			default:
				errno = e
				return true
			}
		}
		return true
	})
	if err == nil && errno != 0 {
		err = errno
	}
	return n, err
}
