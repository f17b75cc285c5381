package lab

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// IP protocols the flood sends.
const (
	protoTCP = 6
	protoUDP = 17
)

const (
	ethHeaderLen  = 14
	ipv4HeaderLen = 20
	tcpHeaderLen  = 20
	udpHeaderLen  = 8
	tcpFlagSYN    = 0x02
)

// frame describes one IPv4 packet the attacker sends.
type frame struct {
	srcMAC, dstMAC   net.HardwareAddr
	src, dst         netip.Addr // IPv4
	proto            uint8
	srcPort, dstPort uint16
	seq              uint32 // TCP
	payload          int    // UDP payload bytes (zeros)
}

// appendTo appends the Ethernet frame to b, with correct IPv4 and L4
// checksums so that packets the shield passes are taken by the edge's
// stack like real ones.
func (f frame) appendTo(b []byte) []byte {
	l4len := tcpHeaderLen
	if f.proto == protoUDP {
		l4len = udpHeaderLen + f.payload
	}
	b = append(b, f.dstMAC...)
	b = append(b, f.srcMAC...)
	b = binary.BigEndian.AppendUint16(b, 0x0800)

	ip := len(b)
	b = append(b, 0x45, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(ipv4HeaderLen+l4len))
	b = append(b, 0, 0, 0x40, 0, 64, f.proto, 0, 0) // id 0, DF, TTL 64, checksum later
	src, dst := f.src.As4(), f.dst.As4()
	b = append(b, src[:]...)
	b = append(b, dst[:]...)
	binary.BigEndian.PutUint16(b[ip+10:], checksum(b[ip:ip+ipv4HeaderLen], 0))

	l4 := len(b)
	b = binary.BigEndian.AppendUint16(b, f.srcPort)
	b = binary.BigEndian.AppendUint16(b, f.dstPort)
	csumAt := l4 + 6
	if f.proto == protoTCP {
		b = binary.BigEndian.AppendUint32(b, f.seq)
		b = append(b, 0, 0, 0, 0, tcpHeaderLen/4<<4, tcpFlagSYN)
		b = binary.BigEndian.AppendUint16(b, 64240) // window
		b = append(b, 0, 0, 0, 0)                   // checksum, urgent pointer
		csumAt = l4 + 16
	} else {
		b = binary.BigEndian.AppendUint16(b, uint16(l4len))
		b = append(b, 0, 0)
		b = append(b, make([]byte, f.payload)...)
	}
	// The pseudo-header: addresses, protocol and L4 length.
	pseudo := sum(b[ip+12:ip+20], 0) + uint32(f.proto) + uint32(l4len)
	c := checksum(b[l4:], pseudo)
	if f.proto == protoUDP && c == 0 {
		c = 0xffff // 0 means "no checksum" in UDP
	}
	binary.BigEndian.PutUint16(b[csumAt:], c)
	return b
}

// sum adds b as big-endian 16-bit words to acc, without folding.
func sum(b []byte, acc uint32) uint32 {
	for len(b) >= 2 {
		acc += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint32(b[0]) << 8
	}
	return acc
}

// checksum is the Internet checksum (RFC 1071) of b, starting from acc.
func checksum(b []byte, acc uint32) uint16 {
	acc = sum(b, acc)
	for acc>>16 != 0 {
		acc = acc&0xffff + acc>>16
	}
	return ^uint16(acc)
}
