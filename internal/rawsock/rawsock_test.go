package rawsock

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// pair is a loopback TCP connection: the raw end and the plain end.
func pair(t *testing.T) (*net.TCPConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		done <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer := <-done
	if peer == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); peer.Close() })
	return c.(*net.TCPConn), peer
}

func rawConn(t *testing.T, c *net.TCPConn) syscall.RawConn {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

// A write larger than the socket's buffers waits in the poller until the
// peer reads, and arrives whole; reads return what was sent, then io.EOF.
func TestRoundTrip(t *testing.T) {
	c, peer := pair(t)
	rc := rawConn(t, c)
	c.SetWriteBuffer(4096)
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	got := make(chan []byte, 1)
	go func() {
		time.Sleep(50 * time.Millisecond) // the writer fills the buffers first
		b, _ := io.ReadAll(io.LimitReader(peer, int64(len(big))))
		got <- b
	}()
	n, err := Write(rc, big)
	if err != nil || n != len(big) {
		t.Fatalf("Write: %d, %v; want %d, nil", n, err, len(big))
	}
	if b := <-got; !bytes.Equal(b, big) {
		t.Fatalf("peer read %d bytes, not what was written", len(b))
	}

	if _, err := peer.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	n, err = Read(rc, buf)
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("Read: %q, %v", buf[:n], err)
	}
	peer.Close()
	if n, err := Read(rc, buf); n != 0 || err != io.EOF {
		t.Fatalf("Read after the peer closed: %d, %v; want 0, io.EOF", n, err)
	}
}

// Deadlines and Close reach a raw call waiting in the poller, with the
// errors net.Conn gives.
func TestDeadlineAndClose(t *testing.T) {
	c, _ := pair(t)
	rc := rawConn(t, c)
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	buf := make([]byte, 16)
	if _, err := Read(rc, buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past the deadline: %v, want os.ErrDeadlineExceeded", err)
	}
	var ne net.Error
	if _, err := Read(rc, buf); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Read past the deadline: %v, want a net.Error that is a timeout", err)
	}
	c.SetReadDeadline(time.Time{})
	errc := make(chan error, 1)
	go func() {
		_, err := Read(rc, buf)
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	c.Close()
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read across Close: %v, want net.ErrClosed", err)
	}
	if _, err := Write(rc, []byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close: %v, want net.ErrClosed", err)
	}
}

// A reset connection's errno comes back as it is.
func TestErrno(t *testing.T) {
	c, peer := pair(t)
	rc := rawConn(t, c)
	peer.(*net.TCPConn).SetLinger(0)
	peer.Close() // RST
	time.Sleep(20 * time.Millisecond)
	_, err := Read(rc, make([]byte, 16))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("Read of a reset connection: %v, want ECONNRESET", err)
	}
}
