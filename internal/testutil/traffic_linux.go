package testutil

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/netlab"
	"golang.org/x/sys/unix"
)

// Traffic helpers for tests that send real packets between the namespaces of
// a VethPair. Sockets are created inside a namespace and stay bound to it,
// so the calling goroutine never has to switch. Their wait is used as given:
// a caller that expects delivery passes a budget through Scale, one that
// expects a drop a fixed wait (see docs/KERNELS.md, "Time budgets").

// UDPListen opens a UDP socket in ns bound to addr (port 0 picks one).
func UDPListen(t testing.TB, ns *NetNS, addr netip.AddrPort) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	if err := ns.Do(t, func() (err error) {
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		return err
	}); err != nil {
		t.Fatalf("udp listen on %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// UDPDelivered sends one datagram from src (in ns) to the listener and
// reports whether it arrived within wait. Stray datagrams are skipped.
func UDPDelivered(t testing.TB, ns *NetNS, src netip.Addr, l *net.UDPConn, wait time.Duration) bool {
	t.Helper()
	dst := l.LocalAddr().(*net.UDPAddr).AddrPort()
	var c *net.UDPConn
	if err := ns.Do(t, func() (err error) {
		c, err = net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), net.UDPAddrFromAddrPort(dst))
		return err
	}); err != nil {
		t.Fatalf("udp socket from %s: %v", src, err)
	}
	defer c.Close()
	token := []byte("aegis-" + randHex(8))
	if _, err := c.Write(token); err != nil {
		t.Fatalf("udp send from %s: %v", src, err)
	}
	deadline := time.Now().Add(wait)
	buf := make([]byte, 2048)
	for {
		l.SetReadDeadline(deadline)
		n, _, err := l.ReadFromUDPAddrPort(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return false
		}
		if err != nil {
			t.Fatalf("udp receive: %v", err)
		}
		if string(buf[:n]) == string(token) {
			return true
		}
	}
}

// TCPListen opens a TCP listener in ns that accepts and closes connections.
func TCPListen(t testing.TB, ns *NetNS, addr netip.AddrPort) netip.AddrPort {
	t.Helper()
	var l net.Listener
	if err := ns.Do(t, func() (err error) {
		l, err = net.Listen("tcp", addr.String())
		return err
	}); err != nil {
		t.Fatalf("tcp listen on %s: %v", addr, err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return l.Addr().(*net.TCPAddr).AddrPort()
}

// TCPConnects reports whether a connection from src (in ns) to dst completes
// within wait.
func TCPConnects(t testing.TB, ns *NetNS, src netip.Addr, dst netip.AddrPort, wait time.Duration) bool {
	t.Helper()
	var c net.Conn
	var dialErr error
	if err := ns.Do(t, func() error {
		d := net.Dialer{Timeout: wait, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))}
		c, dialErr = d.Dial("tcp", dst.String())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if dialErr != nil {
		return false
	}
	c.Close()
	return true
}

// Pinged reports whether an ICMP or ICMPv6 echo from src (in ns) to dst is
// answered within wait.
func Pinged(t testing.TB, ns *NetNS, src, dst netip.Addr, wait time.Duration) bool {
	t.Helper()
	var network string
	var echo netlab.Packet
	if src.Is6() {
		network, echo = "ip6:ipv6-icmp", netlab.ICMPEcho6(src.String(), dst.String())
	} else {
		network, echo = "ip4:icmp", netlab.ICMPEcho4(src.String(), dst.String())
	}
	var c net.PacketConn
	if err := ns.Do(t, func() (err error) {
		c, err = net.ListenPacket(network, src.String())
		return err
	}); err != nil {
		t.Fatalf("icmp socket: %v", err)
	}
	defer c.Close()
	frame := echo.Bytes()
	msg := frame[echo.L4Offset():]
	if _, err := c.WriteTo(msg, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
		t.Fatalf("icmp send: %v", err)
	}
	reply := netlab.ICMPEchoReply
	if src.Is6() {
		reply = netlab.ICMPv6EchoReply
	}
	deadline := time.Now().Add(wait)
	buf := make([]byte, 2048)
	for {
		c.SetReadDeadline(deadline)
		n, from, err := c.ReadFrom(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return false
		}
		if err != nil {
			t.Fatalf("icmp receive: %v", err)
		}
		if n > 0 && buf[0] == reply && from.(*net.IPAddr).IP.Equal(dst.AsSlice()) {
			return true
		}
	}
}

// RawSender opens an AF_PACKET socket in ns on the interface and returns a
// function that sends whole Ethernet frames through it.
func RawSender(t testing.TB, ns *NetNS, ifindex int) func(frame []byte) error {
	t.Helper()
	var fd int
	if err := ns.Do(t, func() (err error) {
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		return err
	}); err != nil {
		t.Fatalf("AF_PACKET socket: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return func(frame []byte) error {
		// A flood outruns a slow machine (an emulated kernel): the
		// socket's buffer fills and the kernel answers ENOBUFS until
		// the device has taken what is queued. The frame is sent again
		// after a pause, for as long as a scaled deadline allows.
		deadline := time.Now().Add(Scale(5 * time.Second))
		for pause := 100 * time.Microsecond; ; pause = min(2*pause, 20*time.Millisecond) {
			err := unix.Sendto(fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: ifindex})
			if !errors.Is(err, unix.ENOBUFS) && !errors.Is(err, unix.EAGAIN) || time.Now().After(deadline) {
				return err
			}
			time.Sleep(pause)
		}
	}
}
