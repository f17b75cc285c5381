//go:build linux

package shield

import (
	"net/netip"
	"testing"

	"github.com/aegis-edge/aegis/internal/netlab"
)

// floodVerdicts sends n copies of frame and counts the reasons.
func floodVerdicts(t *testing.T, s *Shield, frame []byte, n int) map[Reason]int {
	t.Helper()
	counts := map[Reason]int{}
	for range n {
		_, reason, _ := run(t, s, frame)
		counts[reason]++
	}
	return counts
}

// TestManagementNeverAutoBlocked floods from management addresses, as a
// spoofed flood would, and checks they are rate limited but never blocked
// automatically, while the same flood from any other source is.
func TestManagementNeverAutoBlocked(t *testing.T) {
	st := noLimits()
	st.UDP = Bucket{PPS: 5, Burst: 5}
	st.AutoBlockFactor = 4 // more than 20 UDP packets in a second
	st.IPv6PrefixLen = 64
	for _, tc := range []struct {
		name    string
		mgmt    []string
		flooder string // the flood's source
		blocked string // the source prefix an automatic block would cover
	}{
		{"ipv4 address", []string{"192.0.2.40/32"}, "192.0.2.40", "192.0.2.40/32"},
		{"ipv4 cidr", []string{"198.18.0.0/15"}, "198.19.7.9", "198.19.7.9/32"},
		{"ipv6 address", []string{"2001:db8:40::5/128"}, "2001:db8:40::5", "2001:db8:40::/64"},
		// Sources are limited by /64: a flood from a neighbour of the
		// management address would block the management address too.
		{"ipv6 neighbour in the same /64", []string{"2001:db8:40::5/128"}, "2001:db8:40::99", "2001:db8:40::/64"},
		{"ipv6 cidr", []string{"2001:db8:40::/48"}, "2001:db8:40:7::1", "2001:db8:40:7::/64"},
		{"ipv6 cidr wider than the source prefix", []string{"2001:db8:40::/56", "192.0.2.1/32"}, "2001:db8:40:ff::1", "2001:db8:40:ff::/64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestShield(t, st)
			var prefixes []netip.Prefix
			for _, m := range tc.mgmt {
				prefixes = append(prefixes, netip.MustParsePrefix(m))
			}
			if err := s.SetManagement(prefixes); err != nil {
				t.Fatal(err)
			}
			flood := udpFrom(netip.MustParseAddr(tc.flooder))
			counts := floodVerdicts(t, s, flood, 200)
			if counts[ReasonAutoBlocked] != 0 || counts[ReasonPassed] != 5 || counts[ReasonRateUDP] != 195 {
				t.Fatalf("flood from management: %v, want 5 passed and 195 rate_udp", counts)
			}
			if blocks, err := s.AutoBlocks(); err != nil || len(blocks) != 0 {
				t.Fatalf("auto blocks %v, %v", blocks, err)
			}
			// Other traffic from the source still passes.
			var syn netlab.Packet
			if netip.MustParseAddr(tc.flooder).Is4() {
				syn = netlab.TCPSyn4(tc.flooder, dst4)
			} else {
				syn = netlab.TCPSyn6(tc.flooder, dst6)
			}
			if ret, reason, _ := run(t, s, syn.Bytes()); ret != xdpPass {
				t.Errorf("tcp from the management source after its flood: %d %s", ret, reason)
			}

			// Without the management entry the same flood blocks the source.
			if err := s.SetManagement(nil); err != nil {
				t.Fatal(err)
			}
			if err := s.setClock(testNow + uint64(2e9)); err != nil {
				t.Fatal(err)
			}
			counts = floodVerdicts(t, s, flood, 200)
			if counts[ReasonAutoBlocked] == 0 {
				t.Fatalf("flood from an ordinary source was not blocked: %v", counts)
			}
			blocks, err := s.AutoBlocks()
			if err != nil || len(blocks) != 1 || blocks[0].Source.String() != tc.blocked {
				t.Fatalf("auto blocks %v, %v; want %s", blocks, err, tc.blocked)
			}
			// Declaring it a management address lifts the block at once.
			if err := s.SetManagement(prefixes); err != nil {
				t.Fatal(err)
			}
			if blocks, err := s.AutoBlocks(); err != nil || len(blocks) != 0 {
				t.Fatalf("block on a management source kept: %v, %v", blocks, err)
			}
			if ret, reason, _ := run(t, s, syn.Bytes()); ret != xdpPass {
				t.Errorf("tcp after the block was lifted: %d %s", ret, reason)
			}
		})
	}
}

// TestManagementFollowsSourcePrefix checks the management entries follow
// the source prefix length: with IPv4 sources grouped by /24, a flood from a
// neighbour of a management address must not block the /24.
func TestManagementFollowsSourcePrefix(t *testing.T) {
	st := noLimits()
	st.UDP = Bucket{PPS: 5, Burst: 5}
	st.AutoBlockFactor = 4
	s := newTestShield(t, st)
	if err := s.SetManagement([]netip.Prefix{netip.MustParsePrefix("192.0.2.40/32")}); err != nil {
		t.Fatal(err)
	}
	neighbour := udpFrom(netip.MustParseAddr("192.0.2.41"))
	if c := floodVerdicts(t, s, neighbour, 50); c[ReasonAutoBlocked] == 0 {
		t.Fatalf("by /32, the neighbour is an ordinary source and must be blocked: %v", c)
	}
	if err := s.Unblock(netip.MustParsePrefix("192.0.2.41/32")); err != nil {
		t.Fatal(err)
	}
	st.IPv4PrefixLen = 24
	if err := s.SetSettings(st); err != nil {
		t.Fatal(err)
	}
	if c := floodVerdicts(t, s, neighbour, 50); c[ReasonAutoBlocked] != 0 {
		t.Fatalf("by /24, the neighbour's flood blocked the management address's /24: %v", c)
	}
	if got := s.Management(); len(got) != 1 || got[0].String() != "192.0.2.40/32" {
		t.Errorf("Management() = %v", got)
	}
}

func TestSetManagementRefusesBadInput(t *testing.T) {
	s := newTestShield(t, noLimits())
	good := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	if err := s.SetManagement(good); err != nil {
		t.Fatal(err)
	}
	too := make([]netip.Prefix, ManagementEntries+1)
	for i := range too {
		too[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 32)
	}
	for name, bad := range map[string][]netip.Prefix{"invalid": {{}}, "too many": too} {
		if err := s.SetManagement(bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if got := s.Management(); len(got) != 1 || got[0] != good[0] {
			t.Errorf("%s: a refused set changed the prefixes to %v", name, got)
		}
	}
}
