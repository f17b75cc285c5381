//go:build linux

package shield

import (
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/netlab"
)

// Extension headers for the fragment and chain tests.
var (
	hopByHop = netlab.ExtHeader{Type: netlab.ProtoHopByHop}
	dstOpts  = netlab.ExtHeader{Type: netlab.ProtoDstOpts}
	fragHdr  = netlab.ExtHeader{Type: netlab.ProtoFragment}
)

// dstOptsChain returns n Destination Options headers.
func dstOptsChain(n int) []netlab.ExtHeader {
	hs := make([]netlab.ExtHeader, n)
	for i := range hs {
		hs[i] = dstOpts
	}
	return hs
}

// laterFragment is a non-first fragment of p at offset units (8 bytes each)
// carrying 16 bytes.
func laterFragment(p netlab.Packet, units uint16) []byte {
	p.FragOffset, p.MoreFragments, p.Payload = units, true, make([]byte, 16)
	return p.Bytes()
}

// padded pads a frame with zeros to the Ethernet minimum of 60 bytes, as a
// NIC does: the IP datagram inside ends before the frame does.
func padded(frame []byte) []byte {
	for len(frame) < 60 {
		frame = append(frame, 0)
	}
	return frame
}

// TestDataPathFragmentsAndChains gives every rule of the fragment and header
// chain classification a frame, under both long_header_chains settings, and
// checks the reference classifier agrees.
func TestDataPathFragmentsAndChains(t *testing.T) {
	src4, src6 := "192.0.2.1", "2001:db8::1"
	syn4, syn6 := netlab.TCPSyn4(src4, dst4), netlab.TCPSyn6(src6, dst6)
	syn6Behind := syn6
	syn6Behind.IPv6ExtHeaders = []netlab.ExtHeader{hopByHop, dstOpts}
	longChain := syn6
	longChain.IPv6ExtHeaders = dstOptsChain(7)
	longChainFrag := syn6 // a first fragment whose chain goes past the walk
	longChainFrag.IPv6ExtHeaders = append([]netlab.ExtHeader{fragHdr}, dstOptsChain(6)...)
	longChainFrag.MoreFragments = true
	sixHeaders := syn6
	sixHeaders.IPv6ExtHeaders = append([]netlab.ExtHeader{hopByHop}, dstOptsChain(5)...)
	chainInFirstFrag := syn6 // Fragment, then two options headers, cut before TCP
	chainInFirstFrag.IPv6ExtHeaders = []netlab.ExtHeader{fragHdr, dstOpts, dstOpts}
	chainInFirstFrag.MoreFragments = true
	cutChain := netlab.Truncate(chainInFirstFrag.Bytes(), chainInFirstFrag.L4Offset()-4)
	cutUnfragmented := syn6
	cutUnfragmented.IPv6ExtHeaders = []netlab.ExtHeader{dstOpts, dstOpts}
	udp6Later := netlab.UDP6(src6, dst6)
	udp6Later.IPv6ExtHeaders = []netlab.ExtHeader{hopByHop, fragHdr}
	laterExt := netlab.UDP6(src6, dst6) // a non-first fragment whose next header is an options header
	laterExt.IPv6ExtHeaders = []netlab.ExtHeader{fragHdr, dstOpts}
	atomic := syn6 // RFC 6946: offset 0, no more fragments
	atomic.IPv6ExtHeaders = []netlab.ExtHeader{fragHdr}
	icmp4 := netlab.ICMPEcho4(src4, dst4)
	gre4 := netlab.Packet{Src: syn4.Src, Dst: syn4.Dst, Proto: 47, Payload: make([]byte, 24)}

	type verdict struct {
		ret    uint32
		reason Reason
	}
	passed, malformed := verdict{xdpPass, ReasonPassed}, verdict{xdpPass, ReasonMalformed}
	fragDrop := verdict{xdpDrop, ReasonFragment}
	tests := []struct {
		name          string
		frame         []byte
		drop, charged verdict // under long_header_chains drop and charge
	}{
		{"tcp4 8-byte first fragment", syn4.Fragments(8)[0], fragDrop, fragDrop},
		{"tcp4 8-byte first fragment padded to 60 bytes", padded(syn4.Fragments(8)[0]), fragDrop, fragDrop},
		{"tcp4 second of 8-byte fragments", syn4.Fragments(8)[1], fragDrop, fragDrop}, // offset 1
		{"tcp4 16-byte first fragment holds the flags", syn4.Fragments(16)[0], passed, passed},
		{"tcp4 last of 16-byte fragments", syn4.Fragments(16)[1], passed, passed},
		{"tcp4 offset-1 fragment", laterFragment(syn4, 1), fragDrop, fragDrop},
		{"tcp4 offset-2 fragment", laterFragment(syn4, 2), passed, passed},
		{"udp4 offset-1 fragment", laterFragment(netlab.UDP4(src4, dst4), 1), passed, passed},
		{"icmp4 first fragment of 8 bytes", icmp4.Fragments(8)[0], passed, passed},
		{"gre4 first fragment of 8 bytes", gre4.Fragments(8)[0], passed, passed},
		{"unfragmented tcp4 cut to 10 bytes", netlab.Truncate(syn4.Bytes(), syn4.L4Offset()+10), malformed, malformed},
		{"unfragmented tcp4 cut to 16 bytes", netlab.Truncate(syn4.Bytes(), syn4.L4Offset()+16), malformed, malformed},
		{"tcp6 8-byte first fragment", syn6.Fragments(8)[0], fragDrop, fragDrop},
		{"tcp6 16-byte first fragment", syn6.Fragments(16)[0], passed, passed},
		{"tcp6 second of 8-byte fragments", syn6.Fragments(8)[1], fragDrop, fragDrop},
		{"tcp6 fragment header after two headers, 8 bytes", syn6Behind.Fragments(8)[0], fragDrop, fragDrop},
		{"tcp6 fragment header after two headers, 16 bytes", syn6Behind.Fragments(16)[0], passed, passed},
		{"tcp6 fragment header after two headers, later", syn6Behind.Fragments(16)[1], passed, passed},
		{"udp6 later fragment after hop-by-hop", laterFragment(udp6Later, 3), passed, passed},
		{"later fragment of an options header", laterFragment(laterExt, 3), passed, passed},
		{"ipv6 atomic fragment", atomic.Bytes(), passed, passed},
		{"ipv6 first fragment cut inside its chain", cutChain, fragDrop, fragDrop},
		{"ipv6 unfragmented cut inside its chain", netlab.Truncate(cutUnfragmented.Bytes(), cutUnfragmented.L4Offset()-4), malformed, malformed},
		{"ipv6 six headers are walked", sixHeaders.Bytes(), passed, passed},
		{"ipv6 seven destination options", longChain.Bytes(), verdict{xdpDrop, ReasonHeaderChain}, malformed},
		{"ipv6 first fragment with a long chain", longChainFrag.Bytes(), verdict{xdpDrop, ReasonHeaderChain}, malformed},
	}
	for _, mode := range []LongChains{LongChainsDrop, LongChainsCharge} {
		st := noLimits()
		st.LongChains = mode
		s := newTestShield(t, st)
		put(t, s, Blocklist, time.Time{}, "192.0.2.66", "2001:db8:bad::66")
		rules := s.testRules(t)
		for _, tc := range tests {
			t.Run(string(mode)+"/"+tc.name, func(t *testing.T) {
				want := tc.drop
				if mode == LongChainsCharge {
					want = tc.charged
				}
				ret, reason, monitored := run(t, s, tc.frame)
				if ret != want.ret || reason != want.reason || monitored {
					t.Errorf("got %d %s (monitored %v), want %d %s", ret, reason, monitored, want.ret, want.reason)
				}
				if r, why := referenceWith(tc.frame, rules, testNow, mode == LongChainsCharge); r != ret || why != reason {
					t.Errorf("reference classifier says %d %s", r, why)
				}
			})
		}
		// The lists still come first: a blocked source's fragments count as blocked.
		blocked4 := netlab.TCPSyn4("192.0.2.66", dst4)
		blocked6 := netlab.TCPSyn6("2001:db8:bad::66", dst6)
		blocked6.IPv6ExtHeaders = dstOptsChain(7)
		for _, f := range [][]byte{blocked4.Fragments(8)[0], blocked6.Bytes()} {
			if ret, reason, _ := run(t, s, f); ret != xdpDrop || reason != ReasonBlockedExact {
				t.Errorf("%s: blocked source's packet: %d %s", mode, ret, reason)
			}
		}
	}
}

// TestFragmentsChargedToBuckets floods each bucket with packets that hide
// or lack their L4 header and checks they are limited as the protocol's
// unfragmented packets are.
func TestFragmentsChargedToBuckets(t *testing.T) {
	st := noLimits()
	st.SYN = Bucket{PPS: 10, Burst: 3}
	st.UDP = Bucket{PPS: 10, Burst: 4}
	st.ICMP = Bucket{PPS: 10, Burst: 2}
	st.AutoBlockFactor = 1000 // the limiter, not the automatic block
	syn6Behind := netlab.TCPSyn6("2001:db8:2::1", dst6)
	syn6Behind.IPv6ExtHeaders = []netlab.ExtHeader{hopByHop, dstOpts}
	udp6 := netlab.UDP6("2001:db8:3::1", dst6)
	udp6.IPv6ExtHeaders = []netlab.ExtHeader{dstOpts}
	longChain := netlab.TCPSyn6("2001:db8:4::1", dst6)
	longChain.IPv6ExtHeaders = dstOptsChain(7)

	for _, tc := range []struct {
		name   string
		mode   LongChains
		frame  []byte
		burst  int
		pass   Reason // what the packets within the burst count as
		reason Reason // and what the rest count as
	}{
		{"tcp4 16-byte first fragments are SYNs", LongChainsDrop, netlab.TCPSyn4("192.0.2.1", dst4).Fragments(16)[0], 3, ReasonPassed, ReasonRateSYN},
		{"tcp4 later fragments use the SYN bucket", LongChainsDrop, laterFragment(netlab.TCPSyn4("192.0.2.2", dst4), 9), 3, ReasonPassed, ReasonRateSYN},
		{"udp4 later fragments use the UDP bucket", LongChainsDrop, laterFragment(netlab.UDP4("192.0.2.3", dst4), 9), 4, ReasonPassed, ReasonRateUDP},
		{"icmp4 later fragments use the ICMP bucket", LongChainsDrop, laterFragment(netlab.ICMPEcho4("192.0.2.4", dst4), 9), 2, ReasonPassed, ReasonRateICMP},
		{"tcp6 first fragments behind two headers", LongChainsDrop, syn6Behind.Fragments(16)[0], 3, ReasonPassed, ReasonRateSYN},
		{"udp6 later fragments", LongChainsDrop, laterFragment(udp6, 9), 4, ReasonPassed, ReasonRateUDP},
		{"long chains charged to the SYN bucket", LongChainsCharge, longChain.Bytes(), 3, ReasonMalformed, ReasonRateSYN},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := st
			st.LongChains = tc.mode
			s := newTestShield(t, st)
			for i := range tc.burst + 5 {
				want := tc.pass
				if i >= tc.burst {
					want = tc.reason
				}
				if _, reason, _ := run(t, s, tc.frame); reason != want {
					t.Fatalf("packet %d: %s, want %s", i, reason, want)
				}
			}
		})
	}
}

// TestFragmentRulesInMonitorMode checks that monitor mode counts what the
// fragment and chain rules would drop and drops nothing, and that the
// long_header_chains setting changes at runtime.
func TestFragmentRulesInMonitorMode(t *testing.T) {
	st := noLimits()
	st.Mode = ModeMonitor
	s := newTestShield(t, st)
	longChain := netlab.TCPSyn6("2001:db8::1", dst6)
	longChain.IPv6ExtHeaders = dstOptsChain(7)
	for _, tc := range []struct {
		frame  []byte
		reason Reason
	}{
		{netlab.TCPSyn4("192.0.2.1", dst4).Fragments(8)[0], ReasonFragment},
		{laterFragment(netlab.TCPSyn4("192.0.2.1", dst4), 1), ReasonFragment},
		{longChain.Bytes(), ReasonHeaderChain},
	} {
		if ret, reason, monitored := run(t, s, tc.frame); ret != xdpPass || reason != tc.reason || !monitored {
			t.Errorf("monitor mode: got %d %s monitored=%v, want a monitored %s", ret, reason, monitored, tc.reason)
		}
	}
	st.Mode = ModeEnforce
	st.LongChains = LongChainsCharge
	if err := s.SetSettings(st); err != nil {
		t.Fatal(err)
	}
	if got := s.Settings().LongChains; got != LongChainsCharge {
		t.Errorf("settings read back long_header_chains %q", got)
	}
	if ret, reason, _ := run(t, s, longChain.Bytes()); ret != xdpPass || reason != ReasonMalformed {
		t.Errorf("charge (no SYN limit): got %d %s", ret, reason)
	}
	st.LongChains = LongChainsDrop
	if err := s.SetSettings(st); err != nil {
		t.Fatal(err)
	}
	if ret, reason, _ := run(t, s, longChain.Bytes()); ret != xdpDrop || reason != ReasonHeaderChain {
		t.Errorf("back to drop: got %d %s", ret, reason)
	}
	st.LongChains = "maybe"
	if err := s.SetSettings(st); err == nil {
		t.Error("long_header_chains \"maybe\" accepted")
	}
	if got := s.Settings().LongChains; got != LongChainsDrop {
		t.Errorf("a refused setting changed long_header_chains to %q", got)
	}
}
