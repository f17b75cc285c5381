package netlab

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
)

// csum is an independent RFC 1071 checksum: the folded ones'-complement sum
// of the concatenated parts (not complemented). A correct header summed with
// its checksum field in place gives 0xffff.
func csum(parts ...[]byte) uint16 {
	var all []byte
	for _, p := range parts {
		all = append(all, p...)
	}
	if len(all)%2 == 1 {
		all = append(all, 0)
	}
	var s uint64
	for i := 0; i < len(all); i += 2 {
		s += uint64(binary.BigEndian.Uint16(all[i:]))
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// parsed is what parseFrame found in a frame.
type parsed struct {
	tpids     []uint16
	tcis      []uint16
	etherType uint16
	l3, l4    int     // offsets
	proto     uint8   // upper-layer protocol after the extension headers
	extTypes  []uint8 // IPv6 extension header types in chain order
	fragOff   uint16
	mf        bool
	l4Header  bool // a transport header was parsed and verified
	payload   []byte
}

// parseFrame parses b independently of Packet's encoder, checking lengths
// and checksums on the way.
func parseFrame(t *testing.T, b []byte) parsed {
	t.Helper()
	var p parsed
	off := 12
	for {
		et := binary.BigEndian.Uint16(b[off:])
		if et != EtherTypeVLAN && et != EtherTypeQinQ {
			p.etherType = et
			off += 2
			break
		}
		p.tpids = append(p.tpids, et)
		p.tcis = append(p.tcis, binary.BigEndian.Uint16(b[off+2:]))
		off += 4
	}
	p.l3 = off
	var pseudo []byte
	var l4len int
	switch p.etherType {
	case EtherTypeIPv4:
		ip := b[off:]
		if ip[0]>>4 != 4 {
			t.Fatalf("IPv4 version %d", ip[0]>>4)
		}
		ihl := int(ip[0]&0xf) * 4
		if tot := int(binary.BigEndian.Uint16(ip[2:])); tot != len(ip) {
			t.Fatalf("IPv4 total length %d, have %d bytes", tot, len(ip))
		}
		if c := csum(ip[:ihl]); c != 0xffff {
			t.Fatalf("IPv4 header checksum does not verify (sum %#04x)", c)
		}
		fw := binary.BigEndian.Uint16(ip[6:])
		p.fragOff, p.mf = fw&0x1fff, fw&0x2000 != 0
		p.proto = ip[9]
		l4len = len(ip) - ihl
		pseudo = append(append([]byte{}, ip[12:20]...), 0, p.proto, byte(l4len>>8), byte(l4len))
		off += ihl
	case EtherTypeIPv6:
		ip := b[off:]
		if ip[0]>>4 != 6 {
			t.Fatalf("IPv6 version %d", ip[0]>>4)
		}
		if pl := int(binary.BigEndian.Uint16(ip[4:])); pl != len(ip)-40 {
			t.Fatalf("IPv6 payload length %d, have %d bytes", pl, len(ip)-40)
		}
		next := ip[6]
		seenFrag := false
		off += 40
	chain:
		for {
			switch next {
			case ProtoHopByHop, ProtoRouting, ProtoDstOpts, ProtoFragment:
			default:
				break chain
			}
			p.extTypes = append(p.extTypes, next)
			x := b[off:]
			size := 8 * (int(x[1]) + 1)
			if next == ProtoFragment {
				size = 8
				if seenFrag {
					next = x[0]
					off += size
					continue
				}
				seenFrag = true
				fw := binary.BigEndian.Uint16(x[2:])
				p.fragOff, p.mf = fw>>3, fw&1 != 0
			}
			next = x[0]
			off += size
		}
		p.proto = next
		l4len = len(b) - off
		pseudo = append(append([]byte{}, ip[8:40]...), byte(l4len>>24), byte(l4len>>16), byte(l4len>>8), byte(l4len), 0, 0, 0, p.proto)
	}
	p.l4 = off
	p.payload = b[off:]
	if pseudo == nil || p.fragOff != 0 {
		return p
	}
	l4 := b[off:]
	switch p.proto {
	case ProtoUDP:
		if ul := int(binary.BigEndian.Uint16(l4[4:])); ul != len(l4) {
			t.Fatalf("UDP length %d, have %d bytes", ul, len(l4))
		}
		if c := csum(pseudo, l4); c != 0xffff {
			t.Fatalf("UDP checksum does not verify (sum %#04x)", c)
		}
		p.payload = l4[8:]
	case ProtoTCP:
		if c := csum(pseudo, l4); c != 0xffff {
			t.Fatalf("TCP checksum does not verify (sum %#04x)", c)
		}
		p.payload = l4[int(l4[12]>>4)*4:]
	case ProtoICMP:
		if c := csum(l4); c != 0xffff {
			t.Fatalf("ICMP checksum does not verify (sum %#04x)", c)
		}
		p.payload = l4[8:]
	case ProtoICMPv6:
		if c := csum(pseudo, l4); c != 0xffff {
			t.Fatalf("ICMPv6 checksum does not verify (sum %#04x)", c)
		}
		p.payload = l4[8:]
	default:
		return p
	}
	p.l4Header = true
	return p
}

func TestHelpersWellFormed(t *testing.T) {
	payload := []byte("aegis test payload, odd length")
	for name, p := range map[string]Packet{
		"UDP4":      UDP4("192.0.2.1", "192.0.2.2"),
		"UDP6":      UDP6("2001:db8::1", "2001:db8::2"),
		"TCPSyn4":   TCPSyn4("192.0.2.1", "198.51.100.7"),
		"TCPSyn6":   TCPSyn6("2001:db8::1", "2001:db8:ffff::2"),
		"ICMPEcho4": ICMPEcho4("192.0.2.1", "192.0.2.2"),
		"ICMPEcho6": ICMPEcho6("2001:db8::1", "2001:db8::2"),
	} {
		for _, pl := range [][]byte{nil, payload} {
			t.Run(fmt.Sprintf("%s/payload=%d", name, len(pl)), func(t *testing.T) {
				p.Payload = pl
				b := p.Bytes()
				got := parseFrame(t, b)
				if !got.l4Header {
					t.Fatalf("no transport header parsed")
				}
				if got.l4 != p.L4Offset() || got.l3 != p.L3Offset() {
					t.Errorf("offsets l3=%d l4=%d, Packet says %d %d", got.l3, got.l4, p.L3Offset(), p.L4Offset())
				}
				if !bytes.Equal(got.payload, pl) {
					t.Errorf("payload %q, want %q", got.payload, pl)
				}
				if !bytes.Equal(b[0:6], DefaultDstMAC) || !bytes.Equal(b[6:12], DefaultSrcMAC) {
					t.Errorf("MACs %x %x, want defaults", b[0:6], b[6:12])
				}
			})
		}
	}
}

func TestUDP4Fields(t *testing.T) {
	p := UDP4("192.0.2.1", "192.0.2.2")
	p.SrcPort, p.DstPort, p.TTL = 1234, 5678, 3
	p.Payload = []byte{1, 2, 3, 4}
	b := p.Bytes()
	if len(b) != 14+20+8+4 {
		t.Fatalf("len %d", len(b))
	}
	check16 := func(off int, want uint16) {
		t.Helper()
		if got := binary.BigEndian.Uint16(b[off:]); got != want {
			t.Errorf("at %d: %#04x, want %#04x", off, got, want)
		}
	}
	check16(12, EtherTypeIPv4)
	if b[14] != 0x45 || b[22] != 3 || b[23] != ProtoUDP {
		t.Errorf("ver/ihl %#x ttl %d proto %d", b[14], b[22], b[23])
	}
	check16(16, 20+8+4)
	check16(20, 0) // no fragmentation
	if !bytes.Equal(b[26:30], []byte{192, 0, 2, 1}) || !bytes.Equal(b[30:34], []byte{192, 0, 2, 2}) {
		t.Errorf("addresses %v %v", b[26:30], b[30:34])
	}
	check16(34, 1234)
	check16(36, 5678)
	check16(38, 8+4)
	if binary.BigEndian.Uint16(b[40:]) == 0 {
		t.Errorf("UDP checksum left zero")
	}
}

func TestTCPFlagsAndAck(t *testing.T) {
	p := TCPSyn4("192.0.2.1", "192.0.2.2")
	p.TCPFlags = TCPSyn | TCPAck
	b := p.Bytes()
	parseFrame(t, b)
	tcp := b[p.L4Offset():]
	if tcp[13] != TCPSyn|TCPAck || tcp[12] != 5<<4 {
		t.Errorf("flags %#x data offset %#x", tcp[13], tcp[12])
	}
	if binary.BigEndian.Uint32(tcp[8:]) != PacketTCPAck {
		t.Errorf("ack number %d", binary.BigEndian.Uint32(tcp[8:]))
	}
	p.TCPFlags = TCPRst
	tcp = p.Bytes()[p.L4Offset():]
	if binary.BigEndian.Uint32(tcp[8:]) != 0 {
		t.Errorf("ack number set without ACK flag")
	}
}

func TestVLANs(t *testing.T) {
	for _, tc := range []struct {
		name  string
		vlans []uint16
		outer uint16
		tpids []uint16
	}{
		{"none", nil, 0, nil},
		{"one", []uint16{100}, 0, []uint16{EtherTypeVLAN}},
		{"qinq", []uint16{200, 100}, 0, []uint16{EtherTypeQinQ, EtherTypeVLAN}},
		{"double-8021q", []uint16{0x2000 | 200, 100}, EtherTypeVLAN, []uint16{EtherTypeVLAN, EtherTypeVLAN}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := UDP6("2001:db8::1", "2001:db8::2")
			p.VLANs, p.OuterTPID = tc.vlans, tc.outer
			b := p.Bytes()
			got := parseFrame(t, b)
			if fmt.Sprint(got.tpids) != fmt.Sprint(tc.tpids) || fmt.Sprint(got.tcis) != fmt.Sprint(tc.vlans) {
				t.Errorf("tags %v %v, want %v %v", got.tpids, got.tcis, tc.tpids, tc.vlans)
			}
			if want := 14 + 4*len(tc.vlans); got.l3 != want || p.L3Offset() != want {
				t.Errorf("L3 offset parsed %d, L3Offset %d, want %d", got.l3, p.L3Offset(), want)
			}
			if got.etherType != EtherTypeIPv6 || !got.l4Header {
				t.Errorf("ethertype %#04x l4 %v", got.etherType, got.l4Header)
			}
		})
	}
	assertPanics(t, "three VLANs", func() { Packet{VLANs: []uint16{1, 2, 3}}.Bytes() })
}

func TestIPv4Options(t *testing.T) {
	for _, n := range []int{1, 3, 4, 5, 40} {
		p := TCPSyn4("192.0.2.1", "192.0.2.2")
		p.IPv4Options = bytes.Repeat([]byte{1}, n) // NOPs
		b := p.Bytes()
		got := parseFrame(t, b)
		wantIHL := 5 + (n+3)/4
		if ihl := int(b[14] & 0xf); ihl != wantIHL {
			t.Errorf("%d option bytes: IHL %d, want %d", n, ihl, wantIHL)
		}
		if got.l4 != 14+4*wantIHL || p.L4Offset() != got.l4 || !got.l4Header {
			t.Errorf("%d option bytes: L4 at %d, L4Offset %d", n, got.l4, p.L4Offset())
		}
		for i := 34 + n; i < 14+4*wantIHL; i++ {
			if b[i] != 0 {
				t.Errorf("%d option bytes: padding byte %d is %#x", n, i, b[i])
			}
		}
	}
	assertPanics(t, "41 option bytes", func() {
		p := UDP4("192.0.2.1", "192.0.2.2")
		p.IPv4Options = make([]byte, 41)
		p.Bytes()
	})
}

func TestIPv4Fragments(t *testing.T) {
	payload := []byte("0123456789abcdef")
	first := UDP4("192.0.2.1", "192.0.2.2")
	first.MoreFragments, first.Payload = true, payload
	got := parseFrame(t, first.Bytes())
	if got.fragOff != 0 || !got.mf || !got.l4Header {
		t.Errorf("first fragment: off %d mf %v l4 %v", got.fragOff, got.mf, got.l4Header)
	}

	later := first
	later.FragOffset = 3
	b := later.Bytes()
	got = parseFrame(t, b)
	if got.fragOff != 3 || !got.mf || got.l4Header {
		t.Errorf("later fragment: off %d mf %v l4 %v", got.fragOff, got.mf, got.l4Header)
	}
	if len(b) != 14+20+len(payload) || !bytes.Equal(b[34:], payload) || got.proto != ProtoUDP {
		t.Errorf("later fragment should carry the payload alone after the IP header: % x", b[34:])
	}
	if fw := binary.BigEndian.Uint16(b[20:]); fw != 0x2003 {
		t.Errorf("flags/offset word %#04x, want 0x2003", fw)
	}
}

func TestIPv6ExtensionHeaders(t *testing.T) {
	p := UDP6("2001:db8::1", "2001:db8::2")
	p.Payload = []byte("xyz")
	p.IPv6ExtHeaders = []ExtHeader{
		{Type: ProtoHopByHop},
		{Type: ProtoDstOpts, Len: 1},
		{Type: ProtoRouting, Len: 2},
		{Type: ProtoFragment, Len: 7}, // Len ignored
		{Type: ProtoDstOpts},
	}
	b := p.Bytes()
	got := parseFrame(t, b)
	want := []uint8{ProtoHopByHop, ProtoDstOpts, ProtoRouting, ProtoFragment, ProtoDstOpts}
	if !bytes.Equal(got.extTypes, want) {
		t.Errorf("chain %v, want %v", got.extTypes, want)
	}
	if wantL4 := 14 + 40 + 8 + 16 + 24 + 8 + 8; got.l4 != wantL4 || p.L4Offset() != wantL4 {
		t.Errorf("L4 at %d, L4Offset %d, want %d", got.l4, p.L4Offset(), wantL4)
	}
	if got.proto != ProtoUDP || !got.l4Header || string(got.payload) != "xyz" {
		t.Errorf("proto %d l4 %v payload %q", got.proto, got.l4Header, got.payload)
	}
	// Options headers hold exactly one option filling them: padding in 8
	// bytes, an experimental option beyond.
	hbh := b[54:62]
	if hbh[2] != 1 || int(hbh[3]) != 4 {
		t.Errorf("hop-by-hop padding % x", hbh)
	}
	dst := b[62:78]
	if dst[1] != 1 || dst[2] != OptExperimental || int(dst[3]) != 12 {
		t.Errorf("destination options % x", dst)
	}
	rt := b[78:102]
	if rt[1] != 2 || rt[2] != 253 || rt[3] != 0 {
		t.Errorf("routing header % x", rt)
	}
}

// TestIPv6OptionsFill checks that options headers of every length hold a
// well-formed option list that Linux accepts: no run of padding longer than
// 7 bytes, at most 8 non-padding options.
func TestIPv6OptionsFill(t *testing.T) {
	for l := range 256 {
		p := UDP6("2001:db8::1", "2001:db8::2")
		p.IPv6ExtHeaders = []ExtHeader{{Type: ProtoDstOpts, Len: l}}
		b := p.Bytes()
		parseFrame(t, b)
		opts := b[14+40+2 : 14+40+8*(l+1)]
		pad, other := 0, 0
		for len(opts) > 0 {
			if opts[0] == 0 { // Pad1
				pad++
				opts = opts[1:]
				continue
			}
			if len(opts) < 2 || len(opts) < 2+int(opts[1]) {
				t.Fatalf("Len %d: option overruns the header", l)
			}
			if opts[0] == 1 {
				pad += 2 + int(opts[1])
			} else {
				pad = 0
				other++
			}
			if pad > 7 {
				t.Fatalf("Len %d: more than 7 bytes of padding", l)
			}
			opts = opts[2+int(opts[1]):]
		}
		if other > 8 {
			t.Errorf("Len %d: %d options", l, other)
		}
	}
}

func TestIPv6FragmentHeader(t *testing.T) {
	p := UDP6("2001:db8::1", "2001:db8::2")
	p.Payload = []byte("later fragment data")
	p.FragOffset, p.MoreFragments = 185, true
	b := p.Bytes() // no Fragment header listed: one is appended
	got := parseFrame(t, b)
	if !bytes.Equal(got.extTypes, []uint8{ProtoFragment}) || got.fragOff != 185 || !got.mf {
		t.Errorf("chain %v off %d mf %v", got.extTypes, got.fragOff, got.mf)
	}
	if got.l4Header || got.proto != ProtoUDP || !bytes.Equal(got.payload, p.Payload) {
		t.Errorf("later fragment: l4 %v proto %d payload %q", got.l4Header, got.proto, got.payload)
	}

	p.FragOffset = 0
	p.IPv6ExtHeaders = []ExtHeader{{Type: ProtoHopByHop}, {Type: ProtoFragment}}
	got = parseFrame(t, p.Bytes())
	if !bytes.Equal(got.extTypes, []uint8{ProtoHopByHop, ProtoFragment}) || got.fragOff != 0 || !got.mf || !got.l4Header {
		t.Errorf("first fragment: chain %v off %d mf %v l4 %v", got.extTypes, got.fragOff, got.mf, got.l4Header)
	}
}

func TestNoIPLayer(t *testing.T) {
	arp := Packet{EtherType: EtherTypeARP, Payload: make([]byte, 28), DstMAC: []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
	b := arp.Bytes()
	if len(b) != 14+28 || binary.BigEndian.Uint16(b[12:]) != EtherTypeARP || b[0] != 0xff {
		t.Errorf("ARP frame % x", b)
	}
	if arp.L4Offset() != 14 {
		t.Errorf("L4Offset without IP %d", arp.L4Offset())
	}
	if b := (Packet{}).Bytes(); len(b) != 14 || binary.BigEndian.Uint16(b[12:]) != EtherTypeLocal {
		t.Errorf("zero Packet % x", b)
	}
	// EtherType also overrides with an IP layer (a mislabelled frame).
	p := UDP4("192.0.2.1", "192.0.2.2")
	p.EtherType = EtherTypeIPv6
	if b := p.Bytes(); binary.BigEndian.Uint16(b[12:]) != EtherTypeIPv6 || b[14] != 0x45 {
		t.Errorf("override % x", b[:16])
	}
}

func TestOtherProtocol(t *testing.T) {
	p := Packet{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2"), Proto: 47, Payload: []byte{9, 9}}
	b := p.Bytes()
	got := parseFrame(t, b)
	if got.proto != 47 || got.l4Header || !bytes.Equal(got.payload, []byte{9, 9}) {
		t.Errorf("proto %d payload % x", got.proto, got.payload)
	}
}

func TestBadAddresses(t *testing.T) {
	assertPanics(t, "mixed families", func() {
		Packet{Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("2001:db8::1")}.Bytes()
	})
	assertPanics(t, "only Src", func() { Packet{Src: netip.MustParseAddr("192.0.2.1")}.Bytes() })
	assertPanics(t, "UDP4 with IPv6", func() { UDP4("2001:db8::1", "192.0.2.1") })
	assertPanics(t, "UDP6 with IPv4", func() { UDP6("2001:db8::1", "192.0.2.1") })
	assertPanics(t, "bad literal", func() { TCPSyn4("192.0.2.300", "192.0.2.1") })
}

func TestUDPZeroChecksumBecomesFFFF(t *testing.T) {
	// Search for a payload whose checksum computes to zero; it must be sent
	// as 0xffff.
	p := UDP4("192.0.2.1", "192.0.2.2")
	p.Payload = []byte{0, 0}
	base := p.Bytes()
	udp := base[p.L4Offset():]
	c := binary.BigEndian.Uint16(udp[6:])
	// Adding ^c... to the payload word makes the sum 0xffff, so the checksum is 0.
	binary.BigEndian.PutUint16(p.Payload, c)
	b := p.Bytes()
	parseFrame(t, b)
	if got := binary.BigEndian.Uint16(b[p.L4Offset()+6:]); got != 0xffff {
		t.Errorf("checksum %#04x, want 0xffff", got)
	}
}

func TestTruncate(t *testing.T) {
	b := UDP4("192.0.2.1", "192.0.2.2").Bytes()
	tr := Truncate(b, 20)
	if len(tr) != 20 || !bytes.Equal(tr, b[:20]) {
		t.Errorf("Truncate(20) = % x", tr)
	}
	tr[0] ^= 0xff
	if tr[0] == b[0] {
		t.Errorf("Truncate aliases its input")
	}
	if len(Truncate(b, 1000)) != len(b) || len(Truncate(b, -1)) != 0 {
		t.Errorf("Truncate does not clamp")
	}
}

func FuzzPacketBytes(f *testing.F) {
	f.Add(true, uint8(17), uint8(0), uint16(0), false, uint8(0), []byte("x"))
	f.Add(false, uint8(6), uint8(2), uint16(0), true, uint8(3), []byte{})
	f.Add(false, uint8(58), uint8(1), uint16(7), true, uint8(1), []byte("abc"))
	f.Add(true, uint8(1), uint8(1), uint16(0), false, uint8(9), []byte("abcd"))
	f.Add(false, uint8(1), uint8(1), uint16(0), false, uint8(9), []byte("0")) // ICMP over IPv6
	f.Fuzz(func(t *testing.T, v4 bool, proto, nvlan uint8, fragOff uint16, mf bool, exts uint8, payload []byte) {
		if len(payload) > 1400 {
			return
		}
		var p Packet
		if v4 {
			p = UDP4("192.0.2.1", "192.0.2.2")
			p.IPv4Options = make([]byte, exts%41)
		} else {
			p = UDP6("2001:db8::1", "2001:db8::2")
			types := []uint8{ProtoHopByHop, ProtoRouting, ProtoFragment, ProtoDstOpts}
			for i := range int(exts % 5) {
				p.IPv6ExtHeaders = append(p.IPv6ExtHeaders, ExtHeader{Type: types[(int(exts)+i)%4], Len: i})
			}
		}
		switch proto {
		case ProtoHopByHop, ProtoRouting, ProtoFragment, ProtoDstOpts:
			if !v4 {
				return // would read as another extension header
			}
		}
		p.Proto, p.FragOffset, p.MoreFragments, p.Payload = proto, fragOff&0x1fff, mf, payload
		p.VLANs = make([]uint16, nvlan%3)
		b := p.Bytes()
		got := parseFrame(t, b) // verifies lengths and checksums
		if got.l3 != p.L3Offset() || got.proto != proto {
			t.Fatalf("l3 %d/%d proto %d/%d", got.l3, p.L3Offset(), got.proto, proto)
		}
		if got.fragOff != p.FragOffset || got.mf != mf {
			t.Fatalf("fragment %d %v, want %d %v", got.fragOff, got.mf, p.FragOffset, mf)
		}
	})
}

func assertPanics(t *testing.T, what string, fn func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s: no panic", what)
		}
	}()
	fn()
}

func TestFragments(t *testing.T) {
	syn4 := TCPSyn4("192.0.2.1", "198.51.100.1")
	syn4.IPv4Options = []byte{1, 1, 1, 0}
	syn6 := TCPSyn6("2001:db8::1", "2001:db8::2")
	syn6.IPv6ExtHeaders = []ExtHeader{{Type: ProtoHopByHop}, {Type: ProtoDstOpts, Len: 1}}
	udp6 := UDP6("2001:db8::1", "2001:db8::2")
	udp6.Payload = make([]byte, 30)
	for _, tc := range []struct {
		name  string
		p     Packet
		size  int
		count int
	}{
		{"tcp4 in 8-byte fragments", syn4, 8, 3},
		{"tcp4 in 16-byte fragments", syn4, 16, 2},
		{"tcp6 behind two headers, 8-byte", syn6, 8, 3},
		{"udp6 in 16-byte fragments, size rounded down", udp6, 19, 3},
		{"one fragment holds it all", udp6, 1000, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			whole := tc.p.Bytes()
			l4 := tc.p.L4Offset()
			frags := tc.p.Fragments(tc.size)
			if len(frags) != tc.count {
				t.Fatalf("%d fragments, want %d", len(frags), tc.count)
			}
			var data []byte
			for i, f := range frags {
				more := i < len(frags)-1
				var off int
				var body []byte
				if tc.p.Src.Is4() {
					ip := f[tc.p.L3Offset():]
					ihl := int(ip[0]&0xf) * 4
					if tot := int(binary.BigEndian.Uint16(ip[2:])); tot != len(ip) {
						t.Fatalf("fragment %d: total length %d, have %d", i, tot, len(ip))
					}
					if c := csum(ip[:ihl]); c != 0xffff {
						t.Fatalf("fragment %d: header checksum does not verify", i)
					}
					fw := binary.BigEndian.Uint16(ip[6:])
					off, body = int(fw&0x1fff)*8, ip[ihl:]
					if fw&0x2000 != 0 != more {
						t.Fatalf("fragment %d: MF %v", i, !more)
					}
					if !bytes.Equal(ip[:ihl][12:], whole[tc.p.L3Offset()+12:l4]) {
						t.Fatalf("fragment %d: addresses or options differ", i)
					}
				} else {
					ip := f[tc.p.L3Offset():]
					if pl := int(binary.BigEndian.Uint16(ip[4:])); pl != len(ip)-40 {
						t.Fatalf("fragment %d: payload length %d, have %d", i, pl, len(ip)-40)
					}
					p := parsed{}
					next, pos := ip[6], 40
					for next != ProtoFragment {
						p.extTypes = append(p.extTypes, next)
						next, pos = ip[pos], pos+8*(int(ip[pos+1])+1)
					}
					if len(p.extTypes) != len(tc.p.IPv6ExtHeaders) {
						t.Fatalf("fragment %d: %d headers before the Fragment header, want %d", i, len(p.extTypes), len(tc.p.IPv6ExtHeaders))
					}
					fh := ip[pos:]
					if fh[0] != tc.p.Proto || binary.BigEndian.Uint32(fh[4:]) != PacketFragID {
						t.Fatalf("fragment %d: fragment header % x", i, fh[:8])
					}
					fw := binary.BigEndian.Uint16(fh[2:])
					off, body = int(fw>>3)*8, fh[8:]
					if fw&1 != 0 != more {
						t.Fatalf("fragment %d: M %v", i, !more)
					}
				}
				if off != len(data) {
					t.Fatalf("fragment %d at offset %d, want %d", i, off, len(data))
				}
				if more && len(body)%8 != 0 {
					t.Fatalf("fragment %d carries %d bytes, not a multiple of 8", i, len(body))
				}
				data = append(data, body...)
			}
			if !bytes.Equal(data, whole[l4:]) {
				t.Fatalf("reassembled % x, want % x", data, whole[l4:])
			}
		})
	}
}
