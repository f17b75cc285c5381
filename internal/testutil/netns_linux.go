package testutil

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/netlab"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NetNSRunDir is where named network namespaces are bind-mounted, as by
// `ip netns add`.
const NetNSRunDir = netlab.RunDir

// NetNSPrefix starts the name of every namespace that NewNetNS creates.
const NetNSPrefix = "aegis-t-"

// NetNS is a named network namespace owned by one test. It is bind-mounted at
// Path (under NetNSRunDir), so `ip netns exec Name ...` and
// `nsenter --net=Path ...` work while the test runs. Handle is an open file
// descriptor for the namespace, closed at cleanup; it is valid for
// netlink.NewHandleAt, netlink.NsFd and setns(2).
type NetNS struct {
	Name   string
	Handle netns.NsHandle
	Path   string
	ns     *netlab.Namespace
}

// NewNetNS creates a fresh named network namespace with its loopback
// interface up (netlab.NewNamespace), and registers its removal (unmount,
// file removal, handle close) with t.Cleanup. It requires root (see
// RequireRoot).
//
// The namespace is created on a separate, locked OS thread that is switched
// back to its original namespace afterwards (and discarded if that fails), so
// the calling goroutine's namespace never changes.
func NewNetNS(t testing.TB) *NetNS {
	t.Helper()
	RequireRoot(t)
	for range 10 {
		ns, err := netlab.NewNamespace(NetNSPrefix + randHex(4))
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			t.Fatalf("testutil: %v", err)
		}
		t.Cleanup(func() {
			if err := ns.Remove(); err != nil {
				t.Errorf("testutil: removing network namespace %s: %v", ns.Name, err)
			}
		})
		return &NetNS{Name: ns.Name, Handle: ns.Handle, Path: ns.Path, ns: ns}
	}
	t.Fatalf("testutil: could not find a free namespace name under %s", NetNSRunDir)
	return nil
}

// NetlinkHandle returns a netlink handle whose sockets live in the namespace
// (netlink.NewHandleAt), so that configuring the namespace through it needs
// no thread switching. It is closed at cleanup.
func (n *NetNS) NetlinkHandle(t testing.TB) *netlink.Handle {
	t.Helper()
	h, err := n.ns.Netlink()
	if err != nil {
		t.Fatalf("testutil: %v", err)
	}
	t.Cleanup(h.Close)
	return h
}

// Do runs fn on a locked OS thread switched into the namespace
// (netlab.Namespace.Do) and returns fn's error, or an error if the switch
// itself failed.
//
// The calling goroutine never changes namespace. Sockets that fn opens stay
// in the namespace and may be used afterwards from any goroutine. Goroutines
// that fn starts do not run in the namespace. A panic in fn is re-raised in
// the caller, and if fn calls t.FailNow, t.Fatal or t.SkipNow, Do stops the
// calling test the same way.
func (n *NetNS) Do(t testing.TB, fn func() error) error {
	t.Helper()
	err := n.ns.Do(fn)
	if errors.Is(err, netlab.ErrGoexit) {
		if t.Skipped() && !t.Failed() {
			t.SkipNow()
		}
		t.FailNow()
	}
	return err
}

// Side names one end of a VethPair.
type Side int

// The two ends of a VethPair.
const (
	SideA Side = iota
	SideB
)

// String returns "A" or "B".
func (s Side) String() string {
	switch s {
	case SideA:
		return "A"
	case SideB:
		return "B"
	}
	return fmt.Sprintf("Side(%d)", int(s))
}

// VethPair is a veth pair joining two test-owned namespaces: interface IfA in
// A and IfB in B, both up, with documentation addresses IPv4A/IPv4B
// (192.0.2.1/24, 192.0.2.2/24) and IPv6A/IPv6B (2001:db8::1/64,
// 2001:db8::2/64, without duplicate address detection) and permanent
// neighbour entries both ways, so that traffic flows at once with no ARP or
// NDP. MACA and MACB are netlab.DefaultSrcMAC and netlab.DefaultDstMAC, the defaults of
// netlab.Packet, so a default frame looks like one sent from A to B.
type VethPair struct {
	A, B                       *NetNS
	IfA, IfB                   string
	IndexA, IndexB             int
	MACA, MACB                 net.HardwareAddr
	IPv4A, IPv4B, IPv6A, IPv6B netip.Addr

	nlA, nlB *netlink.Handle
}

// Prefix lengths of the addresses that NewVethPair assigns.
const (
	VethIPv4Bits = 24
	VethIPv6Bits = 64
)

// NewVethPair creates two namespaces (see NewNetNS) joined by a veth pair as
// described at VethPair. Everything is removed at cleanup. It requires root.
func NewVethPair(t testing.TB) *VethPair {
	t.Helper()
	a := NewNetNS(t)
	b := NewNetNS(t)
	suffix := randHex(4)
	v := &VethPair{
		A: a, B: b,
		IfA: "vA" + suffix, IfB: "vB" + suffix,
		MACA:  append(net.HardwareAddr(nil), netlab.DefaultSrcMAC...),
		MACB:  append(net.HardwareAddr(nil), netlab.DefaultDstMAC...),
		IPv4A: netip.MustParseAddr("192.0.2.1"),
		IPv4B: netip.MustParseAddr("192.0.2.2"),
		IPv6A: netip.MustParseAddr("2001:db8::1"),
		IPv6B: netip.MustParseAddr("2001:db8::2"),
		nlA:   a.NetlinkHandle(t),
		nlB:   b.NetlinkHandle(t),
	}

	veth := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: v.IfA, HardwareAddr: v.MACA},
		PeerName:         v.IfB,
		PeerHardwareAddr: v.MACB,
		PeerNamespace:    netlink.NsFd(b.Handle),
	}
	if err := v.nlA.LinkAdd(veth); err != nil {
		t.Fatalf("testutil: creating veth %s/%s: %v", v.IfA, v.IfB, err)
	}
	// Runs before the handles are closed and the namespaces removed.
	t.Cleanup(func() {
		l, err := v.nlA.LinkByName(v.IfA)
		if err != nil {
			var nf netlink.LinkNotFoundError
			if !errors.As(err, &nf) {
				t.Errorf("testutil: finding veth %s for removal: %v", v.IfA, err)
			}
			return
		}
		if err := v.nlA.LinkDel(l); err != nil {
			t.Errorf("testutil: removing veth %s: %v", v.IfA, err)
		}
	})

	la := v.setUp(t, SideA, netip.PrefixFrom(v.IPv4A, VethIPv4Bits), netip.PrefixFrom(v.IPv6A, VethIPv6Bits))
	lb := v.setUp(t, SideB, netip.PrefixFrom(v.IPv4B, VethIPv4Bits), netip.PrefixFrom(v.IPv6B, VethIPv6Bits))
	v.IndexA, v.MACA = la.Attrs().Index, la.Attrs().HardwareAddr
	v.IndexB, v.MACB = lb.Attrs().Index, lb.Attrs().HardwareAddr

	v.waitReady(t, SideA)
	v.waitReady(t, SideB)
	v.waitLocal(t, SideA, v.IPv4A)
	v.waitLocal(t, SideA, v.IPv6A)
	v.waitLocal(t, SideB, v.IPv4B)
	v.waitLocal(t, SideB, v.IPv6B)

	v.addNeigh(t, SideA, v.IPv4B, v.MACB)
	v.addNeigh(t, SideA, v.IPv6B, v.MACB)
	v.addNeigh(t, SideB, v.IPv4A, v.MACA)
	v.addNeigh(t, SideB, v.IPv6A, v.MACA)
	return v
}

func (v *VethPair) side(s Side) (h *netlink.Handle, ifname string, ns *NetNS) {
	switch s {
	case SideA:
		return v.nlA, v.IfA, v.A
	case SideB:
		return v.nlB, v.IfB, v.B
	}
	panic(fmt.Sprintf("testutil: invalid %v", s))
}

func (s Side) other() Side {
	if s == SideA {
		return SideB
	}
	return SideA
}

// setUp assigns the prefixes to one end and brings it up, returning the link
// as read back from the kernel.
func (v *VethPair) setUp(t testing.TB, s Side, prefixes ...netip.Prefix) netlink.Link {
	t.Helper()
	h, ifname, ns := v.side(s)
	l, err := h.LinkByName(ifname)
	if err != nil {
		t.Fatalf("testutil: namespace %s: finding %s: %v", ns.Name, ifname, err)
	}
	for _, p := range prefixes {
		v.addAddr(t, s, l, p)
	}
	if err := h.LinkSetUp(l); err != nil {
		t.Fatalf("testutil: namespace %s: setting %s up: %v", ns.Name, ifname, err)
	}
	if l, err = h.LinkByName(ifname); err != nil {
		t.Fatalf("testutil: namespace %s: finding %s: %v", ns.Name, ifname, err)
	}
	return l
}

// waitReady waits until the kernel's link watcher has handled the carrier
// coming up on one end: operational state up and a real root qdisc in place.
// Until then the device still has the noop qdisc, which drops every packet
// sent, so a test sending at once would lose its first packets.
func (v *VethPair) waitReady(t testing.TB, s Side) {
	t.Helper()
	h, ifname, ns := v.side(s)
	deadline := time.Now().Add(Scale(10 * time.Second))
	for {
		state, qdisc := "?", "?"
		l, err := h.LinkByName(ifname)
		if err == nil {
			state = l.Attrs().OperState.String()
			var qs []netlink.Qdisc
			qs, err = h.QdiscList(l)
			for _, q := range qs {
				if q.Attrs().Parent == netlink.HANDLE_ROOT {
					qdisc = q.Type()
				}
			}
			if err == nil && l.Attrs().OperState == netlink.OperUp && qdisc != "noop" && qdisc != "?" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("testutil: namespace %s: %s not ready (operstate %s, root qdisc %s, err %v; %s)", ns.Name, ifname, state, qdisc, err, TimeScale())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitLocal waits until a routing lookup for addr on the given side finds a
// local route. IPv6 addresses, even without DAD, get their local route from
// a kernel work queue some time after being added; until then packets to
// them are dropped (Ip6InAddrErrors).
func (v *VethPair) waitLocal(t testing.TB, s Side, addr netip.Addr) {
	t.Helper()
	h, _, ns := v.side(s)
	deadline := time.Now().Add(Scale(10 * time.Second))
	for {
		routes, err := h.RouteGet(addr.AsSlice())
		for _, r := range routes {
			if r.Type == unix.RTN_LOCAL {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("testutil: namespace %s: no local route for %v (routes %v, err %v; %s)", ns.Name, addr, routes, err, TimeScale())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (v *VethPair) addAddr(t testing.TB, s Side, l netlink.Link, p netip.Prefix) {
	t.Helper()
	h, ifname, ns := v.side(s)
	a := p.Addr()
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(p.Bits(), a.BitLen())}}
	if a.Is6() {
		addr.Flags = unix.IFA_F_NODAD
	}
	if err := h.AddrAdd(l, addr); err != nil {
		t.Fatalf("testutil: namespace %s: adding %v to %s: %v", ns.Name, p, ifname, err)
	}
}

func (v *VethPair) addNeigh(t testing.TB, s Side, ip netip.Addr, mac net.HardwareAddr) {
	t.Helper()
	h, ifname, ns := v.side(s)
	idx := v.IndexA
	if s == SideB {
		idx = v.IndexB
	}
	fam := unix.AF_INET
	if ip.Is6() {
		fam = unix.AF_INET6
	}
	n := &netlink.Neigh{
		LinkIndex:    idx,
		Family:       fam,
		State:        netlink.NUD_PERMANENT,
		IP:           ip.AsSlice(),
		HardwareAddr: mac,
	}
	if err := h.NeighSet(n); err != nil {
		t.Fatalf("testutil: namespace %s: neighbour %v lladdr %v on %s: %v", ns.Name, ip, mac, ifname, err)
	}
}

// documentationPrefixes are the only ranges test namespaces may use.
var documentationPrefixes = []netip.Prefix{
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("2001:db8::/32"),
}

// IsDocumentationAddr reports whether a lies in one of the documentation
// ranges that this project's network tests may use: 192.0.2.0/24,
// 198.51.100.0/24 or 2001:db8::/32.
func IsDocumentationAddr(a netip.Addr) bool {
	for _, p := range documentationPrefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// AddAddr adds prefix (an address with its prefix length, such as
// 192.0.2.10/24 or 2001:db8::10/64) to the given side's interface, without
// duplicate address detection, and adds a permanent neighbour entry for it on
// the other side, so that it can be used as a source address at once. The
// address must be in a documentation range (see IsDocumentationAddr).
func (v *VethPair) AddAddr(t testing.TB, side Side, prefix netip.Prefix) {
	t.Helper()
	if !prefix.IsValid() || !IsDocumentationAddr(prefix.Addr()) {
		t.Fatalf("testutil: AddAddr(%v): only 192.0.2.0/24, 198.51.100.0/24 and 2001:db8::/32 are allowed", prefix)
	}
	h, ifname, ns := v.side(side)
	l, err := h.LinkByName(ifname)
	if err != nil {
		t.Fatalf("testutil: namespace %s: finding %s: %v", ns.Name, ifname, err)
	}
	v.addAddr(t, side, l, prefix)
	v.waitLocal(t, side, prefix.Addr())
	mac := v.MACA
	if side == SideB {
		mac = v.MACB
	}
	v.addNeigh(t, side.other(), prefix.Addr(), mac)
}
