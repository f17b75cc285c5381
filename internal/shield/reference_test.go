//go:build linux

package shield

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"
)

// refRule is a list entry as the reference classifier sees it.
type refRule struct {
	list    List
	prefix  netip.Prefix
	expires uint64 // boot ns, 0 = permanent
}

// testRules reads both lists back from the kernel for the reference classifier.
func (s *Shield) testRules(t testing.TB) []refRule {
	t.Helper()
	clk := s.clock()
	var out []refRule
	for _, l := range []List{Allowlist, Blocklist} {
		rules, err := s.Rules(l)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rules {
			out = append(out, refRule{l, r.Prefix, clk.toBoot(r.Expires)})
		}
	}
	return out
}

// reference is a straightforward Go model of the data path with rate limits
// off: it parses the frame the way bpf/shield.c is specified to and returns
// the XDP verdict (enforce mode) and the reason, with the default settings
// (long header chains dropped).
func reference(frame []byte, rules []refRule, now uint64) (uint32, Reason) {
	return referenceWith(frame, rules, now, false)
}

// referenceWith is reference with LongChainsCharge when charge is set.
func referenceWith(frame []byte, rules []refRule, now uint64, charge bool) (uint32, Reason) {
	pass := func(r Reason) (uint32, Reason) { return xdpPass, r }
	drop := func(r Reason) (uint32, Reason) { return xdpDrop, r }
	if len(frame) < 14 {
		return pass(ReasonMalformed)
	}
	proto := binary.BigEndian.Uint16(frame[12:])
	off := 14
	for range 2 {
		if proto != 0x8100 && proto != 0x88a8 {
			break
		}
		if len(frame) < off+4 {
			return pass(ReasonMalformed)
		}
		proto = binary.BigEndian.Uint16(frame[off+2:])
		off += 4
	}
	const (
		fragNone = iota
		fragFirst
		fragLater
	)
	var (
		src       netip.Addr
		l4proto   uint8
		l4start   = -1 // offset of the L4 header; -1: none to read
		dgramEnd  int  // where the IP datagram ends, as declared
		frag      = fragNone
		fragUnits int
		unparsed  bool
		chainLong bool
	)
	switch proto {
	case 0x8100, 0x88a8:
		return pass(ReasonMalformed)
	case 0x0800:
		if len(frame) < off+20 || frame[off]>>4 != 4 || frame[off]&0xf < 5 {
			return pass(ReasonMalformed)
		}
		ihl := int(frame[off]&0xf) * 4
		if len(frame) < off+ihl {
			return pass(ReasonMalformed)
		}
		src = netip.AddrFrom4([4]byte(frame[off+12 : off+16]))
		l4proto = frame[off+9]
		dgramEnd = off + int(binary.BigEndian.Uint16(frame[off+2:]))
		fo := binary.BigEndian.Uint16(frame[off+6:])
		if fragUnits = int(fo & 0x1fff); fragUnits != 0 {
			frag = fragLater
		} else {
			l4start = off + ihl
			if fo&0x2000 != 0 {
				frag = fragFirst
			}
		}
	case 0x86dd:
		if len(frame) < off+40 || frame[off]>>4 != 6 {
			return pass(ReasonMalformed)
		}
		src = netip.AddrFrom16([16]byte(frame[off+8 : off+24]))
		dgramEnd = len(frame)
		if plen := int(binary.BigEndian.Uint16(frame[off+4:])); plen != 0 {
			dgramEnd = off + 40 + plen
		}
		next, pos := frame[off+6], off+40
		for range 6 {
			if !isExt(next) || len(frame) < pos+4 {
				break
			}
			hdr := pos
			if next == 44 {
				fo := binary.BigEndian.Uint16(frame[pos+2:])
				next = frame[hdr]
				pos += 8
				if fo>>3 != 0 {
					frag, fragUnits = fragLater, int(fo>>3)
					break
				}
				if fo&1 != 0 {
					frag = fragFirst
				}
				continue
			}
			if next == 51 {
				pos += (int(frame[pos+1]) + 2) * 4
			} else {
				pos += (int(frame[pos+1]) + 1) * 8
			}
			next = frame[hdr]
		}
		l4proto = next
		if frag != fragLater {
			ext := isExt(next)
			switch {
			case ext && pos+4 > len(frame), !ext && pos > len(frame):
				unparsed = true
			case ext:
				chainLong = true
			default:
				l4start = pos
			}
		}
	default:
		return pass(ReasonNonIP)
	}
	if hit, _ := refMatch(rules, Allowlist, src, now); hit {
		return pass(ReasonAllowlisted)
	}
	if hit, exact := refMatch(rules, Blocklist, src, now); hit {
		if exact {
			return drop(ReasonBlockedExact)
		}
		return drop(ReasonBlockedPrefix)
	}
	switch {
	case frag == fragLater:
		if l4proto == 6 && fragUnits == 1 {
			return drop(ReasonFragment)
		}
		return pass(ReasonPassed)
	case chainLong:
		if !charge {
			return drop(ReasonHeaderChain)
		}
		return pass(ReasonMalformed)
	case unparsed:
		if frag == fragFirst {
			return drop(ReasonFragment)
		}
		return pass(ReasonMalformed)
	}
	if frag == fragFirst {
		// What the limiter reads must lie within the frame and the
		// datagram both.
		room := min(dgramEnd, len(frame)) - l4start
		need, read := map[uint8]int{6: 14, 17: 8, 1: 4, 58: 4}[l4proto]
		if read && room < need {
			return drop(ReasonFragment)
		}
		return pass(ReasonPassed)
	}
	if !l4Complete(frame[l4start:], l4proto) {
		return pass(ReasonMalformed)
	}
	return pass(ReasonPassed)
}

// l4Complete reports whether the L4 header the data path reads is whole.
func l4Complete(b []byte, proto uint8) bool {
	switch proto {
	case 6:
		return len(b) >= 20
	case 17:
		return len(b) >= 8
	case 1, 58:
		return len(b) >= 4
	}
	return true
}

func isExt(p uint8) bool { return p == 0 || p == 43 || p == 60 || p == 44 || p == 51 }

// refMatch looks the source up in a list: a live exact entry first, then
// the longest live prefix. An expired entry is as if absent.
func refMatch(rules []refRule, l List, src netip.Addr, now uint64) (hit, exact bool) {
	live := func(r refRule) bool { return r.expires == 0 || r.expires > now }
	var covering []refRule
	for _, r := range rules {
		if r.list != l || !r.prefix.Contains(src) {
			continue
		}
		if r.prefix.Bits() == src.BitLen() {
			if live(r) {
				return true, true
			}
			continue
		}
		covering = append(covering, r)
	}
	slices.SortFunc(covering, func(a, b refRule) int { return b.prefix.Bits() - a.prefix.Bits() })
	for _, r := range covering {
		if live(r) {
			return true, false
		}
	}
	return false, false
}
