//go:build linux

package shield

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/netlab"
	tu "github.com/aegis-edge/aegis/internal/testutil"
)

// delivered is how long a packet that should pass may take: a budget,
// scaled to the machine's speed. dropped is how long we wait to conclude one
// was dropped: not scaled, as it is no budget (a slow machine cannot fail a
// drop check, only a delivery check), and a delivery takes well under a
// millisecond on the reference machine, far below it even a hundred times
// slower.
var (
	delivered = tu.Scale(500 * time.Millisecond)
	dropped   = 300 * time.Millisecond
)

// attachInB loads an unpinned shield and attaches it to the B end of a veth
// pair, so traffic from A crosses the XDP program.
func attachInB(t *testing.T, v *tu.VethPair, st Settings) *Shield {
	t.Helper()
	s, err := Load(Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.SetSettings(st); err != nil {
		t.Fatal(err)
	}
	info, err := attachB(t, v, s, XDPAuto)
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	if info.Mode != XDPNative {
		t.Errorf("veth should take native XDP, got %q", info.Mode)
	}
	return s
}

func TestRealTrafficBlocklist(t *testing.T) {
	v := tu.NewVethPair(t)
	clean4 := netip.MustParseAddr("192.0.2.10")
	clean6 := netip.MustParseAddr("2001:db8::10")
	v.AddAddr(t, tu.SideA, netip.PrefixFrom(clean4, tu.VethIPv4Bits))
	v.AddAddr(t, tu.SideA, netip.PrefixFrom(clean6, tu.VethIPv6Bits))
	s := attachInB(t, v, noLimits())

	udp4 := tu.UDPListen(t, v.B, netip.AddrPortFrom(v.IPv4B, 0))
	udp6 := tu.UDPListen(t, v.B, netip.AddrPortFrom(v.IPv6B, 0))
	tcp4 := tu.TCPListen(t, v.B, netip.AddrPortFrom(v.IPv4B, 0))
	tcp6 := tu.TCPListen(t, v.B, netip.AddrPortFrom(v.IPv6B, 0))

	type probe struct {
		name string
		ok   func(src netip.Addr, wait time.Duration) bool
		v6   bool
	}
	probes := []probe{
		{"udp4", func(src netip.Addr, w time.Duration) bool { return tu.UDPDelivered(t, v.A, src, udp4, w) }, false},
		{"tcp4", func(src netip.Addr, w time.Duration) bool { return tu.TCPConnects(t, v.A, src, tcp4, w) }, false},
		{"icmp4", func(src netip.Addr, w time.Duration) bool { return tu.Pinged(t, v.A, src, v.IPv4B, w) }, false},
		{"udp6", func(src netip.Addr, w time.Duration) bool { return tu.UDPDelivered(t, v.A, src, udp6, w) }, true},
		{"tcp6", func(src netip.Addr, w time.Duration) bool { return tu.TCPConnects(t, v.A, src, tcp6, w) }, true},
		{"icmp6", func(src netip.Addr, w time.Duration) bool { return tu.Pinged(t, v.A, src, v.IPv6B, w) }, true},
	}
	blocked := func(p probe) netip.Addr {
		if p.v6 {
			return v.IPv6A
		}
		return v.IPv4A
	}
	clean := func(p probe) netip.Addr {
		if p.v6 {
			return clean6
		}
		return clean4
	}
	for _, p := range probes {
		if !p.ok(blocked(p), delivered) {
			t.Fatalf("%s from %s failed before anything was blocked", p.name, blocked(p))
		}
	}
	if err := s.PutRules(Blocklist, []Rule{
		{Prefix: netip.PrefixFrom(v.IPv4A, 32), RuleID: 1},
		{Prefix: netip.PrefixFrom(v.IPv6A, 128), RuleID: 2},
	}); err != nil {
		t.Fatal(err)
	}
	before, _ := s.Counters()
	for _, p := range probes {
		if p.ok(blocked(p), dropped) {
			t.Errorf("%s from blocked %s got through", p.name, blocked(p))
		}
		if !p.ok(clean(p), delivered) {
			t.Errorf("%s from clean %s was dropped", p.name, clean(p))
		}
	}
	after, _ := s.Counters()
	if got := after.Verdicts[ReasonBlockedExact].Packets - before.Verdicts[ReasonBlockedExact].Packets; got < uint64(len(probes)) {
		t.Errorf("blocked_exact counted %d packets, want at least %d", got, len(probes))
	}

	// A prefix rule on the other family's block works the same way.
	if err := s.DeleteRules(Blocklist, []netip.Prefix{netip.PrefixFrom(v.IPv4A, 32)}); err != nil {
		t.Fatal(err)
	}
	if !probes[0].ok(v.IPv4A, delivered) {
		t.Error("udp4 still dropped after the rule was removed")
	}
	if err := s.PutRules(Blocklist, []Rule{{Prefix: netip.MustParsePrefix("192.0.2.0/28"), RuleID: 3}}); err != nil {
		t.Fatal(err)
	}
	if probes[0].ok(v.IPv4A, dropped) || probes[0].ok(clean4, dropped) {
		t.Error("udp4 from inside a blocked /28 got through")
	}
}

func TestRealTrafficSYNFloodLimited(t *testing.T) {
	v := tu.NewVethPair(t)
	attacker := netip.MustParseAddr("192.0.2.66")
	v.AddAddr(t, tu.SideA, netip.PrefixFrom(attacker, tu.VethIPv4Bits))
	st := noLimits()
	st.SYN = Bucket{PPS: 10, Burst: 10}
	st.AutoBlockFactor = 1000 // show the limiter, not the automatic block
	s := attachInB(t, v, st)
	tcp4 := tu.TCPListen(t, v.B, netip.AddrPortFrom(v.IPv4B, 0))

	send := tu.RawSender(t, v.A, v.IndexA)
	const flood = 2000
	for i := range flood {
		p := netlab.TCPSyn4(attacker.String(), v.IPv4B.String())
		p.DstPort = tcp4.Port()
		p.SrcPort = uint16(10000 + i%50000)
		if err := send(p.Bytes()); err != nil {
			t.Fatalf("sending SYN %d: %v", i, err)
		}
	}
	// The legitimate client keeps connecting while the attacker is limited.
	if !tu.TCPConnects(t, v.A, v.IPv4A, tcp4, delivered) {
		t.Error("a different source could not connect during the flood")
	}
	c, err := s.Counters()
	if err != nil {
		t.Fatal(err)
	}
	limited := c.Verdicts[ReasonRateSYN].Packets
	// The burst of 10 plus what refills while sending passes; the flood is
	// far larger, so most of it must have been dropped.
	if limited < flood/2 {
		t.Errorf("rate_syn dropped %d of %d flood SYNs", limited, flood)
	}
	t.Logf("SYN flood: %d of %d dropped by the rate limit", limited, flood)
}

func TestAttachGenericModeAndReplaceInPlace(t *testing.T) {
	v := tu.NewVethPair(t)
	pin := tu.PinPath(t)

	s1, err := Load(Options{PinPath: pin})
	if err != nil {
		t.Fatal(err)
	}
	first, err := attachB(t, v, s1, XDPGeneric)
	if err != nil {
		t.Fatal(err)
	}
	if first.Mode != XDPGeneric || first.Adopted {
		t.Fatalf("first attach: %+v", first)
	}
	if err := s1.PutRules(Blocklist, []Rule{{Prefix: netip.PrefixFrom(v.IPv4A, 32), RuleID: 7}}); err != nil {
		t.Fatal(err)
	}
	s1.Close() // the pinned link keeps the program attached

	s2, err := Load(Options{PinPath: pin})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if !s2.Adopted {
		t.Error("second load did not adopt the pinned maps")
	}
	second, err := attachB(t, v, s2, XDPGeneric)
	if err != nil {
		t.Fatal(err)
	}
	if !second.Adopted || second.LinkID != first.LinkID || second.ProgramID == first.ProgramID {
		t.Errorf("program not replaced in place through the same link: first %+v, second %+v", first, second)
	}
	rules, err := s2.Rules(Blocklist)
	if err != nil || len(rules) != 1 || rules[0].RuleID != 7 {
		t.Errorf("maps not kept across the replacement: %+v %v", rules, err)
	}
	udp := tu.UDPListen(t, v.B, netip.AddrPortFrom(v.IPv4B, 0))
	if tu.UDPDelivered(t, v.A, v.IPv4A, udp, dropped) {
		t.Error("blocked source got through the replaced program")
	}
	if err := detachB(t, v, s2); err != nil {
		t.Fatal(err)
	}
	if !tu.UDPDelivered(t, v.A, v.IPv4A, udp, delivered) {
		t.Error("traffic still dropped after detach")
	}
}

// TestNetlinkAttachFallback forces the pre-5.9 attach path: the program is
// attached through netlink, survives the daemon, is replaced in place by the
// next one and is detached cleanly.
func TestNetlinkAttachFallback(t *testing.T) {
	v := tu.NewVethPair(t)
	pin := tu.PinPath(t)
	udp := tu.UDPListen(t, v.B, netip.AddrPortFrom(v.IPv4B, 0))

	s1, err := Load(Options{PinPath: pin, NetlinkAttach: true})
	if err != nil {
		t.Fatal(err)
	}
	first, err := attachB(t, v, s1, XDPAuto)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { detachB(t, v, s1) })
	if first.Via != ViaNetlink || first.Adopted || first.ProgramID == 0 || first.Mode != XDPNative {
		t.Fatalf("first attach: %+v", first)
	}
	if err := s1.PutRules(Blocklist, []Rule{{Prefix: netip.PrefixFrom(v.IPv4A, 32), RuleID: 3}}); err != nil {
		t.Fatal(err)
	}
	s1.Close() // a netlink attachment is not tied to the process
	if tu.UDPDelivered(t, v.A, v.IPv4A, udp, dropped) {
		t.Fatal("blocked source got through after the first daemon closed")
	}

	s2, err := Load(Options{PinPath: pin, NetlinkAttach: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	second, err := attachB(t, v, s2, XDPAuto)
	if err != nil {
		t.Fatal(err)
	}
	if !second.Adopted || second.ProgramID == first.ProgramID || second.Mode != first.Mode {
		t.Errorf("program not replaced in place: first %+v, second %+v", first, second)
	}
	var listed []AttachInfo
	v.B.Do(t, func() (err error) { listed, err = s2.Attached(); return err })
	if len(listed) != 1 || listed[0].Via != ViaNetlink || listed[0].ProgramID != second.ProgramID {
		t.Errorf("Attached() = %+v", listed)
	}
	if tu.UDPDelivered(t, v.A, v.IPv4A, udp, dropped) {
		t.Error("blocked source got through the replaced program")
	}
	if err := detachB(t, v, s2); err != nil {
		t.Fatal(err)
	}
	if !tu.UDPDelivered(t, v.A, v.IPv4A, udp, delivered) {
		t.Error("traffic still dropped after detach")
	}
	if err := detachB(t, v, s2); !errors.Is(err, ErrNotAttached) {
		t.Errorf("second detach = %v, want ErrNotAttached", err)
	}
}
