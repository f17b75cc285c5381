package shield

import (
	"testing"
	"time"

	tu "github.com/aegis-edge/aegis/internal/testutil"
)

// FuzzDataPath is a differential fuzz target: every frame goes through the
// XDP program and through the Go reference classifier, which must agree on
// the verdict and the reason. Rate limits are off, so verdicts do not depend
// on history.
func FuzzDataPath(f *testing.F) {
	seeds := []tu.Packet{
		tu.UDP4("192.0.2.66", dst4), tu.TCPSyn4("203.0.113.9", dst4), tu.ICMPEcho4("10.1.2.3", dst4),
		tu.UDP6("2001:db8:bad::66", dst6), tu.TCPSyn6("2001:db8:dead:1::5", dst6), tu.ICMPEcho6("2001:db8::1", dst6),
		{Src: tu.UDP4("192.0.2.66", dst4).Src, Dst: tu.UDP4("192.0.2.66", dst4).Dst, Proto: tu.ProtoUDP, VLANs: []uint16{1, 2}, IPv4Options: []byte{1, 1, 1, 0}},
		{Src: tu.UDP6("2001:db8::1", dst6).Src, Dst: tu.UDP6("2001:db8::1", dst6).Dst, Proto: tu.ProtoTCP, TCPFlags: tu.TCPSyn,
			IPv6ExtHeaders: []tu.ExtHeader{{Type: tu.ProtoHopByHop}, {Type: tu.ProtoRouting, Len: 1}, {Type: tu.ProtoFragment}}, FragOffset: 3},
		{EtherType: tu.EtherTypeARP, Payload: make([]byte, 28)},
	}
	for _, p := range seeds {
		f.Add(p.Bytes())
	}
	s := newTestShield(f, noLimits())
	put(f, s, Blocklist, time.Time{}, "192.0.2.66", "203.0.113.0/24", "2001:db8:bad::66", "2001:db8:dead::/48", "10.0.0.0/8")
	put(f, s, Blocklist, s.clock().wall.Add(-time.Minute), "192.0.2.99", "2001:db8:99::/48")
	put(f, s, Allowlist, time.Time{}, "10.1.0.0/16", "2001:db8:dead:1::/64")
	rules := s.testRules(f)
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < 14 || len(frame) > 3000 {
			return // BPF_PROG_TEST_RUN takes whole Ethernet frames that fit one page
		}
		ret, reason, _ := run(t, s, frame)
		wantRet, wantReason := reference(frame, rules, testNow)
		if ret != wantRet || reason != wantReason {
			t.Fatalf("program says %d %s, reference says %d %s for % x", ret, reason, wantRet, wantReason, frame)
		}
	})
}
