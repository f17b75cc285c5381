package lab

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
)

// onesSum folds b into a 16-bit ones' complement sum, written separately
// from the code under test so the two can disagree.
func onesSum(parts ...[]byte) uint16 {
	var s uint64
	for _, b := range parts {
		for i := 0; i < len(b); i++ {
			if i%2 == 0 {
				s += uint64(b[i]) << 8
			} else {
				s += uint64(b[i])
			}
		}
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

func TestFrameChecksumsVerify(t *testing.T) {
	mac1, mac2 := net.HardwareAddr{2, 0, 0, 0, 0, 1}, net.HardwareAddr{2, 0, 0, 0, 0, 2}
	tests := []struct {
		name string
		f    frame
	}{
		{"syn", frame{proto: protoTCP, srcPort: 40000, dstPort: 80, seq: 0xdeadbeef}},
		{"udp", frame{proto: protoUDP, srcPort: 1234, dstPort: 9, payload: 64}},
		{"udp odd payload", frame{proto: protoUDP, srcPort: 65535, dstPort: 53, payload: 33}},
		{"udp empty", frame{proto: protoUDP, srcPort: 1, dstPort: 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.f
			f.srcMAC, f.dstMAC = mac1, mac2
			f.src, f.dst = netip.MustParseAddr("192.0.2.130"), netip.MustParseAddr("192.0.2.1")
			b := f.appendTo([]byte{0xff}) // appends: what is there stays
			if b[0] != 0xff {
				t.Fatal("appendTo overwrote the buffer's start")
			}
			b = b[1:]
			if got := net.HardwareAddr(b[0:6]); got.String() != mac2.String() {
				t.Errorf("destination MAC %v", got)
			}
			if et := binary.BigEndian.Uint16(b[12:]); et != 0x0800 {
				t.Errorf("ethertype %#x", et)
			}
			ip := b[ethHeaderLen:]
			if ip[0] != 0x45 || ip[9] != f.proto {
				t.Fatalf("IPv4 header %x", ip[:20])
			}
			if total := int(binary.BigEndian.Uint16(ip[2:])); total != len(ip) {
				t.Errorf("IPv4 total length %d, packet has %d", total, len(ip))
			}
			if s := onesSum(ip[:ipv4HeaderLen]); s != 0xffff {
				t.Errorf("IPv4 header checksum does not verify (sum %#x)", s)
			}
			if netip.AddrFrom4([4]byte(ip[12:16])) != f.src || netip.AddrFrom4([4]byte(ip[16:20])) != f.dst {
				t.Errorf("addresses %v -> %v", ip[12:16], ip[16:20])
			}
			l4 := ip[ipv4HeaderLen:]
			pseudo := make([]byte, 12)
			copy(pseudo, ip[12:20])
			pseudo[9] = f.proto
			binary.BigEndian.PutUint16(pseudo[10:], uint16(len(l4)))
			if s := onesSum(pseudo, l4); s != 0xffff {
				t.Errorf("L4 checksum does not verify (sum %#x)", s)
			}
			if sp, dp := binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:]); sp != f.srcPort || dp != f.dstPort {
				t.Errorf("ports %d -> %d", sp, dp)
			}
			switch f.proto {
			case protoTCP:
				if len(l4) != tcpHeaderLen || l4[13] != tcpFlagSYN || l4[12]>>4 != 5 {
					t.Errorf("TCP header %x", l4)
				}
				if seq := binary.BigEndian.Uint32(l4[4:]); seq != f.seq {
					t.Errorf("seq %#x", seq)
				}
			case protoUDP:
				if n := int(binary.BigEndian.Uint16(l4[4:])); n != len(l4) || n != udpHeaderLen+f.payload {
					t.Errorf("UDP length %d, segment %d", n, len(l4))
				}
			}
		})
	}
}
