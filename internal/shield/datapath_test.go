//go:build linux

package shield

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/netlab"
	tu "github.com/aegis-edge/aegis/internal/testutil"
)

const dst4, dst6 = "198.51.100.1", "2001:db8:ffff::1"

func TestDataPathVerdicts(t *testing.T) {
	s := newTestShield(t, noLimits())
	put(t, s, Blocklist, time.Time{}, "192.0.2.66", "203.0.113.0/24", "2001:db8:bad::66", "2001:db8:dead::/48",
		"192.0.2.77", "10.0.0.0/8")
	put(t, s, Allowlist, time.Time{}, "192.0.2.77", "10.1.0.0/16", "2001:db8:dead:1::/64")

	udp4 := func(src string) netlab.Packet { return netlab.UDP4(src, dst4) }
	udp6 := func(src string) netlab.Packet { return netlab.UDP6(src, dst6) }
	withVLAN := func(p netlab.Packet, tags ...uint16) netlab.Packet { p.VLANs = tags; return p }
	withOpts := func(p netlab.Packet) netlab.Packet { p.IPv4Options = []byte{1, 1, 1, 1, 1, 1, 1, 0}; return p }
	frag := func(p netlab.Packet, off uint16) netlab.Packet { p.FragOffset = off; p.MoreFragments = true; return p }
	ext := func(p netlab.Packet, hs ...netlab.ExtHeader) netlab.Packet { p.IPv6ExtHeaders = hs; return p }
	hbh, rt, dopt := netlab.ExtHeader{Type: netlab.ProtoHopByHop}, netlab.ExtHeader{Type: netlab.ProtoRouting, Len: 2}, netlab.ExtHeader{Type: netlab.ProtoDstOpts, Len: 1}

	badIHL := udp4("192.0.2.66").Bytes()
	badIHL[netlab.EthernetHeaderLen] = 0x44 // IHL 4
	longIHL := udp4("192.0.2.66").Bytes()
	longIHL[netlab.EthernetHeaderLen] = 0x4f // IHL 15: 60 bytes, past the end
	badVersion := udp6("2001:db8:bad::66").Bytes()
	badVersion[netlab.EthernetHeaderLen] = 0x40

	tests := []struct {
		name   string
		frame  []byte
		ret    uint32
		reason Reason
	}{
		{"udp4 clean source", udp4("192.0.2.1").Bytes(), xdpPass, ReasonPassed},
		{"udp4 blocked exact", udp4("192.0.2.66").Bytes(), xdpDrop, ReasonBlockedExact},
		{"tcp4 blocked prefix", netlab.TCPSyn4("203.0.113.9", dst4).Bytes(), xdpDrop, ReasonBlockedPrefix},
		{"icmp4 blocked prefix /8", netlab.ICMPEcho4("10.200.0.1", dst4).Bytes(), xdpDrop, ReasonBlockedPrefix},
		{"allowlisted exact beats blocked exact", udp4("192.0.2.77").Bytes(), xdpPass, ReasonAllowlisted},
		{"allowlisted prefix beats blocked prefix", udp4("10.1.2.3").Bytes(), xdpPass, ReasonAllowlisted},
		{"udp6 clean", udp6("2001:db8::1").Bytes(), xdpPass, ReasonPassed},
		{"udp6 blocked exact", udp6("2001:db8:bad::66").Bytes(), xdpDrop, ReasonBlockedExact},
		{"tcp6 blocked prefix", netlab.TCPSyn6("2001:db8:dead:2::5", dst6).Bytes(), xdpDrop, ReasonBlockedPrefix},
		{"icmp6 allowlisted /64 inside blocked /48", netlab.ICMPEcho6("2001:db8:dead:1::5", dst6).Bytes(), xdpPass, ReasonAllowlisted},
		{"one vlan tag", withVLAN(udp4("192.0.2.66"), 10).Bytes(), xdpDrop, ReasonBlockedExact},
		{"two vlan tags", withVLAN(udp6("2001:db8:bad::66"), 10, 20).Bytes(), xdpDrop, ReasonBlockedExact},
		{"three vlan tags are not walked", func() []byte {
			b := withVLAN(udp4("192.0.2.66"), 10, 20).Bytes()
			tag := []byte{0x81, 0x00, 0x00, 0x1e}
			out := append([]byte{}, b[:12]...)
			out = append(out, tag...)
			return append(out, b[12:]...)
		}(), xdpPass, ReasonMalformed},
		{"ipv4 options", withOpts(udp4("192.0.2.66")).Bytes(), xdpDrop, ReasonBlockedExact},
		{"ipv4 options clean", withOpts(udp4("192.0.2.1")).Bytes(), xdpPass, ReasonPassed},
		{"ipv4 non-first fragment blocked", frag(udp4("192.0.2.66"), 100).Bytes(), xdpDrop, ReasonBlockedExact},
		{"ipv4 non-first fragment clean", frag(udp4("192.0.2.1"), 100).Bytes(), xdpPass, ReasonPassed},
		{"ipv4 first fragment", frag(udp4("192.0.2.1"), 0).Bytes(), xdpPass, ReasonPassed},
		{"ipv6 extension headers blocked", ext(udp6("2001:db8:bad::66"), hbh, rt, dopt).Bytes(), xdpDrop, ReasonBlockedExact},
		{"ipv6 extension headers clean", ext(netlab.TCPSyn6("2001:db8::1", dst6), hbh, rt, dopt).Bytes(), xdpPass, ReasonPassed},
		{"ipv6 non-first fragment", frag(udp6("2001:db8::1"), 10).Bytes(), xdpPass, ReasonPassed},
		{"ipv6 too many extension headers still filtered", ext(udp6("2001:db8:bad::66"), hbh, dopt, dopt, dopt, dopt, dopt, dopt, dopt).Bytes(), xdpDrop, ReasonBlockedExact},
		{"ipv6 too many extension headers clean", ext(udp6("2001:db8::1"), hbh, dopt, dopt, dopt, dopt, dopt, dopt, dopt).Bytes(), xdpDrop, ReasonHeaderChain},
		{"ipv6 truncated extension header", netlab.Truncate(ext(udp6("2001:db8::1"), rt).Bytes(), netlab.EthernetHeaderLen+netlab.IPv6HeaderLen+1), xdpPass, ReasonMalformed},
		{"arp is not ip", netlab.Packet{EtherType: netlab.EtherTypeARP, Payload: make([]byte, 28)}.Bytes(), xdpPass, ReasonNonIP},
		// BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header,
		// so the program's own check for them cannot be driven from here.
		{"truncated vlan tag", netlab.Truncate(withVLAN(udp4("192.0.2.66"), 10).Bytes(), 16), xdpPass, ReasonMalformed},
		{"truncated ipv4 header", netlab.Truncate(udp4("192.0.2.66").Bytes(), netlab.EthernetHeaderLen+19), xdpPass, ReasonMalformed},
		{"ipv4 ihl below 5", badIHL, xdpPass, ReasonMalformed},
		{"ipv4 ihl past the end", longIHL, xdpPass, ReasonMalformed},
		{"ip version mismatch", badVersion, xdpPass, ReasonMalformed},
		{"truncated ipv6 header", netlab.Truncate(udp6("2001:db8:bad::66").Bytes(), netlab.EthernetHeaderLen+39), xdpPass, ReasonMalformed},
		{"truncated tcp header from clean source", netlab.Truncate(netlab.TCPSyn4("192.0.2.1", dst4).Bytes(), netlab.EthernetHeaderLen+netlab.IPv4HeaderLen+10), xdpPass, ReasonMalformed},
		{"truncated tcp header from blocked source", netlab.Truncate(netlab.TCPSyn4("192.0.2.66", dst4).Bytes(), netlab.EthernetHeaderLen+netlab.IPv4HeaderLen+10), xdpDrop, ReasonBlockedExact},
		{"truncated udp6 header", netlab.Truncate(udp6("2001:db8::1").Bytes(), netlab.EthernetHeaderLen+netlab.IPv6HeaderLen+4), xdpPass, ReasonMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ret, reason, monitored := run(t, s, tc.frame)
			if ret != tc.ret || reason != tc.reason || monitored {
				t.Errorf("got verdict %d reason %s (monitored %v), want %d %s", ret, reason, monitored, tc.ret, tc.reason)
			}
			// The reference classifier must agree on every crafted frame.
			if wantRet, wantReason := reference(tc.frame, s.testRules(t), testNow); wantRet != ret || wantReason != reason {
				t.Errorf("reference classifier says %d %s", wantRet, wantReason)
			}
		})
	}
}

func TestDataPathExpiryAndHits(t *testing.T) {
	s := newTestShield(t, noLimits())
	wall := s.clock().wall
	put(t, s, Blocklist, wall.Add(-time.Second), "192.0.2.10", "2001:db8:10::/48")
	put(t, s, Blocklist, wall.Add(time.Hour), "192.0.2.11", "2001:db8:11::/48")

	for _, tc := range []struct {
		frame  []byte
		ret    uint32
		reason Reason
	}{
		{netlab.UDP4("192.0.2.10", dst4).Bytes(), xdpPass, ReasonPassed},
		{netlab.UDP6("2001:db8:10::1", dst6).Bytes(), xdpPass, ReasonPassed},
		{netlab.UDP4("192.0.2.11", dst4).Bytes(), xdpDrop, ReasonBlockedExact},
		{netlab.UDP6("2001:db8:11::1", dst6).Bytes(), xdpDrop, ReasonBlockedPrefix},
		{netlab.UDP6("2001:db8:11::2", dst6).Bytes(), xdpDrop, ReasonBlockedPrefix},
	} {
		if ret, reason, _ := run(t, s, tc.frame); ret != tc.ret || reason != tc.reason {
			t.Errorf("got %d %s, want %d %s", ret, reason, tc.ret, tc.reason)
		}
	}
	// Moving the clock past the expiry stops enforcement before any sweep.
	if err := s.setClock(testNow + uint64(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if ret, reason, _ := run(t, s, netlab.UDP4("192.0.2.11", dst4).Bytes()); ret != xdpPass || reason != ReasonPassed {
		t.Errorf("expired entry still enforced: %d %s", ret, reason)
	}

	rules, err := s.Rules(Blocklist)
	if err != nil {
		t.Fatal(err)
	}
	hits := map[string]uint64{}
	for _, r := range rules {
		hits[r.Prefix.String()] = r.Hits
	}
	if hits["192.0.2.11/32"] != 1 || hits["2001:db8:11::/48"] != 2 || hits["192.0.2.10/32"] != 0 {
		t.Errorf("hit counters: %v", hits)
	}
}

func TestDataPathMonitorMode(t *testing.T) {
	st := noLimits()
	st.Mode = ModeMonitor
	s := newTestShield(t, st)
	put(t, s, Blocklist, time.Time{}, "192.0.2.66")
	ret, reason, monitored := run(t, s, netlab.UDP4("192.0.2.66", dst4).Bytes())
	if ret != xdpPass || reason != ReasonBlockedExact || !monitored {
		t.Fatalf("monitor mode: got %d %s monitored=%v", ret, reason, monitored)
	}
	st.Mode = ModeEnforce
	if err := s.SetSettings(st); err != nil {
		t.Fatal(err)
	}
	if ret, reason, monitored := run(t, s, netlab.UDP4("192.0.2.66", dst4).Bytes()); ret != xdpDrop || reason != ReasonBlockedExact || monitored {
		t.Fatalf("after switching to enforce: got %d %s monitored=%v", ret, reason, monitored)
	}
}

func TestDataPathRateLimits(t *testing.T) {
	st := noLimits()
	st.SYN = Bucket{PPS: 10, Burst: 3}
	st.UDP = Bucket{PPS: 100, Burst: 5}
	st.ICMP = Bucket{PPS: 1, Burst: 2}
	st.AutoBlockFactor = 1000 // out of the way here
	s := newTestShield(t, st)

	type step struct {
		frame  []byte
		ret    uint32
		reason Reason
	}
	syn := netlab.TCPSyn4("192.0.2.20", dst4).Bytes()
	synAck := func() []byte { p := netlab.TCPSyn4("192.0.2.20", dst4); p.TCPFlags |= netlab.TCPAck; return p.Bytes() }()
	other := netlab.TCPSyn4("192.0.2.21", dst4).Bytes()
	var steps []step
	for range 3 {
		steps = append(steps, step{syn, xdpPass, ReasonPassed})
	}
	steps = append(steps,
		step{syn, xdpDrop, ReasonRateSYN},
		step{synAck, xdpPass, ReasonPassed}, // only SYN without ACK is limited
		step{other, xdpPass, ReasonPassed},  // buckets are per source
	)
	for range 2 {
		steps = append(steps, step{netlab.ICMPEcho6("2001:db8:1:2::1", dst6).Bytes(), xdpPass, ReasonPassed})
	}
	// A different address in the same /64 shares the bucket.
	steps = append(steps, step{netlab.ICMPEcho6("2001:db8:1:2::99", dst6).Bytes(), xdpDrop, ReasonRateICMP},
		step{netlab.ICMPEcho6("2001:db8:1:3::1", dst6).Bytes(), xdpPass, ReasonPassed})
	for range 5 {
		steps = append(steps, step{netlab.UDP4("192.0.2.30", dst4).Bytes(), xdpPass, ReasonPassed})
	}
	steps = append(steps, step{netlab.UDP4("192.0.2.30", dst4).Bytes(), xdpDrop, ReasonRateUDP})
	for i, st := range steps {
		if ret, reason, _ := run(t, s, st.frame); ret != st.ret || reason != st.reason {
			t.Errorf("step %d: got %d %s, want %d %s", i, ret, reason, st.ret, st.reason)
		}
	}
	// One SYN interval later exactly one more SYN fits.
	if err := s.setClock(testNow + uint64(100*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if ret, reason, _ := run(t, s, syn); ret != xdpPass {
		t.Errorf("after refill: got %d %s", ret, reason)
	}
	if ret, reason, _ := run(t, s, syn); ret != xdpDrop || reason != ReasonRateSYN {
		t.Errorf("after refill, second: got %d %s", ret, reason)
	}
	// Thresholds change at runtime: lifting the SYN limit lets it through.
	st.SYN = Bucket{}
	if err := s.SetSettings(st); err != nil {
		t.Fatal(err)
	}
	if ret, reason, _ := run(t, s, syn); ret != xdpPass {
		t.Errorf("limit lifted: got %d %s", ret, reason)
	}
}

func TestDataPathAutoBlock(t *testing.T) {
	st := noLimits()
	st.UDP = Bucket{PPS: 5, Burst: 5}
	st.AutoBlockFactor = 4 // more than 20 UDP packets in a second
	st.AutoBlockTTL = time.Minute
	s := newTestShield(t, st)
	flood := netlab.UDP4("192.0.2.40", dst4).Bytes()

	counts := map[Reason]int{}
	for range 21 {
		_, reason, _ := run(t, s, flood)
		counts[reason]++
	}
	if counts[ReasonPassed] != 5 || counts[ReasonRateUDP] != 15 || counts[ReasonAutoBlocked] != 1 {
		t.Fatalf("flood verdicts: %v", counts)
	}
	// Blocked for every kind of traffic, not just the flooding class.
	if ret, reason, _ := run(t, s, netlab.TCPSyn4("192.0.2.40", dst4).Bytes()); ret != xdpDrop || reason != ReasonAutoBlocked {
		t.Errorf("tcp from auto-blocked source: %d %s", ret, reason)
	}
	blocks, err := s.AutoBlocks()
	if err != nil || len(blocks) != 1 || blocks[0].Source.String() != "192.0.2.40/32" {
		t.Fatalf("auto blocks: %v %v", blocks, err)
	}
	// The TTL ends the block.
	if err := s.setClock(testNow + uint64(61*time.Second)); err != nil {
		t.Fatal(err)
	}
	if ret, reason, _ := run(t, s, flood); ret != xdpPass {
		t.Errorf("after ttl: %d %s", ret, reason)
	}
}

// TestAutoBlockEvents checks that automatic blocks reach userspace through
// the ring buffer and, forced, through the perf event array that kernels
// before 5.8 use instead.
func TestAutoBlockEvents(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{{"ringbuf", Options{}}, {"perf", Options{PerfEvents: true}}} {
		t.Run(tc.name, func(t *testing.T) {
			st := noLimits()
			st.UDP = Bucket{PPS: 5, Burst: 5}
			st.AutoBlockFactor = 4
			st.AutoBlockTTL = time.Minute
			s := newTestShieldWith(t, tc.opts, st)
			ctx, cancel := context.WithCancel(t.Context())
			events := make(chan AutoBlock, 4)
			done := make(chan error, 1)
			go func() { done <- s.ReadEvents(ctx, func(ev AutoBlock) { events <- ev }) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("ReadEvents: %v", err)
				}
			}()
			// The reader may still be setting up, and a perf event without a
			// reader is lost: flood from fresh sources until one is reported.
			for i := range 50 {
				src := fmt.Sprintf("192.0.2.%d", 100+i)
				flood := netlab.UDP4(src, dst4).Bytes()
				for range 21 {
					run(t, s, flood)
				}
				select {
				case ev := <-events:
					if ev.Source.String() != src+"/32" || ev.Class != "udp" || ev.WindowPkts != 21 || ev.Monitor {
						t.Errorf("event = %+v, want an auto-block of %s", ev, src)
					}
					return
				case <-time.After(tu.Scale(100 * time.Millisecond)):
				}
			}
			t.Fatal("no auto-block event")
		})
	}
}
