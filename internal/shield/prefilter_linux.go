package shield

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"

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
		s.lens[i] = newLenMasks(i >= prefilterAllowV6)
	}
}

// flushPrefilters writes the changed parts of every filter.
func (s *Shield) flushPrefilters() error {
	if err := s.flushExactFilters(); err != nil {
		return err
	}
	if err := s.flushLenMasks(); err != nil {
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
		s.lens[i].addPrefix(p)
	default:
		buckets(p, s.filters[i].add)
		s.lens[i].addPrefix(p)
	}
}

func (s *Shield) filterRemove(l List, p netip.Prefix) {
	i := prefilterIndex(l, p)
	switch {
	case isExact(p):
		s.exact[i].remove(exactHash(p.Addr()))
	case !p.Addr().Is4() && p.Bits() >= longPrefixBits:
		s.long[i-prefilterAllowV6].remove(longBucket(p.Addr()))
		s.lens[i].removePrefix(p)
	default:
		buckets(p, s.filters[i].remove)
		s.lens[i].removePrefix(p)
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

// lenMasks are a list's prefix lengths per bucket, as prefix_lens_v4/v6
// hold them (bpf/shield.c): a length's bit is set while some prefix of that
// length covers part of the bucket, counted per bucket and length so the
// bit goes only with the last such prefix.
type lenMasks struct {
	v6     bool
	counts map[uint32]uint32 // bucket<<8 | length
	masks  [][2]uint64       // per bucket, as the map holds it (bit)
	dirty  map[uint32]bool   // map values to write (bucket / perValue)
	// A prefix that covers a large share of the buckets (coversAll) is
	// counted once here instead of in each bucket, and its length is in
	// every bucket's mask as written: counting an IPv6 /8 in each of 2^16
	// buckets made every change to it cost 2^16 map updates.
	all     map[int]uint32 // length → prefixes
	allMask [2]uint64
}

const (
	lens4PerValue = 16 // PLENS4_PER_VALUE
	lens6Log      = 16 // PLENS6_LOG
	lens6PerValue = 4  // PLENS6_PER_VALUE
	lensBuckets   = 1 << 16
)

// newLenMasks returns empty masks with every value to be written.
func newLenMasks(v6 bool) *lenMasks {
	m := &lenMasks{v6: v6, counts: map[uint32]uint32{}, masks: make([][2]uint64, lensBuckets), dirty: map[uint32]bool{},
		all: map[int]uint32{}}
	m.dirtyAll()
	return m
}

func (m *lenMasks) dirtyAll() {
	for v := range uint32(lensBuckets / m.perValue()) {
		m.dirty[v] = true
	}
}

// coversAll reports whether a prefix is counted in all instead of per
// bucket: IPv4 below /8 (512 /16s or more), IPv6 below /16 (every bucket).
func (m *lenMasks) coversAll(p netip.Prefix) bool {
	if m.v6 {
		return p.Bits() < 16
	}
	return p.Bits() < 8
}

func (m *lenMasks) addPrefix(p netip.Prefix) {
	if !m.coversAll(p) {
		m.each(p, (*lenMasks).add)
		return
	}
	if m.all[p.Bits()] == 0 {
		w, bit := m.bit(p.Bits())
		m.allMask[w] |= bit
		m.dirtyAll()
	}
	m.all[p.Bits()]++
}

func (m *lenMasks) removePrefix(p netip.Prefix) {
	if !m.coversAll(p) {
		m.each(p, (*lenMasks).remove)
		return
	}
	switch n := m.all[p.Bits()]; n {
	case 0:
	case 1:
		delete(m.all, p.Bits())
		w, bit := m.bit(p.Bits())
		m.allMask[w] &^= bit
		m.dirtyAll()
	default:
		m.all[p.Bits()] = n - 1
	}
}

// written is bucket b's masks as the map holds them.
func (m *lenMasks) written(b uint32) [2]uint64 {
	return [2]uint64{m.masks[b][0] | m.allMask[0], m.masks[b][1] | m.allMask[1]}
}

func (m *lenMasks) perValue() uint32 {
	if m.v6 {
		return lens6PerValue
	}
	return lens4PerValue
}

// bit is where a length's bit lies in a bucket's masks: the lowest set bit
// is the longest length (bit 31 - l for IPv4; bit 127 - l of the first word
// from /64, 63 - l of the second below).
func (m *lenMasks) bit(bits int) (word int, mask uint64) {
	switch {
	case !m.v6:
		return 0, 1 << (31 - bits)
	case bits >= 64:
		return 0, 1 << (127 - bits)
	}
	return 1, 1 << (63 - bits)
}

func (m *lenMasks) add(b uint32, bits int) {
	k := b<<8 | uint32(bits)
	if m.counts[k] == 0 {
		w, bit := m.bit(bits)
		m.masks[b][w] |= bit
		m.dirty[b/m.perValue()] = true
	}
	m.counts[k]++
}

func (m *lenMasks) remove(b uint32, bits int) {
	k := b<<8 | uint32(bits)
	switch n := m.counts[k]; n {
	case 0:
		return
	case 1:
		delete(m.counts, k)
		w, bit := m.bit(bits)
		m.masks[b][w] &^= bit
		m.dirty[b/m.perValue()] = true
	default:
		m.counts[k] = n - 1
	}
}

// bucketLens6 is prefix_v6's bucket of an IPv6 address's top 32 bits.
func bucketLens6(w uint32) uint32 { return (w * 0x9E3779B1) >> (32 - lens6Log) }

// each calls fn for every bucket a prefix covers, the same way each time,
// so adding and removing a prefix balance: the /16s of an IPv4 prefix, the
// buckets of the /32s an IPv6 prefix covers (all of them below /16, which
// addPrefix counts in all instead).
func (m *lenMasks) each(p netip.Prefix, fn func(*lenMasks, uint32, int)) {
	bits := p.Bits()
	if !m.v6 {
		buckets(p, func(b uint32) { fn(m, b, bits) })
		return
	}
	b := p.Addr().As16()
	w := binary.BigEndian.Uint32(b[:4])
	switch {
	case bits >= 32:
		fn(m, bucketLens6(w), bits)
	case bits < 16:
		for i := range uint32(lensBuckets) {
			fn(m, i, bits)
		}
	default:
		for i := uint32(0); i < 1<<(32-bits); i++ {
			fn(m, bucketLens6(w+i), bits)
		}
	}
}

// flushLenMasks writes the changed values of every list's masks.
func (s *Shield) flushLenMasks() error {
	for i, m := range s.lens {
		if len(m.dirty) == 0 {
			continue
		}
		which := uint32(i % 2) // allow 0, block 1
		per := m.perValue()
		keys := make([]uint32, 0, len(m.dirty))
		for v := range m.dirty {
			keys = append(keys, v)
		}
		slices.Sort(keys)
		var vals any
		if m.v6 {
			vs := make([]shieldPlens6, len(keys))
			for j, v := range keys {
				for b := range per {
					w := m.written(v*per + b)
					vs[j].Mask[2*b], vs[j].Mask[2*b+1] = w[0], w[1]
				}
			}
			vals = vs
		} else {
			vs := make([]shieldPlens4, len(keys))
			for j, v := range keys {
				for b := range per {
					vs[j].Mask[b] = uint32(m.written(v*per + b)[0])
				}
			}
			vals = vs
		}
		mp, values := s.objs.PrefixLensV4, uint32(lensBuckets/lens4PerValue)
		if m.v6 {
			mp, values = s.objs.PrefixLensV6, uint32(lensBuckets/lens6PerValue)
		}
		for j := range keys {
			keys[j] += which * values
		}
		if err := s.writeArray(mp, keys, vals); err != nil {
			return fmt.Errorf("writing prefix lengths %d: %w", i, err)
		}
		clear(m.dirty)
	}
	return nil
}

// writeArray writes values (a slice) at keys of an array map: in one batch
// where the kernel has batch updates (5.6), else one at a time.
func (s *Shield) writeArray(m *ebpf.Map, keys []uint32, vals any) error {
	if !s.oneByOne && len(keys) > 1 {
		_, err := m.BatchUpdate(keys, vals, nil)
		if !errors.Is(err, ebpf.ErrNotSupported) {
			return err
		}
		s.oneByOne = true
	}
	v := reflect.ValueOf(vals)
	for j, k := range keys {
		if err := m.Update(&k, v.Index(j).Addr().Interface(), ebpf.UpdateAny); err != nil {
			return err
		}
	}
	return nil
}
