package netlab

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"slices"
)

// EtherTypes that Packet writes.
const (
	EtherTypeIPv4  uint16 = 0x0800
	EtherTypeARP   uint16 = 0x0806
	EtherTypeVLAN  uint16 = 0x8100 // IEEE 802.1Q tag
	EtherTypeQinQ  uint16 = 0x88a8 // IEEE 802.1ad service tag
	EtherTypeIPv6  uint16 = 0x86dd
	EtherTypeLocal uint16 = 0x88b5 // IEEE local experimental; Packet's default without an IP layer
)

// IP protocol numbers (also IPv6 next-header values).
const (
	ProtoHopByHop uint8 = 0
	ProtoICMP     uint8 = 1
	ProtoTCP      uint8 = 6
	ProtoUDP      uint8 = 17
	ProtoRouting  uint8 = 43
	ProtoFragment uint8 = 44
	ProtoICMPv6   uint8 = 58
	ProtoNoNext   uint8 = 59
	ProtoDstOpts  uint8 = 60
)

// TCP header flags, for Packet.TCPFlags.
const (
	TCPFin uint8 = 0x01
	TCPSyn uint8 = 0x02
	TCPRst uint8 = 0x04
	TCPPsh uint8 = 0x08
	TCPAck uint8 = 0x10
	TCPUrg uint8 = 0x20
	TCPEce uint8 = 0x40
	TCPCwr uint8 = 0x80
)

// ICMP and ICMPv6 echo types.
const (
	ICMPEchoReply     uint8 = 0
	ICMPEchoRequest   uint8 = 8
	ICMPv6EchoRequest uint8 = 128
	ICMPv6EchoReply   uint8 = 129
)

// Header sizes.
const (
	EthernetHeaderLen = 14
	VLANTagLen        = 4
	IPv4HeaderLen     = 20 // without options
	IPv6HeaderLen     = 40
	TCPHeaderLen      = 20 // without options
	UDPHeaderLen      = 8
	ICMPHeaderLen     = 8 // type, code, checksum and the 4-byte rest of header
)

// Fixed field values that Packet writes.
const (
	DefaultTTL    = 64     // IPv4 TTL and IPv6 hop limit when Packet.TTL is 0
	PacketIPv4ID  = 0x4567 // IPv4 identification
	PacketFragID  = 0x89abcdef
	PacketTCPSeq  = 1000
	PacketTCPAck  = 2000 // written only when TCPAck is set
	PacketTCPWin  = 65535
	PacketICMPID  = 0x1234 // echo identifier (first half of ICMP rest of header)
	PacketICMPSeq = 1      // echo sequence number
)

// DefaultSrcMAC and DefaultDstMAC are the Ethernet addresses that Packet uses
// when SrcMAC or DstMAC is nil, and that testutil.NewVethPair gives ends A
// and B.
// Do not modify them.
var (
	DefaultSrcMAC = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x01}
	DefaultDstMAC = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x02}
)

// Packet describes an Ethernet frame to craft for tests. Bytes encodes it.
// The zero value is an Ethernet header with EtherTypeLocal and no payload.
type Packet struct {
	SrcMAC, DstMAC net.HardwareAddr // DefaultSrcMAC, DefaultDstMAC if nil

	// VLANs holds 0, 1 or 2 tag control fields (PCP, DEI and VLAN ID),
	// outermost first. A single tag uses TPID 0x8100; with two tags the
	// outer uses OuterTPID and the inner 0x8100.
	VLANs []uint16
	// OuterTPID is the TPID of the outer of two VLAN tags; 0 means 0x88a8
	// (802.1ad). Set it to 0x8100 for double 802.1Q tagging.
	OuterTPID uint16

	// EtherType, if nonzero, is written in place of the one the IP layer
	// implies (0x0800, 0x86dd), with or without an IP layer. Without an IP
	// layer and with EtherType 0, EtherTypeLocal is written.
	EtherType uint16

	// Src and Dst are the IP addresses, both IPv4 or both IPv6 (an
	// IPv4-mapped IPv6 address counts as IPv6). If both are invalid (the
	// zero netip.Addr) there is no IP layer and Payload follows the
	// Ethernet header.
	Src, Dst netip.Addr
	// TTL is the IPv4 TTL or IPv6 hop limit; 0 means DefaultTTL.
	TTL uint8
	// ID is the IPv4 identification (its low 16 bits) and the IPv6
	// Fragment header's identification; 0 means PacketIPv4ID and
	// PacketFragID. Fragments of different datagrams need different IDs
	// for a receiver to reassemble them.
	ID uint32

	// IPv4Options is padded with zeros (end of option list) to a multiple
	// of 4 bytes and makes IHL greater than 5. At most 40 bytes.
	IPv4Options []byte
	// FragOffset is the fragment offset in 8-byte units; nonzero means a
	// non-first fragment, which carries no transport header: Payload
	// follows the IP header (and IPv6 extension headers) directly.
	FragOffset uint16
	// MoreFragments sets the IPv4 MF flag or the IPv6 fragment M flag.
	MoreFragments bool
	// IPv6ExtHeaders are written in order between the IPv6 header and the
	// transport header, chained through their next-header fields. For IPv6,
	// FragOffset and MoreFragments go into the first Fragment (44) header;
	// if they are set and the list has none, one is appended.
	IPv6ExtHeaders []ExtHeader

	// Proto is the IP protocol: ProtoTCP, ProtoUDP, ProtoICMP and
	// ProtoICMPv6 get a header; any other value carries Payload alone.
	Proto            uint8
	SrcPort, DstPort uint16 // TCP and UDP
	TCPFlags         uint8  // TCPSyn, TCPAck, ... (ACK also sets the ack number)
	Seq              uint32 // TCP sequence number; 0 means PacketTCPSeq
	ICMPType         uint8  // ICMP and ICMPv6
	ICMPCode         uint8  // ICMP and ICMPv6
	Payload          []byte // after the innermost header
}

// ExtHeader is an IPv6 extension header. Type is its protocol number:
// ProtoHopByHop (0), ProtoRouting (43), ProtoFragment (44) or ProtoDstOpts
// (60); other types get the generic layout (next header, length, zeros).
// Len is the Hdr Ext Len field: the header is 8*(Len+1) bytes. The Fragment
// header is always 8 bytes and ignores Len.
//
// Options headers are filled with a PadN option when 8 bytes long, and with
// OptExperimental options when longer (see fillOptions); routing headers use
// routing type 253 (experimental, RFC 4727) with segments left 0, which a
// node must skip.
type ExtHeader struct {
	Type uint8
	Len  int
}

func (e ExtHeader) size() int {
	if e.Type == ProtoFragment {
		return 8
	}
	return 8 * (e.Len + 1)
}

// family reports whether the packet has an IP layer and whether it is IPv4.
// It panics on an inconsistent address pair.
func (p Packet) family() (hasIP, is4 bool) {
	switch {
	case !p.Src.IsValid() && !p.Dst.IsValid():
		return false, false
	case !p.Src.IsValid() || !p.Dst.IsValid():
		panic(fmt.Sprintf("netlab: Packet: Src %v and Dst %v must both be valid or both invalid", p.Src, p.Dst))
	case p.Src.Is4() != p.Dst.Is4():
		panic(fmt.Sprintf("netlab: Packet: Src %v and Dst %v are of different families", p.Src, p.Dst))
	}
	return true, p.Src.Is4()
}

// extHeaders returns the IPv6 extension headers to write, with a Fragment
// header appended when fragmentation is requested and none was listed.
func (p Packet) extHeaders() []ExtHeader {
	if p.FragOffset == 0 && !p.MoreFragments {
		return p.IPv6ExtHeaders
	}
	for _, e := range p.IPv6ExtHeaders {
		if e.Type == ProtoFragment {
			return p.IPv6ExtHeaders
		}
	}
	return append(append([]ExtHeader(nil), p.IPv6ExtHeaders...), ExtHeader{Type: ProtoFragment})
}

// L3Offset returns the offset of the IP header (or of whatever follows the
// Ethernet header and VLAN tags) in Bytes().
func (p Packet) L3Offset() int {
	return EthernetHeaderLen + VLANTagLen*len(p.VLANs)
}

// L4Offset returns the offset of the transport header (or, for a non-first
// fragment or another protocol, of the payload) in Bytes(): past the IP
// header, IPv4 options and IPv6 extension headers. Without an IP layer it
// equals L3Offset.
func (p Packet) L4Offset() int {
	off := p.L3Offset()
	hasIP, is4 := p.family()
	switch {
	case !hasIP:
	case is4:
		off += IPv4HeaderLen + pad4(len(p.IPv4Options))
	default:
		off += IPv6HeaderLen
		for _, e := range p.extHeaders() {
			off += e.size()
		}
	}
	return off
}

func pad4(n int) int { return (n + 3) &^ 3 }

// Bytes encodes the frame, with correct lengths and checksums: the IPv4
// header checksum, the TCP, UDP and ICMPv6 checksums including the IPv4 or
// IPv6 pseudo-header, and the ICMP checksum (which has none). Checksums cover
// the data present; for a first fragment that is only the first fragment's
// data. It panics on a description it cannot encode: more
// than two VLAN tags, more than 40 bytes of IPv4 options, a negative
// extension header length or an inconsistent address pair.
func (p Packet) Bytes() []byte { return p.AppendTo(nil) }

// AppendTo appends the frame that Bytes returns to b, so that a sender can
// reuse one buffer.
func (p Packet) AppendTo(b []byte) []byte {
	if len(p.VLANs) > 2 {
		panic(fmt.Sprintf("netlab: Packet: %d VLAN tags, at most 2 supported", len(p.VLANs)))
	}
	hasIP, is4 := p.family()

	// Transport header and payload.
	first := p.FragOffset == 0
	var l4 []byte
	withL4Header := hasIP && first && (p.Proto == ProtoTCP || p.Proto == ProtoUDP || p.Proto == ProtoICMP || p.Proto == ProtoICMPv6)
	if withL4Header {
		l4 = p.transport()
	} else {
		l4 = append([]byte(nil), p.Payload...)
	}

	// IP layer.
	var l3 []byte
	etherType := EtherTypeLocal
	if hasIP {
		if is4 {
			l3 = p.ipv4(len(l4))
			etherType = EtherTypeIPv4
		} else {
			l3 = p.ipv6(len(l4))
			etherType = EtherTypeIPv6
		}
	}
	if p.EtherType != 0 {
		etherType = p.EtherType
	}

	if withL4Header {
		var sum uint32
		if p.Proto != ProtoICMP { // ICMP (v4) has no pseudo-header
			sum = pseudoHeaderSum(p.Src, p.Dst, p.Proto, len(l4))
		}
		var off int
		switch p.Proto {
		case ProtoTCP:
			off = 16
		case ProtoUDP:
			off = 6
		default: // ICMP, ICMPv6
			off = 2
		}
		c := fold(sum + sumBytes(l4))
		if c == 0 && p.Proto == ProtoUDP {
			c = 0xffff // 0 means "no checksum" in UDP
		}
		binary.BigEndian.PutUint16(l4[off:], c)
	}

	// Ethernet header and VLAN tags.
	b = slices.Grow(b, p.L3Offset()+len(l3)+len(l4))
	b = append(b, macOr(p.DstMAC, DefaultDstMAC)...)
	b = append(b, macOr(p.SrcMAC, DefaultSrcMAC)...)
	for i, tci := range p.VLANs {
		tpid := EtherTypeVLAN
		if i == 0 && len(p.VLANs) == 2 {
			tpid = EtherTypeQinQ
			if p.OuterTPID != 0 {
				tpid = p.OuterTPID
			}
		}
		b = binary.BigEndian.AppendUint16(b, tpid)
		b = binary.BigEndian.AppendUint16(b, tci)
	}
	b = binary.BigEndian.AppendUint16(b, etherType)
	b = append(b, l3...)
	return append(b, l4...)
}

func macOr(mac, def net.HardwareAddr) net.HardwareAddr {
	if len(mac) != 6 {
		if mac != nil {
			panic(fmt.Sprintf("netlab: Packet: MAC %v is not 6 bytes", mac))
		}
		return def
	}
	return mac
}

// transport returns the transport header and payload, checksum zero.
func (p Packet) transport() []byte {
	var h []byte
	switch p.Proto {
	case ProtoTCP:
		h = make([]byte, TCPHeaderLen)
		binary.BigEndian.PutUint16(h[0:], p.SrcPort)
		binary.BigEndian.PutUint16(h[2:], p.DstPort)
		seq := p.Seq
		if seq == 0 {
			seq = PacketTCPSeq
		}
		binary.BigEndian.PutUint32(h[4:], seq)
		if p.TCPFlags&TCPAck != 0 {
			binary.BigEndian.PutUint32(h[8:], PacketTCPAck)
		}
		h[12] = (TCPHeaderLen / 4) << 4
		h[13] = p.TCPFlags
		binary.BigEndian.PutUint16(h[14:], PacketTCPWin)
	case ProtoUDP:
		h = make([]byte, UDPHeaderLen)
		binary.BigEndian.PutUint16(h[0:], p.SrcPort)
		binary.BigEndian.PutUint16(h[2:], p.DstPort)
		binary.BigEndian.PutUint16(h[4:], uint16(UDPHeaderLen+len(p.Payload)))
	default: // ProtoICMP, ProtoICMPv6
		h = make([]byte, ICMPHeaderLen)
		h[0], h[1] = p.ICMPType, p.ICMPCode
		binary.BigEndian.PutUint16(h[4:], PacketICMPID)
		binary.BigEndian.PutUint16(h[6:], PacketICMPSeq)
	}
	return append(h, p.Payload...)
}

func (p Packet) id(def uint32) uint32 {
	if p.ID == 0 {
		return def
	}
	return p.ID
}

func (p Packet) ttl() uint8 {
	if p.TTL == 0 {
		return DefaultTTL
	}
	return p.TTL
}

func (p Packet) ipv4(l4len int) []byte {
	if len(p.IPv4Options) > 40 {
		panic(fmt.Sprintf("netlab: Packet: %d bytes of IPv4 options, at most 40", len(p.IPv4Options)))
	}
	hlen := IPv4HeaderLen + pad4(len(p.IPv4Options))
	h := make([]byte, hlen)
	h[0] = 4<<4 | uint8(hlen/4)
	binary.BigEndian.PutUint16(h[2:], uint16(hlen+l4len))
	binary.BigEndian.PutUint16(h[4:], uint16(p.id(PacketIPv4ID)))
	frag := p.FragOffset & 0x1fff
	if p.MoreFragments {
		frag |= 0x2000
	}
	binary.BigEndian.PutUint16(h[6:], frag)
	h[8] = p.ttl()
	h[9] = p.Proto
	src, dst := p.Src.As4(), p.Dst.As4()
	copy(h[12:], src[:])
	copy(h[16:], dst[:])
	copy(h[20:], p.IPv4Options)
	binary.BigEndian.PutUint16(h[10:], fold(sumBytes(h)))
	return h
}

func (p Packet) ipv6(l4len int) []byte {
	exts := p.extHeaders()
	size := IPv6HeaderLen
	for _, e := range exts {
		if e.Type != ProtoFragment && (e.Len < 0 || e.Len > 255) {
			panic(fmt.Sprintf("netlab: Packet: extension header length %d out of range 0..255", e.Len))
		}
		size += e.size()
	}
	h := make([]byte, IPv6HeaderLen, size)
	h[0] = 6 << 4
	binary.BigEndian.PutUint16(h[4:], uint16(size-IPv6HeaderLen+l4len))
	h[6] = p.Proto
	if len(exts) > 0 {
		h[6] = exts[0].Type
	}
	h[7] = p.ttl()
	src, dst := p.Src.As16(), p.Dst.As16()
	copy(h[8:], src[:])
	copy(h[24:], dst[:])

	fragDone := false
	for i, e := range exts {
		next := p.Proto
		if i+1 < len(exts) {
			next = exts[i+1].Type
		}
		x := make([]byte, e.size())
		x[0] = next
		switch e.Type {
		case ProtoFragment:
			if !fragDone {
				off := (p.FragOffset & 0x1fff) << 3
				if p.MoreFragments {
					off |= 1
				}
				binary.BigEndian.PutUint16(x[2:], off)
				fragDone = true
			}
			binary.BigEndian.PutUint32(x[4:], p.id(PacketFragID))
		case ProtoHopByHop, ProtoDstOpts:
			x[1] = uint8(e.Len)
			fillOptions(x[2:])
		case ProtoRouting:
			x[1] = uint8(e.Len)
			x[2] = 253 // routing type: experimental
			x[3] = 0   // segments left
		default:
			x[1] = uint8(e.Len)
		}
		h = append(h, x...)
	}
	return h
}

// OptExperimental is the IPv6 option type that fills options headers longer
// than 8 bytes: 0x1e, experimental (RFC 4727), action "skip if unknown".
const OptExperimental = 0x1e

// fillOptions fills the option area of a hop-by-hop or destination options
// header. Up to 7 bytes become one Pad1 or PadN option; more become
// OptExperimental options of zeros, since Linux drops packets with more than
// 7 consecutive bytes of padding.
func fillOptions(b []byte) {
	if len(b) <= 7 {
		if len(b) >= 2 {
			b[0], b[1] = 1, uint8(len(b)-2) // PadN
		} // else Pad1 (0) or nothing
		return
	}
	for len(b) >= 2 {
		n := min(len(b), 2+255)
		b[0], b[1] = OptExperimental, uint8(n-2)
		b = b[n:]
	}
	// A lone last byte stays 0: Pad1.
}

// pseudoHeaderSum returns the unfolded sum of the IPv4 or IPv6 pseudo-header.
func pseudoHeaderSum(src, dst netip.Addr, proto uint8, length int) uint32 {
	var b []byte
	if src.Is4() {
		s, d := src.As4(), dst.As4()
		b = append(append(b, s[:]...), d[:]...)
		b = append(b, 0, proto)
		b = binary.BigEndian.AppendUint16(b, uint16(length))
	} else {
		s, d := src.As16(), dst.As16()
		b = append(append(b, s[:]...), d[:]...)
		b = binary.BigEndian.AppendUint32(b, uint32(length))
		b = append(b, 0, 0, 0, proto)
	}
	return sumBytes(b)
}

// sumBytes returns the unfolded ones'-complement sum of b as big-endian
// 16-bit words, an odd last byte padded with zero.
func sumBytes(b []byte) uint32 {
	var s uint32
	for len(b) >= 2 {
		s += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

// fold folds a sum to 16 bits and complements it.
func fold(s uint32) uint16 {
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

// Truncate returns a copy of the first n bytes of b (all of b if n is larger,
// none if n is negative), for crafting short and cut-off frames.
func Truncate(b []byte, n int) []byte {
	n = max(0, min(n, len(b)))
	return append([]byte(nil), b[:n]...)
}

func mustAddr(s string, want4 bool) netip.Addr {
	a := netip.MustParseAddr(s)
	if a.Is4() != want4 {
		fam := "IPv6"
		if want4 {
			fam = "IPv4"
		}
		panic(fmt.Sprintf("netlab: %q is not an %s address", s, fam))
	}
	return a
}

// Ports that the helpers below use.
const (
	HelperSrcPort uint16 = 40000
	HelperUDPPort uint16 = 53
	HelperTCPPort uint16 = 80
)

// UDP4 returns a UDP/IPv4 packet from src to dst (IPv4 literals; it panics
// on anything else), from port HelperSrcPort to HelperUDPPort, no payload.
func UDP4(src, dst string) Packet {
	return Packet{Src: mustAddr(src, true), Dst: mustAddr(dst, true), Proto: ProtoUDP, SrcPort: HelperSrcPort, DstPort: HelperUDPPort}
}

// UDP6 is UDP4 for IPv6 literals.
func UDP6(src, dst string) Packet {
	return Packet{Src: mustAddr(src, false), Dst: mustAddr(dst, false), Proto: ProtoUDP, SrcPort: HelperSrcPort, DstPort: HelperUDPPort}
}

// TCPSyn4 returns a TCP SYN/IPv4 packet from src to dst (IPv4 literals; it
// panics on anything else), from port HelperSrcPort to HelperTCPPort.
func TCPSyn4(src, dst string) Packet {
	return Packet{Src: mustAddr(src, true), Dst: mustAddr(dst, true), Proto: ProtoTCP, SrcPort: HelperSrcPort, DstPort: HelperTCPPort, TCPFlags: TCPSyn}
}

// TCPSyn6 is TCPSyn4 for IPv6 literals.
func TCPSyn6(src, dst string) Packet {
	return Packet{Src: mustAddr(src, false), Dst: mustAddr(dst, false), Proto: ProtoTCP, SrcPort: HelperSrcPort, DstPort: HelperTCPPort, TCPFlags: TCPSyn}
}

// ICMPEcho4 returns an ICMP echo request from src to dst (IPv4 literals; it
// panics on anything else).
func ICMPEcho4(src, dst string) Packet {
	return Packet{Src: mustAddr(src, true), Dst: mustAddr(dst, true), Proto: ProtoICMP, ICMPType: ICMPEchoRequest}
}

// ICMPEcho6 returns an ICMPv6 echo request from src to dst (IPv6 literals;
// it panics on anything else).
func ICMPEcho6(src, dst string) Packet {
	return Packet{Src: mustAddr(src, false), Dst: mustAddr(dst, false), Proto: ProtoICMPv6, ICMPType: ICMPv6EchoRequest}
}

// Fragments encodes the packet whole, then splits its IP payload into
// fragments of at most size bytes (rounded down to a multiple of 8, at least
// 8) the way a sender with a tiny MTU does; hping3 --mtu 8 sends such a
// train. Checksums cover the whole datagram, so the receiver's reassembly
// gives back the packet. IPv4 fragments repeat the header (options
// included) with their offset, MF and length. IPv6 fragments keep
// IPv6ExtHeaders in the unfragmentable part and add a Fragment header
// (identification ID) after them. FragOffset and MoreFragments
// must be unset and IPv6ExtHeaders must hold no Fragment header; it panics
// otherwise or without an IP layer.
func (p Packet) Fragments(size int) [][]byte {
	hasIP, is4 := p.family()
	if !hasIP || p.FragOffset != 0 || p.MoreFragments {
		panic("netlab: Packet.Fragments: needs an IP packet without fragment fields")
	}
	for _, e := range p.IPv6ExtHeaders {
		if e.Type == ProtoFragment {
			panic("netlab: Packet.Fragments: IPv6ExtHeaders already holds a Fragment header")
		}
	}
	size = max(8, size&^7)
	whole := p.Bytes()
	l3, l4 := p.L3Offset(), p.L4Offset()
	data := whole[l4:]
	var out [][]byte
	for off := 0; off == 0 || off < len(data); off += size {
		end := min(off+size, len(data))
		more := end < len(data)
		frame := append([]byte(nil), whole[:l3]...)
		if is4 {
			h := append([]byte(nil), whole[l3:l4]...)
			binary.BigEndian.PutUint16(h[2:], uint16(len(h)+end-off))
			field := uint16(off / 8)
			if more {
				field |= 0x2000
			}
			binary.BigEndian.PutUint16(h[6:], field)
			h[10], h[11] = 0, 0
			binary.BigEndian.PutUint16(h[10:], fold(sumBytes(h)))
			frame = append(frame, h...)
		} else {
			h := append([]byte(nil), whole[l3:l4]...)
			// The last next-header field of the chain now names the
			// Fragment header, which names what the chain named.
			last := 6
			pos := IPv6HeaderLen
			for _, e := range p.IPv6ExtHeaders {
				last = pos
				pos += e.size()
			}
			next := h[last]
			h[last] = ProtoFragment
			binary.BigEndian.PutUint16(h[4:], uint16(len(h)-IPv6HeaderLen+8+end-off))
			field := uint16(off) // off is a multiple of 8: the offset sits in the top 13 bits
			if more {
				field |= 1
			}
			fh := []byte{next, 0, 0, 0, 0, 0, 0, 0}
			binary.BigEndian.PutUint16(fh[2:], field)
			binary.BigEndian.PutUint32(fh[4:], p.id(PacketFragID))
			frame = append(append(frame, h...), fh...)
		}
		out = append(out, append(frame, data[off:end]...))
	}
	return out
}
