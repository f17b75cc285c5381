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
	prefilterBits  = 1 << 16
	prefilterWords = prefilterBits / 64
)

// Indexes of the prefilters map, as enum prefilter_index.
const (
	prefilterAllowV4 = iota
	prefilterBlockV4
	prefilterAllowV6
	prefilterBlockV6
	numPrefilters
)

type prefilter struct {
	counts []uint32 // per bucket
	words  [prefilterWords]uint64
	dirty  bool
}

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

func foldV6(w uint32) uint32 { return (w ^ (w >> 16)) & 0xffff }

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
		fn(foldV6(w))
	case p.Bits() < 16:
		for i := uint32(0); i < prefilterBits; i++ {
			fn(i)
		}
	default:
		for i := uint32(0); i < 1<<(32-p.Bits()); i++ {
			fn(foldV6(w + i))
		}
	}
}

// initPrefilters rebuilds the bitmaps from the prefix tries: after an
// adoption the tries hold the truth.
func (s *Shield) initPrefilters() error {
	for i := range s.filters {
		s.filters[i] = &prefilter{counts: make([]uint32, prefilterBits), dirty: true}
	}
	for _, l := range []List{Allowlist, Blocklist} {
		rules, err := s.Rules(l)
		if err != nil {
			return err
		}
		for _, r := range rules {
			if r.Prefix.Bits() != r.Prefix.Addr().BitLen() {
				f := s.filters[prefilterIndex(l, r.Prefix)]
				buckets(r.Prefix, f.add)
			}
		}
	}
	return s.flushPrefilters()
}

func (s *Shield) flushPrefilters() error {
	for i, f := range s.filters {
		if !f.dirty {
			continue
		}
		key := uint32(i)
		if err := s.objs.Prefilters.Update(&key, &f.words, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("writing prefilter %d: %w", i, err)
		}
		f.dirty = false
	}
	return nil
}
