package shield

import (
	"encoding/binary"
	"fmt"
	mathbits "math/bits"
	"net/netip"
	"sync/atomic"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// The exact tables (exact_table_v4/v6 and exact_slots in bpf/shield.c):
// each list's exact addresses in arrays the data path reads inline; the
// prefix tables (prefix_table_v4/v6, prefix_slots) hold the prefixes the
// same way, keyed by masked address and length. An
// address may take any of the 4 ways of the 2 buckets its two hashes pick;
// userspace places it, and keeps it where it is until it is removed. What
// finds no free way goes to the list's hash map (the data path looks there
// only when the table does not hold the address and the map is not empty).
// Userspace writes the tables through mmap, in the order the data path's
// reading relies on: a free way's address and expiry, then its state, valid
// with the next generation; a removal stores the next generation, not
// valid; a held entry's expiry changes in place, one 8-byte store. Where the
// kernel cannot mmap an array (before 5.5) the tables stay empty and every
// exact entry goes to the hash maps, as before the tables.

const (
	exactWays      = 4
	exact4AllowLog = 13
	exact4BlockLog = 17
	exact6AllowLog = 13
	exact6BlockLog = 16
	exact4Buckets  = 1<<exact4AllowLog + 1<<exact4BlockLog
	exact6Buckets  = 1<<exact6AllowLog + 1<<exact6BlockLog
	exactSlotBytes = 16 // struct exact_slot

	prefixAllowLog = 11
	prefixBlockLog = 14
	prefixBuckets  = 1<<prefixAllowLog + 1<<prefixBlockLog
)

// tableGeom is a table's layout: its ways' width, whether its key has a
// prefix length, its lists' bucket counts (log2) and where its ways' slots
// start.
type tableGeom struct {
	v6       bool // the family's
	wide     bool // 32-byte ways (IPv6 addresses and prefixes), else 16 (IPv4)
	prefix   bool // prefixes: IPv4 as prefix4Key, IPv6 with the length in the key's fifth word
	allowLog int
	blockLog int
	slotBase uint32
}

var (
	geomExact4  = tableGeom{allowLog: exact4AllowLog, blockLog: exact4BlockLog}
	geomExact6  = tableGeom{v6: true, wide: true, allowLog: exact6AllowLog, blockLog: exact6BlockLog, slotBase: exactWays * exact4Buckets}
	geomPrefix4 = tableGeom{prefix: true, allowLog: prefixAllowLog, blockLog: prefixBlockLog}
	geomPrefix6 = tableGeom{v6: true, wide: true, prefix: true, allowLog: prefixAllowLog, blockLog: prefixBlockLog, slotBase: exactWays * prefixBuckets}
)

// The layouts the data path and exactTable share.
var (
	_ [unsafe.Sizeof(shieldExact4Bucket{}) - exactWays*16]struct{}
	_ [exactWays*16 - unsafe.Sizeof(shieldExact4Bucket{})]struct{}
	_ [unsafe.Sizeof(shieldExact6Bucket{}) - exactWays*32]struct{}
	_ [exactWays*32 - unsafe.Sizeof(shieldExact6Bucket{})]struct{}
	_ [unsafe.Sizeof(shieldExactSlot{}) - exactSlotBytes]struct{}
	_ [unsafe.Sizeof(shieldPrefixBucket{}) - exactWays*32]struct{}
	_ [exactWays*32 - unsafe.Sizeof(shieldPrefixBucket{})]struct{}
	_ [unsafe.Offsetof(shieldPrefixBucket{}.Ways[0].Plen) - 20]struct{}
	_ [20 - unsafe.Offsetof(shieldPrefixBucket{}.Ways[0].Plen)]struct{}
)

// exactKey is an address as the tables hold it: the packet's bytes as
// host-order words, IPv4 in the first word alone; in the IPv6 prefix
// table, the masked address and, in the fifth word, the length; in the
// IPv4 prefix table, prefix4Key in the first word.
type exactKey [5]uint32

// prefix4Key is the data path's prefix4_key: the address's first bits
// (as a number), a 1, then zeros, so that the length is one word's.
func prefix4Key(p netip.Prefix) uint32 {
	b := p.Masked().Addr().As4()
	return binary.BigEndian.Uint32(b[:]) | 1<<(31-p.Bits())
}

// prefix4Of is the prefix a prefix4Key stands for.
func prefix4Of(key uint32) netip.Prefix {
	bits := 31 - mathbits.TrailingZeros32(key)
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], key&^(1<<(31-bits)))
	return netip.PrefixFrom(netip.AddrFrom4(b), bits)
}

// exactTable is one family's exact or prefix table.
type exactTable struct {
	geom  tableGeom
	mem   []byte // the buckets, mmapped; nil: the table is not used
	slots []byte // the slots map, mmapped (both families': v6 after v4)
	// masks are each list's bucket masks (allow, block), as the program
	// was loaded with.
	masks [2]uint32
	// index is each list's placed addresses, by way number (bucket *
	// exactWays + way).
	index [2]map[exactKey]uint32
}

// Way layout, in bytes from the way's start.
func (t *exactTable) wayBytes() int {
	if t.geom.wide {
		return 32
	}
	return 16
}

func (t *exactTable) stateOff() int {
	if t.geom.wide {
		return 16
	}
	return 4
}

// plenOff is where a prefix table's way holds its length.
const plenOff = 20

func (t *exactTable) expiresOff() int {
	if t.geom.wide {
		return 24
	}
	return 8
}

// addrWords is how many words of the key the way's address holds.
func (t *exactTable) addrWords() int {
	if t.geom.wide {
		return 4
	}
	return 1
}

func (t *exactTable) logs() (allow, block int) { return t.geom.allowLog, t.geom.blockLog }

// openExactTable maps m (the family's table) and slots, or returns a table
// that is not used when either cannot be mapped.
func openExactTable(m, slots *ebpf.Map, geom tableGeom, masks [2]uint32) (*exactTable, error) {
	t := &exactTable{geom: geom, masks: masks, index: [2]map[exactKey]uint32{{}, {}}}
	mem, err := mmapArray(m)
	if err != nil || mem == nil {
		return t, err
	}
	sl, err := mmapArray(slots)
	if err != nil || sl == nil {
		unix.Munmap(mem)
		return t, err
	}
	t.mem, t.slots = mem, sl
	t.rebuild()
	return t, nil
}

// mmapArray maps an array created BPF_F_MMAPABLE; nil when it was not.
func mmapArray(m *ebpf.Map) ([]byte, error) {
	info, err := m.Info()
	if err != nil {
		return nil, fmt.Errorf("reading map info: %w", err)
	}
	if info.Flags&unix.BPF_F_MMAPABLE == 0 {
		return nil, nil
	}
	mem, err := unix.Mmap(m.FD(), 0, int(m.MaxEntries())*int(m.ValueSize()), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mapping %s: %w", info.Name, err)
	}
	return mem, nil
}

func (t *exactTable) close() error {
	if t == nil || t.mem == nil {
		return nil
	}
	err := unix.Munmap(t.mem)
	if e := unix.Munmap(t.slots); err == nil {
		err = e
	}
	t.mem, t.slots = nil, nil
	return err
}

func (t *exactTable) u32(off int) *uint32 { return (*uint32)(unsafe.Pointer(&t.mem[off])) }
func (t *exactTable) u64(off int) *uint64 { return (*uint64)(unsafe.Pointer(&t.mem[off])) }

// slot is a way's exact_slot: its hit counter and rule id.
func (t *exactTable) slot(way uint32) (hits *uint64, rule *uint32) {
	off := int(way+t.geom.slotBase) * exactSlotBytes
	return (*uint64)(unsafe.Pointer(&t.slots[off])), (*uint32)(unsafe.Pointer(&t.slots[off+8]))
}

// hashes are the data path's two hashes of a key (exact_v4, exact_v6,
// prefix_in).
func (t *exactTable) hashes(k exactKey) [2]uint32 {
	x := k[0]
	if t.geom.wide {
		x = k[0]*0x85EBCA77 + k[1]*0xC2B2AE3D + k[2]*0x27D4EB2F + k[3]*0x165667B1
	}
	if t.geom.prefix && t.geom.wide {
		x += k[4] * 0x61C88647
	}
	return [2]uint32{x * 0x9E3779B1, x * 0x85EBCA77}
}

// bucket is the data path's exact4/6_bucket_of.
func (t *exactTable) bucket(list int, h uint32) uint32 {
	allow, block := t.logs()
	base := uint32(0)
	if list == 1 {
		base = 1 << allow
	}
	return base + (h>>(32-block))&t.masks[list]
}

// listOf is the list whose range holds bucket b.
func (t *exactTable) listOf(b uint32) int {
	if allow, _ := t.logs(); b >= 1<<allow {
		return 1
	}
	return 0
}

func (t *exactTable) wayOff(way uint32) int { return int(way) * t.wayBytes() }

func (t *exactTable) keyAt(off int) exactKey {
	var k exactKey
	for i := range t.addrWords() {
		k[i] = atomic.LoadUint32(t.u32(off + 4*i))
	}
	if t.geom.prefix && t.geom.wide {
		k[4] = atomic.LoadUint32(t.u32(off + plenOff))
	}
	return k
}

// rebuild reads the placed addresses back (a table adopted from an earlier
// daemon). An address found twice keeps its first way; the other is freed.
func (t *exactTable) rebuild() {
	ways := uint32(len(t.mem) / t.wayBytes())
	for w := range ways {
		off := t.wayOff(w)
		st := atomic.LoadUint32(t.u32(off + t.stateOff()))
		if st&1 == 0 {
			continue
		}
		list, k := t.listOf(w/exactWays), t.keyAt(off)
		if _, dup := t.index[list][k]; dup {
			atomic.StoreUint32(t.u32(off+t.stateOff()), (st>>1+1)<<1)
			continue
		}
		t.index[list][k] = w
	}
}

// used reports whether the table takes entries.
func (t *exactTable) used() bool { return t != nil && t.mem != nil }

func (t *exactTable) count(list int) int { return len(t.index[list]) }

// holds reports whether list's entry k is in the table.
func (t *exactTable) holds(list int, k exactKey) bool {
	_, ok := t.index[list][k]
	return ok
}

// update changes a held entry's expiry and rule in place, keeping its hits.
func (t *exactTable) update(list int, k exactKey, expires uint64, rule uint32) bool {
	w, ok := t.index[list][k]
	if !ok {
		return false
	}
	atomic.StoreUint64(t.u64(t.wayOff(w)+t.expiresOff()), expires)
	_, r := t.slot(w)
	atomic.StoreUint32(r, rule)
	return true
}

// place writes a new entry into a free way of its buckets, and reports
// whether there was one.
func (t *exactTable) place(list int, k exactKey, expires uint64, rule uint32) bool {
	for _, h := range t.hashes(k) {
		b := t.bucket(list, h)
		for i := range uint32(exactWays) {
			w := b*exactWays + i
			off := t.wayOff(w)
			st := atomic.LoadUint32(t.u32(off + t.stateOff()))
			if st&1 != 0 {
				continue
			}
			for j := range t.addrWords() {
				atomic.StoreUint32(t.u32(off+4*j), k[j])
			}
			if t.geom.prefix && t.geom.wide {
				atomic.StoreUint32(t.u32(off+plenOff), k[4])
			}
			atomic.StoreUint64(t.u64(off+t.expiresOff()), expires)
			hits, r := t.slot(w)
			atomic.StoreUint64(hits, 0)
			atomic.StoreUint32(r, rule)
			atomic.StoreUint32(t.u32(off+t.stateOff()), (st>>1+1)<<1|1)
			t.index[list][k] = w
			return true
		}
	}
	return false
}

// remove frees a held entry's way, and reports whether it was held.
func (t *exactTable) remove(list int, k exactKey) bool {
	w, ok := t.index[list][k]
	if !ok {
		return false
	}
	p := t.u32(t.wayOff(w) + t.stateOff())
	atomic.StoreUint32(p, (atomic.LoadUint32(p)>>1+1)<<1)
	delete(t.index[list], k)
	return true
}

// entries calls fn for every entry of list.
func (t *exactTable) entries(list int, fn func(k exactKey, expires, hits uint64, rule uint32)) {
	for k, w := range t.index[list] {
		hits, r := t.slot(w)
		fn(k, atomic.LoadUint64(t.u64(t.wayOff(w)+t.expiresOff())), atomic.LoadUint64(hits), atomic.LoadUint32(r))
	}
}

// clear empties the table and its slots (tests reusing a shield).
func (t *exactTable) clear() {
	if !t.used() {
		return
	}
	clear(t.mem)
	lo := int(t.geom.slotBase) * exactSlotBytes
	clear(t.slots[lo : lo+len(t.mem)/t.wayBytes()*exactSlotBytes])
	t.index = [2]map[exactKey]uint32{{}, {}}
}
