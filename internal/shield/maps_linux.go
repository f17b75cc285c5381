package shield

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/perf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// Settings returns the settings the data path runs with.
func (s *Shield) Settings() Settings {
	s.mu.Lock()
	defer s.mu.Unlock()
	return settingsFromConfig(&s.cfg)
}

// SetSettings changes the data path's settings at runtime.
func (s *Shield) SetSettings(st Settings) error {
	if err := st.Validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.setSettingsLocked(st)
}

func (s *Shield) setSettingsLocked(st Settings) error {
	c := s.cfg // keeps presence and the injected clock
	c.Mode = 0
	if st.Mode == ModeMonitor {
		c.Mode = 1
	}
	c.V4Mask = prefixMask4(st.IPv4PrefixLen)
	c.V6Mask = prefixMask6(st.IPv6PrefixLen)
	c.AutoblockTtlNs = uint64(st.AutoBlockTTL)
	c.Flags = 0
	if st.LongChains == LongChainsCharge {
		c.Flags |= flagChargeLongChains
	}
	for i, b := range []Bucket{st.SYN, st.UDP, st.ICMP} {
		c.Rate[i].IntervalNs, c.Rate[i].ToleranceNs, c.Rate[i].AutoblockPkts = 0, 0, 0
		if b.PPS == 0 {
			continue
		}
		interval := uint64(time.Second) / uint64(b.PPS)
		c.Rate[i].IntervalNs = interval
		c.Rate[i].ToleranceNs = interval * uint64(b.Burst)
		c.Rate[i].AutoblockPkts = uint64(st.AutoBlockFactor) * uint64(b.PPS)
	}
	if err := s.writeConfigLocked(c); err != nil {
		return err
	}
	return s.syncManagementLocked() // its entries follow the source prefix lengths
}

func (s *Shield) writeConfigLocked(c shieldShieldConfig) error {
	var zero uint32
	if err := s.objs.Config.Update(&zero, &c, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("writing shield config: %w", err)
	}
	s.cfg = c
	return nil
}

func settingsFromConfig(c *shieldShieldConfig) Settings {
	st := Settings{
		Mode:          ModeEnforce,
		IPv4PrefixLen: maskLen(c.V4Mask),
		IPv6PrefixLen: maskLen(c.V6Mask[0]) + maskLen(c.V6Mask[1]) + maskLen(c.V6Mask[2]) + maskLen(c.V6Mask[3]),
		AutoBlockTTL:  time.Duration(c.AutoblockTtlNs),
		LongChains:    LongChainsDrop,
	}
	if c.Flags&flagChargeLongChains != 0 {
		st.LongChains = LongChainsCharge
	}
	if c.Mode == 1 {
		st.Mode = ModeMonitor
	}
	buckets := []*Bucket{&st.SYN, &st.UDP, &st.ICMP}
	for i, b := range buckets {
		r := c.Rate[i]
		if r.IntervalNs == 0 {
			continue
		}
		b.PPS = uint32(uint64(time.Second) / r.IntervalNs)
		b.Burst = uint32(r.ToleranceNs / r.IntervalNs)
		if b.PPS > 0 && st.AutoBlockFactor == 0 {
			st.AutoBlockFactor = int(r.AutoblockPkts / uint64(b.PPS))
		}
	}
	return st
}

// prefixMask4 is the network-order mask of an IPv4 prefix length, as the
// program reads it from memory on a little-endian host.
func prefixMask4(bits int) uint32 {
	var b [4]byte
	for i := 0; i < bits && i < 32; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return binary.NativeEndian.Uint32(b[:])
}

func prefixMask6(bits int) [4]uint32 {
	var out [4]uint32
	for w := range out {
		n := bits - 32*w
		out[w] = prefixMask4(max(0, min(32, n)))
	}
	return out
}

func maskLen(m uint32) int {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], m)
	n := 0
	for _, x := range b {
		for i := 7; i >= 0 && x&(1<<i) != 0; i-- {
			n++
		}
	}
	return n
}

// setClock replaces the data path's clock with a fixed CLOCK_BOOTTIME value;
// zero restores the real clock. Tests use it to make rates deterministic.
func (s *Shield) setClock(ns uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	line := s.line
	if ns != 0 {
		line = shieldClockSync{BaseNs: ns}
	}
	if err := s.writeLine(line); err != nil {
		return err
	}
	s.frozen = ns
	return nil
}

// kernelNow reads the clock the data path compares expiries to:
// CLOCK_BOOTTIME, or CLOCK_MONOTONIC where the kernel lacks the helper
// that reads boot time.
func (s *Shield) kernelNow() uint64 {
	id := int32(unix.CLOCK_BOOTTIME)
	if s.mono {
		id = unix.CLOCK_MONOTONIC
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(id, &ts); err != nil {
		panic(fmt.Sprintf("clock_gettime(%d): %v", id, err))
	}
	return uint64(ts.Nano())
}

// clock converts between wall time and the data path's boot-time clock.
type clock struct {
	boot uint64
	wall time.Time
}

func (s *Shield) clock() clock {
	if s.frozen != 0 {
		return clock{boot: s.frozen, wall: time.Now()}
	}
	return clock{boot: s.kernelNow(), wall: time.Now()}
}

func (c clock) toBoot(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	d := t.Sub(c.wall)
	if d <= 0 {
		return 1 // already expired; 0 would mean permanent
	}
	return c.boot + uint64(d)
}

func (c clock) toWall(ns uint64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return c.wall.Add(time.Duration(int64(ns) - int64(c.boot))).Round(time.Millisecond)
}

// listMaps are one list's four maps and their presence flags, and its
// index in the exact and prefix tables (0 allow, 1 block).
type listMaps struct {
	exact4, prefix4, exact6, prefix6             *ebpf.Map
	hasExact4, hasPrefix4, hasExact6, hasPrefix6 uint32
	// The hash maps' own flags: set while the map holds an entry.
	hasHash4, hasHash6, hasPrefixHash4, hasPrefixHash6 uint32
	list                                               int
}

func (s *Shield) maps(l List) (listMaps, error) {
	switch l {
	case Blocklist:
		return listMaps{s.objs.BlockV4, s.objs.BlockV4Lpm, s.objs.BlockV6, s.objs.BlockV6Lpm,
			uint32(shieldPresenceFlagHAS_BLOCK_V4), uint32(shieldPresenceFlagHAS_BLOCK_V4PREFIX),
			uint32(shieldPresenceFlagHAS_BLOCK_V6), uint32(shieldPresenceFlagHAS_BLOCK_V6PREFIX),
			uint32(shieldPresenceFlagHAS_BLOCK_V4HASH), uint32(shieldPresenceFlagHAS_BLOCK_V6HASH),
			uint32(shieldPresenceFlagHAS_BLOCK_V4PREFIX_HASH), uint32(shieldPresenceFlagHAS_BLOCK_V6PREFIX_HASH), 1}, nil
	case Allowlist:
		return listMaps{s.objs.AllowV4, s.objs.AllowV4Lpm, s.objs.AllowV6, s.objs.AllowV6Lpm,
			uint32(shieldPresenceFlagHAS_ALLOW_V4), uint32(shieldPresenceFlagHAS_ALLOW_V4PREFIX),
			uint32(shieldPresenceFlagHAS_ALLOW_V6), uint32(shieldPresenceFlagHAS_ALLOW_V6PREFIX),
			uint32(shieldPresenceFlagHAS_ALLOW_V4HASH), uint32(shieldPresenceFlagHAS_ALLOW_V6HASH),
			uint32(shieldPresenceFlagHAS_ALLOW_V4PREFIX_HASH), uint32(shieldPresenceFlagHAS_ALLOW_V6PREFIX_HASH), 0}, nil
	}
	return listMaps{}, fmt.Errorf("unknown list %q", l)
}

// slot is where one prefix lives: its map, key and presence flag.
func (lm listMaps) slot(p netip.Prefix) (m *ebpf.Map, key any, flag uint32) {
	a := p.Addr()
	if a.Is4() {
		b := a.As4()
		addr := binary.NativeEndian.Uint32(b[:]) // bytes as in the packet
		if p.Bits() == 32 {
			return lm.exact4, addr, lm.hasExact4
		}
		return lm.prefix4, shieldLpmV4Key{Prefixlen: uint32(p.Bits()), Addr: addr}, lm.hasPrefix4
	}
	words := addr6Words(a)
	if p.Bits() == 128 {
		return lm.exact6, shieldAddr6{Addr: words}, lm.hasExact6
	}
	return lm.prefix6, shieldLpmV6Key{Prefixlen: uint32(p.Bits()), Addr: words}, lm.hasPrefix6
}

// hashFlag is the presence flag of the hash map a masked prefix goes to
// when its table has no way for it.
func (lm listMaps) hashFlag(p netip.Prefix) uint32 {
	switch {
	case p.Addr().Is4() && isExact(p):
		return lm.hasHash4
	case p.Addr().Is4():
		return lm.hasPrefixHash4
	case isExact(p):
		return lm.hasHash6
	}
	return lm.hasPrefixHash6
}

// table is the exact or prefix table a masked prefix lives in, with its
// key there.
func (s *Shield) table(p netip.Prefix) (*exactTable, exactKey) {
	var k exactKey
	a := p.Addr()
	if a.Is4() {
		if !isExact(p) {
			k[0] = prefix4Key(p)
			return s.prefix4, k
		}
		b := a.As4()
		k[0] = binary.NativeEndian.Uint32(b[:])
		return s.table4, k
	}
	w := addr6Words(a)
	copy(k[:4], w[:])
	if isExact(p) {
		return s.table6, k
	}
	k[4] = uint32(p.Bits())
	return s.prefix6, k
}

// tablePrefix is the prefix a table's key stands for.
func tablePrefix(t *exactTable, k exactKey) netip.Prefix {
	if t.geom.prefix && !t.geom.v6 {
		return prefix4Of(k[0])
	}
	var a netip.Addr
	if t.geom.v6 {
		a = wordsAddr6([4]uint32(k[:4]))
	} else {
		var b [4]byte
		binary.NativeEndian.PutUint32(b[:], k[0])
		a = netip.AddrFrom4(b)
	}
	if t.geom.prefix {
		return netip.PrefixFrom(a, int(k[4]))
	}
	return netip.PrefixFrom(a, a.BitLen())
}

// entryPrefixlen is the length a prefix's entry records: its own for a
// prefix entry, 0 for an exact entry.
func entryPrefixlen(p netip.Prefix) uint32 {
	if p.Bits() == p.Addr().BitLen() {
		return 0
	}
	return uint32(p.Bits())
}

func addr6Words(a netip.Addr) [4]uint32 {
	b := a.As16()
	var w [4]uint32
	for i := range w {
		w[i] = binary.NativeEndian.Uint32(b[4*i:])
	}
	return w
}

func wordsAddr6(w [4]uint32) netip.Addr {
	var b [16]byte
	for i := range w {
		binary.NativeEndian.PutUint32(b[4*i:], w[i])
	}
	return netip.AddrFrom16(b)
}

// PutRules inserts or updates rules in a list. A rule already present keeps
// its hit counter; a prefix given more than once is written once, with its
// last rule. Prefixes must be masked.
func (s *Shield) PutRules(l List, rules []Rule) error {
	return s.Sync(l, ListChange{Put: rules})
}

// DeleteRules removes prefixes from a list; absent ones are ignored.
func (s *Shield) DeleteRules(l List, prefixes []netip.Prefix) error {
	return s.Sync(l, ListChange{Delete: prefixes})
}

// Sync applies one batch of changes to a list by exact key: Delete first,
// then Put, under one lock. It is idempotent: deleting an absent prefix and
// putting a rule already held are no-ops (a held rule keeps its hit
// counter), so a failed sync is repaired by syncing again. Deleted
// prefixes are masked; put rules must be, and nothing changes when one is
// not.
func (s *Shield) Sync(l List, ch ListChange) error {
	lm, err := s.maps(l)
	if err != nil {
		return err
	}
	del := make([]netip.Prefix, len(ch.Delete))
	for i, p := range ch.Delete {
		if !p.IsValid() {
			return fmt.Errorf("removing %v: invalid prefix", p)
		}
		del[i] = p.Masked()
	}
	for _, r := range ch.Put {
		if !r.Prefix.IsValid() || r.Prefix != r.Prefix.Masked() {
			return fmt.Errorf("rule %v: prefix must be valid and masked", r.Prefix)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(del) > 0 {
		if err := s.deleteRulesLocked(l, lm, del); err != nil {
			return err
		}
	}
	if len(ch.Put) > 0 {
		return s.putRulesLocked(l, lm, ch.Put)
	}
	return nil
}

func (s *Shield) putRulesLocked(l List, lm listMaps, rules []Rule) error {
	// Raise presence flags first so no entry is ever invisible to the program.
	var flags uint32
	for _, r := range rules {
		_, _, f := lm.slot(r.Prefix)
		flags |= f
	}
	rules = lastOfEach(rules)
	if s.cfg.Presence&flags != flags {
		c := s.cfg
		c.Presence |= flags
		if err := s.writeConfigLocked(c); err != nil {
			return err
		}
	}
	clk := s.clock()
	vals := make([]shieldEntry, len(rules))
	// Every rule is counted in the filters before any goes in, so no entry
	// is ever invisible to the program; a rule found already in the map
	// gives its count back (its entry holds one of its own).
	fresh := make([]bool, len(rules))
	// absent marks the exact rules whose hash the exact filter did not
	// count before this call: their keys cannot be in the map (the
	// filters count exactly what the maps hold), so they go in without
	// the write-if-absent check.
	absent := make([]bool, len(rules))
	for i, r := range rules {
		vals[i] = shieldEntry{ExpiresNs: clk.toBoot(r.Expires), RuleId: r.RuleID, Prefixlen: entryPrefixlen(r.Prefix)}
		fresh[i] = true
		absent[i] = isExact(r.Prefix) && !s.exact[prefilterIndex(l, r.Prefix)].counted(exactHash(r.Prefix.Addr()))
	}
	for _, r := range rules {
		s.filterAdd(l, r.Prefix)
	}
	undo := func(from int, err error) error {
		for i := from; i < len(rules); i++ {
			if fresh[i] {
				s.filterRemove(l, rules[i].Prefix)
			}
		}
		return errors.Join(err, s.flushPrefilters())
	}
	if err := s.flushPrefilters(); err != nil {
		return undo(0, err)
	}
	// Exact addresses go to the exact tables: one held there changes in
	// place (its hits kept), a new one takes a free way. What the hash map
	// holds already, and what finds no way, goes on to the hash map.
	rules, vals, fresh, absent, err := s.putTablesLocked(l, lm, rules, vals, fresh, absent)
	if err != nil {
		return undo(0, err)
	}
	// A new entry is one write that fails if the key is held (an import is
	// mostly new entries); a held one is read for its hit count and
	// rewritten. Once most keys turn out held, reading first saves the
	// failed write. A run of entries known absent goes in as one batch.
	var tried, held int
	for i := 0; i < len(rules); {
		r := rules[i]
		m, key, _ := lm.slot(r.Prefix)
		n, err := s.putAbsent(lm, m, rules[i:], vals[i:], absent[i:])
		if err != nil {
			return undo(i+n, fmt.Errorf("adding to %s map: %w", l, err))
		}
		if n > 0 {
			i += n
			continue
		}
		readFirst := tried >= 64 && held > tried/2
		tried++
		if !readFirst {
			err := m.Update(key, &vals[i], ebpf.UpdateNoExist)
			if err == nil {
				i++
				continue
			}
			if !errors.Is(err, ebpf.ErrKeyExist) {
				return undo(i, fmt.Errorf("adding %s to %s map: %w", r.Prefix, l, err))
			}
		}
		old, ok, err := lookupEntry(m, key)
		if err != nil {
			return undo(i, fmt.Errorf("reading %s from %s map: %w", r.Prefix, l, err))
		}
		if ok {
			held++
			vals[i].Hits = old.Hits
			fresh[i] = false
			s.filterRemove(l, r.Prefix)
		}
		if err := m.Update(key, &vals[i], ebpf.UpdateAny); err != nil {
			return undo(i, fmt.Errorf("adding %s to %s map: %w", r.Prefix, l, err))
		}
		i++
	}
	// Given-back counts change no bit (the held entries keep theirs); this
	// writes the counts' words only if a bit did change.
	return s.flushPrefilters()
}

// putTablesLocked puts the rules the exact and prefix tables take, and
// returns the others with their values and flags, to go to the maps (on
// an error, with those it did not get to). It raises the hash maps'
// presence flags for the rules it leaves.
func (s *Shield) putTablesLocked(l List, lm listMaps, rules []Rule, vals []shieldEntry, fresh, absent []bool) ([]Rule, []shieldEntry, []bool, []bool, error) {
	keep := 0
	var hashFlags uint32
	rest := func(i int, err error) ([]Rule, []shieldEntry, []bool, []bool, error) {
		n := keep + copy(rules[keep:], rules[i:])
		copy(vals[keep:], vals[i:])
		copy(fresh[keep:], fresh[i:])
		copy(absent[keep:], absent[i:])
		return rules[:n], vals[:n], fresh[:n], absent[:n], err
	}
	for i, r := range rules {
		t, k := s.table(r.Prefix)
		hash := lm.hashFlag(r.Prefix)
		if t.used() {
			if t.update(lm.list, k, vals[i].ExpiresNs, vals[i].RuleId) {
				s.filterRemove(l, r.Prefix) // it held a count of its own
				continue
			}
			// A rule the hash map holds (the table was full, or an
			// earlier version put it there) stays there.
			inHash := false
			if !absent[i] && s.cfg.Presence&hash != 0 {
				m, key, _ := lm.slot(r.Prefix)
				_, held, err := lookupEntry(m, key)
				if err != nil {
					return rest(i, fmt.Errorf("reading %s from %s map: %w", r.Prefix, l, err))
				}
				inHash = held
			}
			if !inHash && t.place(lm.list, k, vals[i].ExpiresNs, vals[i].RuleId) {
				continue
			}
		}
		hashFlags |= hash
		rules[keep], vals[keep], fresh[keep], absent[keep] = r, vals[i], fresh[i], absent[i]
		keep++
	}
	if s.cfg.Presence&hashFlags != hashFlags {
		c := s.cfg
		c.Presence |= hashFlags
		if err := s.writeConfigLocked(c); err != nil {
			return rest(len(rules), err)
		}
	}
	return rest(len(rules), nil)
}

// minBatch is the shortest run of absent entries written as one batch:
// below it the batch's extra copies cost more than the system calls it
// saves.
const minBatch = 4

// putAbsent writes the run of rules at the head of rules that go to the
// exact (hash) map m and are known absent from it, in one
// BPF_MAP_UPDATE_BATCH (the kernel takes no BPF_NOEXIST there, hence
// "known absent"). It returns how many went in: the batch stops at the
// first error. It writes nothing, and returns 0 and no error, for a prefix
// map, a run shorter than minBatch or a kernel without batch updates (before
// 5.6; s.oneByOne in tests), leaving those to one write an entry.
func (s *Shield) putAbsent(lm listMaps, m *ebpf.Map, rules []Rule, vals []shieldEntry, absent []bool) (int, error) {
	if s.oneByOne || (m != lm.exact4 && m != lm.exact6) {
		return 0, nil
	}
	n := 0
	for n < len(rules) && absent[n] {
		if next, _, _ := lm.slot(rules[n].Prefix); next != m {
			break
		}
		n++
	}
	if n < minBatch {
		return 0, nil
	}
	var keys any
	if m == lm.exact4 {
		k := make([]uint32, n)
		for i := range k {
			b := rules[i].Prefix.Addr().As4()
			k[i] = binary.NativeEndian.Uint32(b[:])
		}
		keys = k
	} else {
		k := make([]shieldAddr6, n)
		for i := range k {
			k[i].Addr = addr6Words(rules[i].Prefix.Addr())
		}
		keys = k
	}
	done, err := m.BatchUpdate(keys, vals[:n], nil)
	if errors.Is(err, ebpf.ErrNotSupported) {
		s.oneByOne = true
		return 0, nil
	}
	return done, err
}

// lastOfEach drops every rule whose prefix comes again later in rules, so
// that each prefix is looked up, counted in the filters and written once.
func lastOfEach(rules []Rule) []Rule {
	at := make(map[netip.Prefix]int, len(rules))
	out := make([]Rule, 0, len(rules))
	for _, r := range rules {
		if i, ok := at[r.Prefix]; ok {
			out[i] = r
			continue
		}
		at[r.Prefix] = len(out)
		out = append(out, r)
	}
	return out
}

// lookupEntry reads an entry by its key (the prefix maps are hash maps
// too: a lookup never answers for another, covering prefix).
func lookupEntry(m *ebpf.Map, key any) (shieldEntry, bool, error) {
	var e shieldEntry
	err := m.Lookup(key, &e)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return e, false, nil
	}
	return e, err == nil, err
}

func (s *Shield) deleteRulesLocked(l List, lm listMaps, prefixes []netip.Prefix) error {
	var touched uint32
	var errs []error
	for _, p := range prefixes {
		m, key, f := lm.slot(p)
		if t, k := s.table(p); t.used() && t.remove(lm.list, k) {
			s.filterRemove(l, p)
			touched |= f
			// A daemon of an earlier version, run over the same pins,
			// may have put the entry in the hash map as well.
			if s.cfg.Presence&lm.hashFlag(p) == 0 {
				continue
			}
			if err := m.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				errs = append(errs, fmt.Errorf("removing %s from %s map: %w", p, l, err))
				break
			}
			continue
		}
		err := m.Delete(key)
		if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("removing %s from %s map: %w", p, l, err))
			break
		}
		if err == nil {
			s.filterRemove(l, p)
		}
		touched |= f
	}
	// What was removed leaves the filters even if a later removal failed.
	errs = append(errs, s.flushPrefilters(), s.clearEmptyLocked(lm, touched))
	return errors.Join(errs...)
}

// listStore is one kind of a list's entries (exact or prefix, one family):
// its hash map, table and presence flags.
type listStore struct {
	m          *ebpf.Map
	flag, hash uint32
	table      *exactTable
}

func (s *Shield) stores(lm listMaps) []listStore {
	return []listStore{{lm.exact4, lm.hasExact4, lm.hasHash4, s.table4}, {lm.prefix4, lm.hasPrefix4, lm.hasPrefixHash4, s.prefix4},
		{lm.exact6, lm.hasExact6, lm.hasHash6, s.table6}, {lm.prefix6, lm.hasPrefix6, lm.hasPrefixHash6, s.prefix6}}
}

// clearEmptyLocked drops the presence flag of every touched map that is
// empty now, when its table holds nothing of the list either, and its
// hash flag when the map alone is empty.
func (s *Shield) clearEmptyLocked(lm listMaps, touched uint32) error {
	c := s.cfg
	for _, x := range s.stores(lm) {
		if touched&x.flag == 0 {
			continue
		}
		var k []byte
		if err := x.m.NextKey(nil, &k); errors.Is(err, ebpf.ErrKeyNotExist) {
			c.Presence &^= x.hash
			if !x.table.used() || x.table.count(lm.list) == 0 {
				c.Presence &^= x.flag
			}
		}
	}
	if c.Presence == s.cfg.Presence {
		return nil
	}
	return s.writeConfigLocked(c)
}

// dropHashCopiesLocked removes from the hash maps every entry its table
// holds as well (a daemon of an earlier version, run over the same pins
// after this one, may have put it there): the data path reads the table's
// copy and never the other, which would only be listed twice and counted
// twice in the filters. It runs at start, before the filters are built.
func (s *Shield) dropHashCopiesLocked() error {
	for _, l := range []List{Allowlist, Blocklist} {
		lm, err := s.maps(l)
		if err != nil {
			return err
		}
		for _, st := range s.stores(lm) {
			if !st.table.used() || st.table.count(lm.list) == 0 {
				continue
			}
			var copies [][]byte
			var key []byte
			var val shieldEntry
			it := st.m.Iterate()
			for it.Next(&key, &val) {
				p, ok := hashKeyPrefix(key)
				if !ok {
					continue
				}
				if t, k := s.table(p); t == st.table && t.holds(lm.list, k) {
					copies = append(copies, slices.Clone(key))
				}
			}
			if err := it.Err(); err != nil {
				return fmt.Errorf("reading %s map: %w", l, err)
			}
			for _, k := range copies {
				if err := st.m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
					return fmt.Errorf("removing a copy from the %s map: %w", l, err)
				}
			}
		}
	}
	return nil
}

// hashKeyPrefix decodes a list hash map's key: an address (4 or 16 bytes
// as the packet holds it) or a length and masked address.
func hashKeyPrefix(key []byte) (netip.Prefix, bool) {
	if len(key) == 4 || len(key) == 16 {
		a, ok := netip.AddrFromSlice(key)
		return netip.PrefixFrom(a, a.BitLen()), ok
	}
	return prefixOfKey(key)
}

// exactPresenceLocked sets the presence flags from what the tables and
// hash maps hold: at start, since the maps of an earlier version held
// their entries in the hash maps alone, and had no flags for them.
func (s *Shield) exactPresenceLocked() error {
	c := s.cfg
	for _, l := range []List{Allowlist, Blocklist} {
		lm, err := s.maps(l)
		if err != nil {
			return err
		}
		for _, x := range s.stores(lm) {
			var k []byte
			err := x.m.NextKey(nil, &k)
			if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("reading %s map: %w", l, err)
			}
			inHash := err == nil
			c.Presence &^= x.flag | x.hash
			if inHash {
				c.Presence |= x.flag | x.hash
			}
			if x.table.used() && x.table.count(lm.list) > 0 {
				c.Presence |= x.flag
			}
		}
	}
	if c.Presence == s.cfg.Presence {
		return nil
	}
	return s.writeConfigLocked(c)
}

// Rules reads a list back from the kernel, with hit counters. It holds the
// lock so no removal runs under the read: an iteration whose next key was
// just deleted restarts from the first key.
func (s *Shield) Rules(l List) ([]RuleState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rulesLocked(l)
}

func (s *Shield) rulesLocked(l List) ([]RuleState, error) {
	lm, err := s.maps(l)
	if err != nil {
		return nil, err
	}
	clk := s.clock()
	var out []RuleState
	add := func(p netip.Prefix, e shieldEntry) {
		out = append(out, RuleState{Rule: Rule{Prefix: p, RuleID: e.RuleId, Expires: clk.toWall(e.ExpiresNs)}, Hits: e.Hits})
	}
	var (
		k4  uint32
		k6  shieldAddr6
		p4  shieldLpmV4Key
		p6  shieldLpmV6Key
		val shieldEntry
	)
	for _, t := range []*exactTable{s.table4, s.table6, s.prefix4, s.prefix6} {
		if !t.used() {
			continue
		}
		t.entries(lm.list, func(k exactKey, expires, hits uint64, rule uint32) {
			add(tablePrefix(t, k), shieldEntry{ExpiresNs: expires, Hits: hits, RuleId: rule})
		})
	}
	it := lm.exact4.Iterate()
	for it.Next(&k4, &val) {
		var b [4]byte
		binary.NativeEndian.PutUint32(b[:], k4)
		add(netip.PrefixFrom(netip.AddrFrom4(b), 32), val)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("reading %s map: %w", l, err)
	}
	it = lm.prefix4.Iterate()
	for it.Next(&p4, &val) {
		var b [4]byte
		binary.NativeEndian.PutUint32(b[:], p4.Addr)
		add(netip.PrefixFrom(netip.AddrFrom4(b), int(p4.Prefixlen)), val)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("reading %s prefix map: %w", l, err)
	}
	it = lm.exact6.Iterate()
	for it.Next(&k6, &val) {
		add(netip.PrefixFrom(wordsAddr6(k6.Addr), 128), val)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("reading %s map: %w", l, err)
	}
	it = lm.prefix6.Iterate()
	for it.Next(&p6, &val) {
		add(netip.PrefixFrom(wordsAddr6(p6.Addr), int(p6.Prefixlen)), val)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("reading %s prefix map: %w", l, err)
	}
	return out, nil
}

// Counters sums the per-CPU counters.
func (s *Shield) Counters() (Counters, error) {
	out := Counters{Verdicts: map[Reason]Counter{}, Monitored: map[Reason]Counter{}}
	var percpu []shieldCounter
	for i := uint32(0); i < 2*uint32(numReasons); i++ {
		if err := s.objs.Counters.Lookup(&i, &percpu); err != nil {
			return out, fmt.Errorf("reading counters: %w", err)
		}
		var sum Counter
		for _, c := range percpu {
			sum.Packets += c.Packets
			sum.Bytes += c.Bytes
		}
		if i < uint32(numReasons) {
			out.Verdicts[Reason(i)] = sum
		} else {
			out.Monitored[Reason(i-uint32(numReasons))] = sum
		}
	}
	return out, nil
}

// sourcePrefix turns a sources-map key back into the prefix it stands for.
func (s *Shield) sourcePrefix(w [4]uint32) netip.Prefix {
	a := wordsAddr6(w)
	if a.Is4In6() {
		return netip.PrefixFrom(a.Unmap(), maskLen(s.cfg.V4Mask))
	}
	return netip.PrefixFrom(a, s.Settings().IPv6PrefixLen)
}

// AutoBlocks lists the sources the data path currently blocks by itself.
func (s *Shield) AutoBlocks() ([]AutoBlock, error) {
	s.mu.Lock()
	clk := s.clock()
	s.mu.Unlock()
	var out []AutoBlock
	err := s.forEachSource(func(key *shieldAddr6, st *shieldSourceState) {
		if st.BlockedUntil > clk.boot {
			out = append(out, AutoBlock{Source: s.sourcePrefix(key.Addr), Until: clk.toWall(st.BlockedUntil)})
		}
	})
	return out, err
}

// forEachSource calls fn for every source the table holds.
func (s *Shield) forEachSource(fn func(*shieldAddr6, *shieldSourceState)) error {
	return s.sources.forEach(s.oneByOne, fn)
}

// forEachEntry calls fn for every entry of m, read in batches, or one by
// one on kernels without batch lookups (before 5.6) and when oneByOne.
func forEachEntry[K, V any](m *ebpf.Map, oneByOne bool, fn func(*K, *V)) error {
	const batch = 1024
	keys := make([]K, batch)
	vals := make([]V, batch)
	var cursor ebpf.MapBatchCursor
	for !oneByOne {
		n, err := m.BatchLookup(&cursor, keys, vals, nil)
		if errors.Is(err, ebpf.ErrNotSupported) {
			break
		}
		for i := range n {
			fn(&keys[i], &vals[i])
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
	}
	var (
		key K
		val V
	)
	it := m.Iterate()
	for it.Next(&key, &val) {
		fn(&key, &val)
	}
	return it.Err()
}

// Unblock lifts an automatic block on a source prefix, if there is one.
func (s *Shield) Unblock(p netip.Prefix) error {
	a := p.Addr()
	if a.Is4() {
		a = netip.AddrFrom16(a.As16())
	}
	key := shieldAddr6{Addr: addr6Words(a)}
	if err := s.sources.remove(key); err != nil {
		return fmt.Errorf("lifting automatic block on %s: %w", p, err)
	}
	return nil
}

// ReadEvents delivers automatic-block events from the ring buffer until ctx ends.
func (s *Shield) ReadEvents(ctx context.Context, fn func(AutoBlock)) error {
	read, closeReader, err := s.eventReader()
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		closeReader()
	}()
	for {
		sample, err := read()
		if err != nil {
			if errors.Is(err, ringbuf.ErrClosed) || errors.Is(err, perf.ErrClosed) {
				return nil
			}
			return fmt.Errorf("reading events: %w", err)
		}
		var ev shieldAutoblockEvent
		if len(sample) < binary.Size(ev) {
			continue
		}
		if _, err := binary.Decode(sample, binary.NativeEndian, &ev); err != nil {
			continue
		}
		s.mu.Lock()
		clk := s.clock()
		s.mu.Unlock()
		fn(AutoBlock{
			Source:     s.sourcePrefix(ev.Addr),
			Class:      Class(ev.Class).String(),
			Until:      clk.toWall(ev.UntilNs),
			WindowPkts: ev.WindowPkts,
			Monitor:    ev.Monitor != 0,
		})
	}
}

// eventReader opens the ring buffer, or the perf event array where the ring
// buffer is not used, behind one read function.
func (s *Shield) eventReader() (read func() ([]byte, error), closeReader func() error, err error) {
	if s.perf {
		rd, err := perf.NewReader(s.objs.PerfEvents, os.Getpagesize())
		if err != nil {
			return nil, nil, fmt.Errorf("opening perf event array: %w", err)
		}
		return func() ([]byte, error) {
			for {
				rec, err := rd.Read()
				if err != nil || rec.LostSamples == 0 {
					return rec.RawSample, err
				}
			}
		}, rd.Close, nil
	}
	rd, err := ringbuf.NewReader(s.objs.Events)
	if err != nil {
		return nil, nil, fmt.Errorf("opening event ring buffer: %w", err)
	}
	return func() ([]byte, error) {
		rec, err := rd.Read()
		return rec.RawSample, err
	}, rd.Close, nil
}
