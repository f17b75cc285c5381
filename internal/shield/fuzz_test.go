//go:build linux

package shield

import (
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/netlab"
)

// FuzzDataPath is a differential fuzz target: every frame goes through the
// XDP program and through the Go reference classifier, which must agree on
// the verdict and the reason, under both long_header_chains settings. Rate
// limits are off, so verdicts do not depend on history.
func FuzzDataPath(f *testing.F) {
	seeds := []netlab.Packet{
		netlab.UDP4("192.0.2.66", dst4), netlab.TCPSyn4("203.0.113.9", dst4), netlab.ICMPEcho4("10.1.2.3", dst4),
		netlab.UDP6("2001:db8:bad::66", dst6), netlab.TCPSyn6("2001:db8:dead:1::5", dst6), netlab.ICMPEcho6("2001:db8::1", dst6),
		{Src: netlab.UDP4("192.0.2.66", dst4).Src, Dst: netlab.UDP4("192.0.2.66", dst4).Dst, Proto: netlab.ProtoUDP, VLANs: []uint16{1, 2}, IPv4Options: []byte{1, 1, 1, 0}},
		{Src: netlab.UDP6("2001:db8::1", dst6).Src, Dst: netlab.UDP6("2001:db8::1", dst6).Dst, Proto: netlab.ProtoTCP, TCPFlags: netlab.TCPSyn,
			IPv6ExtHeaders: []netlab.ExtHeader{{Type: netlab.ProtoHopByHop}, {Type: netlab.ProtoRouting, Len: 1}, {Type: netlab.ProtoFragment}}, FragOffset: 3},
		{EtherType: netlab.EtherTypeARP, Payload: make([]byte, 28)},
		// Fragments and header chains: a later fragment at offset 1, a
		// long chain, a chain behind a first fragment.
		{Src: netlab.UDP4("192.0.2.1", dst4).Src, Dst: netlab.UDP4("192.0.2.1", dst4).Dst, Proto: netlab.ProtoTCP, FragOffset: 1, MoreFragments: true, Payload: make([]byte, 8)},
		{Src: netlab.UDP6("2001:db8::1", dst6).Src, Dst: netlab.UDP6("2001:db8::1", dst6).Dst, Proto: netlab.ProtoTCP, TCPFlags: netlab.TCPSyn, IPv6ExtHeaders: dstOptsChain(7)},
		{Src: netlab.UDP6("2001:db8::1", dst6).Src, Dst: netlab.UDP6("2001:db8::1", dst6).Dst, Proto: netlab.ProtoUDP,
			IPv6ExtHeaders: []netlab.ExtHeader{hopByHop, fragHdr, dstOpts}, MoreFragments: true},
	}
	for _, p := range seeds {
		f.Add(p.Bytes())
	}
	// First fragments of 8 and 16 bytes, IPv4 and IPv6 behind two headers.
	syn6 := netlab.TCPSyn6("2001:db8::1", dst6)
	syn6.IPv6ExtHeaders = []netlab.ExtHeader{hopByHop, dstOpts}
	for _, p := range []netlab.Packet{netlab.TCPSyn4("192.0.2.1", dst4), syn6} {
		for _, size := range []int{8, 16} {
			f.Add(p.Fragments(size)[0])
		}
	}
	f.Add(padded(netlab.TCPSyn4("192.0.2.1", dst4).Fragments(8)[0]))

	// One shield per long_header_chains setting; every frame goes through both.
	type target struct {
		s      *Shield
		rules  []refRule
		charge bool
	}
	var targets []target
	for _, mode := range []LongChains{LongChainsDrop, LongChainsCharge} {
		st := noLimits()
		st.LongChains = mode
		s := newTestShield(f, st)
		// Several lengths in one /16 and one IPv6 bucket, a prefix
		// shorter than /32 (it spans buckets) and expired prefixes
		// inside live ones: the lookup by length sees each.
		put(f, s, Blocklist, time.Time{}, "192.0.2.66", "203.0.113.0/24", "2001:db8:bad::66", "2001:db8:dead::/48", "10.0.0.0/8",
			"10.5.0.0/17", "10.5.128.0/25", "2001:d00::/24", "2001:db8:bad::/127", "2001:db8::/33",
			"240.0.0.0/6", "3000::/7") // lengths counted once for every bucket
		put(f, s, Blocklist, s.clock().wall.Add(-time.Minute), "192.0.2.99", "2001:db8:99::/48", "10.5.0.0/20", "2001:db8:dead:2::/64")
		put(f, s, Allowlist, time.Time{}, "10.1.0.0/16", "2001:db8:dead:1::/64")
		targets = append(targets, target{s, s.testRules(f), mode == LongChainsCharge})
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < 14 || len(frame) > 3000 {
			return // BPF_PROG_TEST_RUN takes whole Ethernet frames that fit one page
		}
		for _, tg := range targets {
			ret, reason, _ := run(t, tg.s, frame)
			wantRet, wantReason := referenceWith(frame, tg.rules, testNow, tg.charge)
			if ret != wantRet || reason != wantReason {
				t.Fatalf("program (charge %v) says %d %s, reference says %d %s for % x", tg.charge, ret, reason, wantRet, wantReason, frame)
			}
		}
	})
}
