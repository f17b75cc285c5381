//go:build linux

package shield

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	tu "github.com/aegis-edge/aegis/internal/testutil"
)

// prefixIn counts where a list's prefixes of a family are: in the prefix
// table and in the prefix hash map.
func prefixIn(t *testing.T, s *Shield, l List, v6 bool) (table, hash int) {
	t.Helper()
	return storedIn(t, s, l, v6, true)
}

// testPrefixes are n prefixes of one family side by side (/24s or /64s),
// and an address inside each.
func testPrefixes(v6 bool, base, n int) (prefixes []netip.Prefix, inside []netip.Addr) {
	for i := range n {
		if v6 {
			prefixes = append(prefixes, netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0xee, byte(base), 7: byte(i)}), 64))
			inside = append(inside, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0xee, byte(base), 7: byte(i), 15: 9}))
		} else {
			prefixes = append(prefixes, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 88, byte(base), byte(i) << 4}), 28))
			inside = append(inside, netip.AddrFrom4([4]byte{10, 88, byte(base), byte(i)<<4 | 9}))
		}
	}
	return prefixes, inside
}

// TestPrefixTablesOverflow: with one bucket a list, four prefixes take the
// prefix table's ways and the rest the prefix hash map; the data path finds
// each where it is, counts its hits there, a put over a held one keeps its
// hits, and a removal frees a way the next prefix takes. Both lists, both
// families; the filters and presence flags follow.
func TestPrefixTablesOverflow(t *testing.T) {
	s := newTestShieldWith(t, Options{prefixMasks: oneBucket}, noLimits())
	if !s.prefix4.used() || !s.prefix6.used() {
		t.Fatal("the prefix tables are not mapped on a kernel that maps arrays")
	}
	checkOverflow(t, s, true)
}

// TestPrefixTableExpiry: an expired prefix of the table is as if absent, so
// the covering live prefix decides and takes the hit, on both families; its
// expiry moved ahead in place is read at once.
func TestPrefixTableExpiry(t *testing.T) {
	s := newTestShield(t, noLimits())
	wall := s.clock().wall
	for _, c := range []struct{ wide, narrow, src string }{
		{"10.91.0.0/16", "10.91.4.0/24", "10.91.4.4"},
		{"2001:db8:91::/48", "2001:db8:91:4::/64", "2001:db8:91:4::4"},
	} {
		put(t, s, Blocklist, time.Time{}, c.wide)
		put(t, s, Blocklist, wall.Add(-time.Second), c.narrow)
		src := netip.MustParseAddr(c.src)
		if _, got, _ := run(t, s, udpFrom(src)); got != ReasonBlockedPrefix {
			t.Fatalf("%s under an expired %s and a live %s: %s", src, c.narrow, c.wide, got)
		}
		hits := hitsOf(t, s, Blocklist)
		if hits[mustPrefix(c.wide)].Hits != 1 || hits[mustPrefix(c.narrow)].Hits != 0 {
			t.Errorf("the hit went to %+v, want the live %s", hits, c.wide)
		}
		put(t, s, Blocklist, wall.Add(time.Hour), c.narrow)
		if _, got, _ := run(t, s, udpFrom(src)); got != ReasonBlockedPrefix {
			t.Fatalf("after its expiry moved ahead: %s", got)
		}
		if h := hitsOf(t, s, Blocklist)[mustPrefix(c.narrow)].Hits; h != 1 {
			t.Errorf("%s has %d hits once live, want 1", c.narrow, h)
		}
		// Expired with nothing covering it: the source passes.
		if err := s.DeleteRules(Blocklist, []netip.Prefix{mustPrefix(c.wide)}); err != nil {
			t.Fatal(err)
		}
		put(t, s, Blocklist, wall.Add(-time.Second), c.narrow)
		if _, got, _ := run(t, s, udpFrom(src)); got != ReasonPassed {
			t.Errorf("%s under an expired %s alone: %s", src, c.narrow, got)
		}
		v6 := src.Is6()
		if table, hash := prefixIn(t, s, Blocklist, v6); table != 1 || hash != 0 {
			t.Errorf("v6=%v: %d in the table, %d in the hash map", v6, table, hash)
		}
	}
}

// TestPrefixTableRace: userspace churns one way of the IPv6 prefix table's
// bucket while packets of an innocent address and of one in a listed
// prefix run on both CPUs. Each churned entry pairs one prefix's address
// with another's length, so that a read that took a way's address before a
// write and its length after one would see a prefix covering the innocent
// address (and drop it); the churned entries whose address is the listed
// prefix's are expired, so that such a read of the listed prefix would
// find it expired (and let it through). None of the innocent address's
// packets is dropped and every one of the listed address's is. (With the
// data path's second read of the state taken out, 1 run of 3 let a listed
// packet through.) The IPv4 table holds a prefix in one word with its
// state, read in one load: no read of it can be torn so.
func TestPrefixTableRace(t *testing.T) {
	s := newTestShieldWith(t, Options{prefixMasks: oneBucket}, noLimits())
	innocent := netip.MustParseAddr("2001:db8:90:5::5")
	listed := netip.MustParsePrefix("2001:db8:90:7::/64")
	source := netip.MustParseAddr("2001:db8:90:7::7")
	key := func(addr string, plen uint32) exactKey {
		k := key6(netip.MustParseAddr(addr))
		k[4] = plen
		return k
	}
	type churned struct {
		k       exactKey
		expires uint64
	}
	churn := []churned{
		// Torn between these two: 2001:db8:90:5::/64 or
		// 2001:db8:90:4::/63, the innocent address's.
		{key("2001:db8:90:5::", 63), 0}, {key("2001:db8:90:9::", 64), 0},
		{key("2001:db8:90:4::", 64), 0}, {key("2001:db8:90:8::", 63), 0},
		// Torn: the listed prefix, expired.
		{key("2001:db8:90:7::", 63), 1}, {key("2001:db8:90:11::", 64), 1},
	}
	// The churned way comes before the listed prefix's: a placeholder
	// takes the first way while the listed prefix and a /63 (so the
	// innocent address's bucket has both lengths) take the next two, then
	// leaves it free.
	put(t, s, Blocklist, time.Time{}, "2001:db8:90:100::/64", listed.String(), "2001:db8:90:80::/63")
	if err := s.DeleteRules(Blocklist, []netip.Prefix{mustPrefix("2001:db8:90:100::/64")}); err != nil {
		t.Fatal(err)
	}
	if _, got, _ := run(t, s, udpFrom(innocent)); got != ReasonPassed {
		t.Fatalf("before the race, %s: %s", innocent, got)
	}

	raceReads(t, s, innocent, source, ReasonBlockedPrefix, func(i int) bool {
		c := churn[i%len(churn)]
		s.mu.Lock()
		defer s.mu.Unlock()
		placed := s.prefix6.place(1, c.k, c.expires, 0)
		s.prefix6.remove(1, c.k)
		return placed
	})
}

// TestPrefixInHashStaysThere: a prefix an earlier version put in the prefix
// hash map (its only place then) is found there, keeps its place and hits
// when put again, is listed once, and a removal takes it, where the table
// holds a copy too (a daemon of each version over the same pins).
func TestPrefixInHashStaysThere(t *testing.T) {
	s := newTestShield(t, noLimits())
	p := mustPrefix("10.92.0.0/16")
	lm, err := s.maps(Blocklist)
	if err != nil {
		t.Fatal(err)
	}
	m, key, _ := lm.slot(p)
	if err := m.Put(key, shieldEntry{Hits: 5, RuleId: 3, Prefixlen: 16}); err != nil {
		t.Fatal(err)
	}
	s.filterAdd(Blocklist, p)
	s.mu.Lock()
	err = errors.Join(s.flushPrefilters(), s.exactPresenceLocked())
	s.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	src := netip.MustParseAddr("10.92.1.1")
	if _, got, _ := run(t, s, udpFrom(src)); got != ReasonBlockedPrefix {
		t.Fatalf("a prefix in the hash map alone: %s", got)
	}
	if err := s.PutRules(Blocklist, []Rule{{Prefix: p, RuleID: 4}}); err != nil {
		t.Fatal(err)
	}
	if table, hash := prefixIn(t, s, Blocklist, false); table != 0 || hash != 1 {
		t.Fatalf("put again: %d in the table, %d in the hash map; want it kept in the hash map", table, hash)
	}
	if got := hitsOf(t, s, Blocklist)[p]; got.Hits != 6 || got.RuleID != 4 {
		t.Errorf("put again: %+v, want 6 hits and rule 4", got)
	}
	checkFilterCounts(t, s)

	// Both copies: the table's and the hash map's go with one removal.
	q := mustPrefix("10.93.0.0/16")
	put(t, s, Blocklist, time.Time{}, q.String())
	m, key, _ = lm.slot(q)
	if err := m.Put(key, shieldEntry{Prefixlen: 16}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRules(Blocklist, []netip.Prefix{p, q}); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"10.92.1.1", "10.93.1.1"} {
		if _, got, _ := run(t, s, udpFrom(netip.MustParseAddr(a))); got == ReasonBlockedPrefix {
			t.Errorf("%s still dropped after its prefix's removal", a)
		}
	}
	if table, hash := prefixIn(t, s, Blocklist, false); table != 0 || hash != 0 {
		t.Errorf("after the removals: %d in the table, %d in the hash map", table, hash)
	}
	if s.cfg.Presence&uint32(shieldPresenceFlagHAS_BLOCK_V4PREFIX|shieldPresenceFlagHAS_BLOCK_V4PREFIX_HASH) != 0 {
		t.Errorf("presence flags %#x left with no prefix", s.cfg.Presence)
	}
}

// TestHashCopiesDroppedAtStart: an exact address and a prefix held in their
// tables and, as well, in their hash maps (a daemon of an earlier version
// run over the same pins after this one) are found once after a restart:
// the hash maps' copies go, the tables' stay with their rules and hits,
// and the filters count each entry once.
func TestHashCopiesDroppedAtStart(t *testing.T) {
	tu.RequireRoot(t)
	pin := tu.PinPath(t)
	first, err := Load(Options{PinPath: pin})
	if err != nil {
		t.Fatal(err)
	}
	put(t, first, Blocklist, time.Time{}, "10.94.1.1", "10.94.0.0/16", "2001:db8:94::/48")
	lm, err := first.maps(Blocklist)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"10.94.1.1", "10.94.0.0/16", "2001:db8:94::/48"} {
		m, key, _ := lm.slot(mustPrefix(p))
		if err := m.Put(key, shieldEntry{RuleId: 7, Prefixlen: entryPrefixlen(mustPrefix(p))}); err != nil {
			t.Fatal(err)
		}
	}
	if _, got, _ := run(t, first, udpFrom(netip.MustParseAddr("10.94.2.2"))); got != ReasonBlockedPrefix {
		t.Fatalf("before the restart: %s", got)
	}
	first.Close()

	s, err := Load(Options{PinPath: pin})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	hits := hitsOf(t, s, Blocklist) // fails on an entry listed twice
	if len(hits) != 3 || hits[mustPrefix("10.94.0.0/16")].Hits != 1 {
		t.Fatalf("after the restart the blocklist is %+v", hits)
	}
	for p, r := range hits {
		if r.RuleID == 7 {
			t.Errorf("%s kept the hash map's copy", p)
		}
	}
	for _, v6 := range []bool{false, true} {
		for _, prefix := range []bool{false, true} {
			if _, hash := storedIn(t, s, Blocklist, v6, prefix); hash != 0 {
				t.Errorf("v6=%v prefix=%v: %d copies left in the hash map", v6, prefix, hash)
			}
		}
	}
	checkFilterCounts(t, s)
	if err := s.DeleteRules(Blocklist, []netip.Prefix{mustPrefix("10.94.0.0/16")}); err != nil {
		t.Fatal(err)
	}
	if _, got, _ := run(t, s, udpFrom(netip.MustParseAddr("10.94.2.2"))); got != ReasonPassed {
		t.Errorf("after the prefix's removal: %s", got)
	}
	checkFilterCounts(t, s)
}

// TestPinnedListsReadBothPlaces: another process's view of the blocklist
// (OpenPinned) finds each exact IPv4 address in the table or in the hash
// map, and counts the blocklist's alone.
func TestPinnedListsReadBothPlaces(t *testing.T) {
	tu.RequireRoot(t)
	pin := tu.PinPath(t)
	s, err := Load(Options{PinPath: pin})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var listed []string
	for i := range 20 {
		listed = append(listed, fmt.Sprintf("10.95.0.%d", i+1))
	}
	put(t, s, Blocklist, time.Time{}, listed...)
	put(t, s, Allowlist, time.Time{}, "10.95.1.1", "10.95.1.2", "10.95.1.3")
	// One in the hash map, as one the table had no way for.
	overflow := netip.MustParseAddr("10.95.2.1")
	b := overflow.As4()
	if err := s.objs.BlockV4.Put(binary.NativeEndian.Uint32(b[:]), shieldEntry{}); err != nil {
		t.Fatal(err)
	}
	p, err := OpenPinned(pin)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, a := range append(listed, overflow.String()) {
		if held, err := p.Blocks(netip.MustParseAddr(a)); err != nil || !held {
			t.Errorf("Blocks(%s) = %v, %v; want listed", a, held, err)
		}
	}
	for _, a := range []string{"10.95.1.1", "10.95.0.99"} {
		if held, err := p.Blocks(netip.MustParseAddr(a)); err != nil || held {
			t.Errorf("Blocks(%s) = %v, %v; want not listed", a, held, err)
		}
	}
	if n, err := p.BlockedCount(); err != nil || n != 21 {
		t.Errorf("BlockedCount = %d, %v; want 21", n, err)
	}
}
