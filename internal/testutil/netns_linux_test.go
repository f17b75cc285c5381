package testutil

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/netlab"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

func TestNewNetNS(t *testing.T) {
	RequireRoot(t)

	// The calling thread's namespace must be the same before and after.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()

	n := NewNetNS(t)

	after, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()
	if !before.Equal(after) {
		t.Fatalf("NewNetNS changed the calling thread's namespace")
	}
	if before.Equal(n.Handle) {
		t.Fatalf("new namespace is the caller's namespace")
	}
	if !strings.HasPrefix(n.Name, NetNSPrefix) || n.Path != NetNSRunDir+"/"+n.Name {
		t.Errorf("Name %q Path %q", n.Name, n.Path)
	}

	// Do runs inside the namespace, where lo is up, and restores.
	err = n.Do(t, func() error {
		cur, err := netns.Get()
		if err != nil {
			return err
		}
		defer cur.Close()
		if !cur.Equal(n.Handle) {
			return errors.New("Do did not enter the namespace")
		}
		lo, err := net.InterfaceByName("lo")
		if err != nil {
			return err
		}
		if lo.Flags&net.FlagUp == 0 {
			return errors.New("lo is down")
		}
		ifs, err := net.Interfaces()
		if err != nil {
			return err
		}
		if len(ifs) != 1 {
			return errors.New("namespace has interfaces other than lo")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := errors.New("from fn"); !errors.Is(n.Do(t, func() error { return want }), want) {
		t.Errorf("Do did not return fn's error")
	}

	// The mount works with the usual tools.
	if _, err := exec.LookPath("nsenter"); err == nil {
		out, err := exec.Command("nsenter", "--net="+n.Path, "cat", "/sys/class/net/lo/operstate").CombinedOutput()
		if err != nil {
			t.Errorf("nsenter: %v: %s", err, out)
		}
	}
	if _, err := exec.LookPath("ip"); err == nil {
		out, err := exec.Command("ip", "netns", "exec", n.Name, "ip", "-o", "link", "show").CombinedOutput()
		if err != nil || strings.Count(strings.TrimSpace(string(out)), "\n") != 0 || !strings.Contains(string(out), "lo:") {
			t.Errorf("ip netns exec: %v: %s", err, out)
		}
	}
}

func TestDoPanic(t *testing.T) {
	RequireRoot(t)
	n := NewNetNS(t)
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recovered %v, want the panic value from fn", r)
			}
		}()
		n.Do(t, func() error { panic("boom") })
	}()
	// t.SkipNow inside fn stops the calling test as skipped.
	reached := false
	t.Run("skip-inside", func(t *testing.T) {
		n.Do(t, func() error { t.Skip("skipping inside Do"); return nil })
		reached = true
	})
	if reached {
		t.Errorf("test went on after t.Skip inside Do")
	}
	// The namespace of the caller is untouched and Do still works.
	if err := n.Do(t, func() error { return nil }); err != nil {
		t.Fatal(err)
	}
}

// udpListen opens a UDP socket on addr inside ns.
func udpListen(t *testing.T, ns *NetNS, addr netip.AddrPort) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	err := ns.Do(t, func() error {
		var err error
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		return err
	})
	if err != nil {
		t.Fatalf("listening on %v in %s: %v", addr, ns.Name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// expectUDP reads one datagram from c and checks its payload and source.
func expectUDP(t *testing.T, c *net.UDPConn, payload []byte, from netip.Addr) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(Scale(5 * time.Second))); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	n, src, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("waiting for a datagram on %v: %v", c.LocalAddr(), err)
	}
	if !bytes.Equal(buf[:n], payload) {
		t.Errorf("got %q, want %q", buf[:n], payload)
	}
	if from.IsValid() && src.Addr().Unmap() != from {
		t.Errorf("datagram from %v, want %v", src.Addr(), from)
	}
}

func TestVethPairUDP(t *testing.T) {
	RequireRoot(t)
	var names []string
	var veth string

	t.Run("traffic", func(t *testing.T) {
		v := NewVethPair(t)
		names = append(names, v.A.Name, v.B.Name)
		veth = v.IfA
		if len(v.IfA) > 15 || len(v.IfB) > 15 || v.IndexA == 0 || v.IndexB == 0 {
			t.Errorf("interfaces %q(%d) %q(%d)", v.IfA, v.IndexA, v.IfB, v.IndexB)
		}
		if !bytes.Equal(v.MACA, netlab.DefaultSrcMAC) || !bytes.Equal(v.MACB, netlab.DefaultDstMAC) {
			t.Errorf("MACs %v %v", v.MACA, v.MACB)
		}
		v.AddAddr(t, SideA, netip.MustParsePrefix("192.0.2.10/24"))
		v.AddAddr(t, SideA, netip.MustParsePrefix("2001:db8::10/64"))

		for _, tc := range []struct {
			name     string
			src, dst netip.Addr
		}{
			{"IPv4", v.IPv4A, v.IPv4B},
			{"IPv6", v.IPv6A, v.IPv6B},
			{"IPv4-extra-source", netip.MustParseAddr("192.0.2.10"), v.IPv4B},
			{"IPv6-extra-source", netip.MustParseAddr("2001:db8::10"), v.IPv6B},
		} {
			t.Run(tc.name, func(t *testing.T) {
				l := udpListen(t, v.B, netip.AddrPortFrom(tc.dst, 0))
				dst := l.LocalAddr().(*net.UDPAddr).AddrPort()
				payload := []byte("hello from " + tc.src.String())
				err := v.A.Do(t, func() error {
					c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(tc.src, 0)), net.UDPAddrFromAddrPort(dst))
					if err != nil {
						return err
					}
					defer c.Close()
					_, err = c.Write(payload)
					return err
				})
				if err != nil {
					t.Fatalf("sending from A: %v", err)
				}
				expectUDP(t, l, payload, tc.src)
			})
		}

		// Frames from netlab.Packet.Bytes, written raw on A's end, reach a
		// socket in B: the kernel accepts their headers.
		t.Run("raw-frames", func(t *testing.T) {
			fd := -1
			err := v.A.Do(t, func() error {
				var err error
				fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
				return err
			})
			if err != nil {
				t.Fatalf("AF_PACKET socket in A: %v", err)
			}
			t.Cleanup(func() { unix.Close(fd) })

			for i, p := range []netlab.Packet{
				netlab.UDP4(v.IPv4A.String(), v.IPv4B.String()),
				func() netlab.Packet {
					p := netlab.UDP4(v.IPv4A.String(), v.IPv4B.String())
					p.IPv4Options = []byte{1, 1, 1} // NOPs
					return p
				}(),
				netlab.UDP6(v.IPv6A.String(), v.IPv6B.String()),
				func() netlab.Packet {
					p := netlab.UDP6(v.IPv6A.String(), v.IPv6B.String())
					p.IPv6ExtHeaders = []netlab.ExtHeader{{Type: netlab.ProtoHopByHop}, {Type: netlab.ProtoDstOpts}}
					return p
				}(),
				func() netlab.Packet {
					p := netlab.UDP6(v.IPv6A.String(), v.IPv6B.String())
					p.IPv6ExtHeaders = []netlab.ExtHeader{{Type: netlab.ProtoHopByHop, Len: 2}, {Type: netlab.ProtoRouting}, {Type: netlab.ProtoDstOpts, Len: 100}}
					return p
				}(),
			} {
				l := udpListen(t, v.B, netip.AddrPortFrom(p.Dst, 0))
				p.DstPort = l.LocalAddr().(*net.UDPAddr).AddrPort().Port()
				p.Payload = []byte("raw " + p.Src.String())
				if err := unix.Sendto(fd, p.Bytes(), 0, &unix.SockaddrLinklayer{Ifindex: v.IndexA}); err != nil {
					t.Fatalf("frame %d: sendto: %v", i, err)
				}
				expectUDP(t, l, p.Payload, p.Src)
				if t.Failed() {
					t.Fatalf("frame %d (%+v) did not arrive", i, p)
				}
			}
		})
	})

	for _, name := range names {
		if _, err := os.Stat(NetNSRunDir + "/" + name); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("namespace %s still present after cleanup (stat: %v)", name, err)
		}
	}
	if len(names) != 2 {
		t.Errorf("namespaces created: %v", names)
	}
	if _, err := net.InterfaceByName(veth); err == nil {
		t.Errorf("veth %s leaked into the test's namespace", veth)
	}
}
