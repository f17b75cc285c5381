package shield

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
)

// The prefilter is a bitmap per prefix trie that lets the data path skip the
// trie lookup when no prefix can cover the source (see bpf/shield.c). The
// daemon keeps a reference count per bucket so a bit is cleared only when the
// last prefix touching its bucket is gone. Bits are set before a prefix is
// inserted and cleared after it is removed, so the filter never hides a
// prefix from the program.

const (
	prefilterBits = 1 << 16
)

// Indexes of the tries' filters, as enum prefilter_index: the IPv4 ones key
// the prefilters map, the IPv6 ones (less prefilterAllowV6) prefilters_v6 and
// prefilters_long; all four key exact_filters.
const (
	prefilterAllowV4 = iota
	prefilterBlockV4
	prefilterAllowV6
	prefilterBlockV6
	numPrefilters
)

type prefilter struct {
	counts []uint32 // per bucket
	words  []uint64
	dirty  bool
}

func newPrefilter(bits int) *prefilter {
	return &prefilter{counts: make([]uint32, bits), words: make([]uint64, bits/64), dirty: true}
}

// IPv6 prefixes shorter than /48 are bucketed by a hash of their top 32
// bits into 2^20 buckets (the data path's prefilters_v6).
const (
	prefilter6Log  = 20
	prefilter6Bits = 1 << prefilter6Log
)

func bucketV6(w uint32) uint32 { return (w * 0x9E3779B1) >> (32 - prefilter6Log) }

func (f *prefilter) add(b uint32) {
	if f.counts[b] == 0 {
		f.words[b/64] |= 1 << (b % 64)
		f.dirty = true
	}
	f.counts[b]++
}

func (f *prefilter) remove(b uint32) {
	if f.counts[b] == 0 {
		return
	}
	f.counts[b]--
	if f.counts[b] == 0 {
		f.words[b/64] &^= 1 << (b % 64)
		f.dirty = true
	}
}

func prefilterIndex(l List, p netip.Prefix) int {
	i := prefilterBlockV4
	if l == Allowlist {
		i = prefilterAllowV4
	}
	if !p.Addr().Is4() {
		i += 2
	}
	return i
}

// buckets calls fn for every bucket a prefix covers, the same way each time,
// so adding and removing a prefix balance.
func buckets(p netip.Prefix, fn func(uint32)) {
	a := p.Addr()
	if a.Is4() {
		b := a.As4()
		top := uint32(binary.BigEndian.Uint16(b[:2]))
		if p.Bits() >= 16 {
			fn(top)
			return
		}
		for i := uint32(0); i < 1<<(16-p.Bits()); i++ {
			fn(top + i)
		}
		return
	}
	b := a.As16()
	w := binary.BigEndian.Uint32(b[:4])
	switch {
	case p.Bits() >= 32:
		fn(bucketV6(w))
	case p.Bits() < 16:
		for i := uint32(0); i < prefilter6Bits; i++ {
			fn(i)
		}
	default:
		for i := uint32(0); i < 1<<(32-p.Bits()); i++ {
			fn(bucketV6(w + i))
		}
	}
}

// initPrefilters rebuilds the filters from the maps' keys: after an
// adoption the maps hold the truth.
func (s *Shield) initPrefilters() error {
	s.resetPrefilters()
	for _, l := range []List{Allowlist, Blocklist} {
		rules, err := s.rulesLocked(l)
		if err != nil {
			return err
		}
		for _, r := range rules {
			s.filterAdd(l, r.Prefix)
		}
	}
	return s.flushPrefilters()
}

// resetPrefilters empties the filters and marks every part to be written.
func (s *Shield) resetPrefilters() {
	for i := range s.filters {
		bits := prefilterBits
		if i == prefilterAllowV6 || i == prefilterBlockV6 {
			bits = prefilter6Bits
		}
		s.filters[i] = newPrefilter(bits)
		if i < len(s.long) {
			s.long[i] = newPrefilter(prefilter6Bits)
		}
		s.exact[i] = newExactFilter()
		for blk := range uint32(exactBlocks) {
			s.exact[i].dirty[blk] = true
		}
	}
}

// flushPrefilters writes the changed parts of every filter.
func (s *Shield) flushPrefilters() error {
	if err := s.flushExactFilters(); err != nil {
		return err
	}
	for i, f := range s.long {
		if !f.dirty {
			continue
		}
		key := uint32(i)
		if err := s.objs.PrefiltersLong.Update(&key, f.words, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("writing long prefilter %d: %w", i, err)
		}
		f.dirty = false
	}
	for i, f := range s.filters {
		if !f.dirty {
			continue
		}
		key, m := uint32(i), s.objs.Prefilters
		if i == prefilterAllowV6 || i == prefilterBlockV6 {
			key, m = uint32(i-prefilterAllowV6), s.objs.PrefiltersV6
		}
		if err := m.Update(&key, f.words, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("writing prefilter %d: %w", i, err)
		}
		f.dirty = false
	}
	return nil
}

// The exact filter is a bitmap per exact-address map (bpf/shield.c,
// exact_filters): bit h is set while some listed address hashes to h, so the
// data path looks up the hash map only for addresses that may be listed.
// Reference counts live only for the bits in use.
const (
	exactFilterLog   = 22
	exactBlockWords  = 512
	exactBlocks      = 1 << (exactFilterLog - 15)
	exactFilterBlock = exactBlockWords * 64 // bits per block
)

type exactFilter struct {
	counts map[uint32]uint32
	blocks [exactBlocks][exactBlockWords]uint64
	dirty  map[uint32]bool // blocks to write
}

func newExactFilter() *exactFilter {
	return &exactFilter{counts: map[uint32]uint32{}, dirty: map[uint32]bool{}}
}

func (f *exactFilter) add(h uint32) {
	if f.counts[h] == 0 {
		f.blocks[h/exactFilterBlock][(h/64)%exactBlockWords] |= 1 << (h % 64)
		f.dirty[h/exactFilterBlock] = true
	}
	f.counts[h]++
}

// counted reports whether some listed address hashes to h.
func (f *exactFilter) counted(h uint32) bool { return f.counts[h] > 0 }

func (f *exactFilter) remove(h uint32) {
	n := f.counts[h]
	switch {
	case n == 0:
		return
	case n > 1:
		f.counts[h] = n - 1
		return
	}
	delete(f.counts, h)
	f.blocks[h/exactFilterBlock][(h/64)%exactBlockWords] &^= 1 << (h % 64)
	f.dirty[h/exactFilterBlock] = true
}

// exactHash is the data path's exact_hash_v4/v6 of an address: the packet's
// bytes read as host-order words.
func exactHash(a netip.Addr) uint32 {
	if a.Is4() {
		b := a.As4()
		return (binary.NativeEndian.Uint32(b[:]) * 0x9E3779B1) >> (32 - exactFilterLog)
	}
	b := a.As16()
	w := func(i int) uint32 { return binary.NativeEndian.Uint32(b[4*i:]) }
	x := w(0)*0x85EBCA77 + w(1)*0xC2B2AE3D + w(2)*0x27D4EB2F + w(3)*0x165667B1
	return (x * 0x9E3779B1) >> (32 - exactFilterLog)
}

// isExact reports whether p is a single address, kept in an exact map.
func isExact(p netip.Prefix) bool { return p.Bits() == p.Addr().BitLen() }

// filterAdd and filterRemove keep the filter of p's map up to date: the
// prefix buckets for a prefix, the exact bitmap for an address.
func (s *Shield) filterAdd(l List, p netip.Prefix) {
	i := prefilterIndex(l, p)
	switch {
	case isExact(p):
		s.exact[i].add(exactHash(p.Addr()))
	case !p.Addr().Is4() && p.Bits() >= longPrefixBits:
		s.long[i-prefilterAllowV6].add(longBucket(p.Addr()))
	default:
		buckets(p, s.filters[i].add)
	}
}

func (s *Shield) filterRemove(l List, p netip.Prefix) {
	i := prefilterIndex(l, p)
	switch {
	case isExact(p):
		s.exact[i].remove(exactHash(p.Addr()))
	case !p.Addr().Is4() && p.Bits() >= longPrefixBits:
		s.long[i-prefilterAllowV6].remove(longBucket(p.Addr()))
	default:
		buckets(p, s.filters[i].remove)
	}
}

// longPrefixBits is where IPv6 prefixes move to the long prefilter.
const longPrefixBits = 48

// longBucket is the data path's may_match_long bucket: a hash of the top
// 48 bits.
func longBucket(a netip.Addr) uint32 {
	b := a.As16()
	w0 := binary.BigEndian.Uint32(b[0:])
	w1 := binary.BigEndian.Uint32(b[4:]) >> 16
	return ((w0 * 0x9E3779B1) ^ (w1 * 0x85EBCA77)) >> (32 - prefilter6Log)
}

func (s *Shield) flushExactFilters() error {
	for i, f := range s.exact {
		for blk := range f.dirty {
			key := uint32(i*exactBlocks) + blk
			if err := s.objs.ExactFilters.Update(&key, &f.blocks[blk], ebpf.UpdateAny); err != nil {
				return fmt.Errorf("writing exact filter %d: %w", i, err)
			}
			delete(f.dirty, blk)
		}
	}
	return nil
}
