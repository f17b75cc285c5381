//go:build linux

package shield

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/netlab"
	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// udpFrom is a UDP frame from src to the test destination of its family.
func udpFrom(src netip.Addr) []byte {
	if src.Is4() {
		return netlab.UDP4(src.String(), dst4).Bytes()
	}
	return netlab.UDP6(src.String(), dst6).Bytes()
}

// hitsOf reads a list's hit counters back from the kernel, by prefix.
func hitsOf(t testing.TB, s *Shield, l List) map[netip.Prefix]RuleState {
	t.Helper()
	rules, err := s.Rules(l)
	if err != nil {
		t.Fatal(err)
	}
	out := map[netip.Prefix]RuleState{}
	for _, r := range rules {
		if _, dup := out[r.Prefix]; dup {
			t.Errorf("%s listed twice on the %s", r.Prefix, l)
		}
		out[r.Prefix] = r
	}
	return out
}

// TestCoveringPrefixGoesNarrowStays is the attack of issue 12: list a wide
// prefix, then a narrower one inside it, then take the wide one away (by
// removal, or by expiry and the sweep). The narrower prefix must keep
// doing what it did, with its own hit counter: a presence check by
// longest-prefix match took the wide prefix for the narrow one, so the
// narrow one's prefilter bits left with the wide one (its sources passed,
// or lost their allowlisting) and it inherited the wide one's hits.
func TestCoveringPrefixGoesNarrowStays(t *testing.T) {
	s := newTestShield(t, noLimits())
	for _, tc := range []struct {
		name         string
		list         List
		wide, narrow string
		inNarrow     string // inside both
		inWideOnly   string // inside the wide prefix only
		// background is blocked so that an allowlisting is visible.
		background string
	}{
		{name: "block v4", list: Blocklist, wide: "198.18.0.0/15", narrow: "198.18.5.0/24",
			inNarrow: "198.18.5.77", inWideOnly: "198.19.0.1"},
		{name: "block v4 narrow in the other half of the wide prefix", list: Blocklist, wide: "198.18.0.0/15", narrow: "198.19.200.0/22",
			inNarrow: "198.19.203.255", inWideOnly: "198.18.0.1"},
		{name: "allow v4", list: Allowlist, wide: "10.0.0.0/8", narrow: "10.1.0.0/16",
			inNarrow: "10.1.2.3", inWideOnly: "10.2.0.1", background: "10.0.0.0/7"},
		{name: "block v6 long", list: Blocklist, wide: "2001:db8::/32", narrow: "2001:db8:5::/48",
			inNarrow: "2001:db8:5::9", inWideOnly: "2001:db8:6::9"},
		{name: "block v6 short", list: Blocklist, wide: "2001:db8::/32", narrow: "2001:db8:4::/46",
			inNarrow: "2001:db8:7::1", inWideOnly: "2001:db8:8::1"},
		{name: "allow v6", list: Allowlist, wide: "2001:db8::/32", narrow: "2001:db8:5:1::/64",
			inNarrow: "2001:db8:5:1::2", inWideOnly: "2001:db8:5:2::2", background: "2001:db8::/31"},
		{name: "block v4 exact", list: Blocklist, wide: "198.18.0.0/15", narrow: "198.18.5.5",
			inNarrow: "198.18.5.5", inWideOnly: "198.18.5.6"},
	} {
		for _, how := range []string{"removed", "expired"} {
			t.Run(tc.name+"/"+how, func(t *testing.T) {
				emptyLists(t, s)
				wide, narrow := mustPrefix(tc.wide), mustPrefix(tc.narrow)
				inNarrow, inWideOnly := netip.MustParseAddr(tc.inNarrow), netip.MustParseAddr(tc.inWideOnly)
				if !wide.Contains(inNarrow) || !narrow.Contains(inNarrow) || !wide.Contains(inWideOnly) || narrow.Contains(inWideOnly) {
					t.Fatal("bad probe addresses")
				}
				listed, wideReason, narrowReason := ReasonAllowlisted, ReasonAllowlisted, ReasonAllowlisted
				unlisted := ReasonPassed
				if tc.list == Blocklist {
					wideReason, narrowReason = ReasonBlockedPrefix, ReasonBlockedPrefix
					if isExact(narrow) {
						narrowReason = ReasonBlockedExact
					}
					listed = wideReason
				}
				if tc.background != "" {
					put(t, s, Blocklist, time.Time{}, tc.background)
					unlisted = ReasonBlockedPrefix
				}
				check := func(step string, src netip.Addr, want Reason) {
					t.Helper()
					if _, got, _ := run(t, s, udpFrom(src)); got != want {
						t.Errorf("%s: %s got %s, want %s", step, src, got, want)
					}
				}
				checkHits := func(step string, want map[netip.Prefix]uint64) {
					t.Helper()
					got := hitsOf(t, s, tc.list)
					for p, n := range want {
						if r, ok := got[p]; !ok || r.Hits != n {
							t.Errorf("%s: %s has %d hits (listed %v), want %d", step, p, r.Hits, ok, n)
						}
					}
				}

				var expires time.Time
				if how == "expired" {
					expires = s.clock().wall.Add(time.Minute)
				}
				if err := s.PutRules(tc.list, []Rule{{Prefix: wide, RuleID: 1, Expires: expires}}); err != nil {
					t.Fatal(err)
				}
				for range 3 {
					check("wide only", inNarrow, wideReason)
				}
				if err := s.PutRules(tc.list, []Rule{{Prefix: narrow, RuleID: 2}}); err != nil {
					t.Fatal(err)
				}
				checkHits("narrow added", map[netip.Prefix]uint64{wide: 3, narrow: 0})
				check("both", inNarrow, narrowReason)
				check("both", inNarrow, narrowReason)
				check("both, outside the narrow one", inWideOnly, listed)
				checkHits("both", map[netip.Prefix]uint64{wide: 4, narrow: 2})
				// Writing the narrow rule again keeps its own counter.
				if err := s.PutRules(tc.list, []Rule{{Prefix: narrow, RuleID: 3}}); err != nil {
					t.Fatal(err)
				}
				checkHits("narrow rewritten", map[netip.Prefix]uint64{wide: 4, narrow: 2})

				switch how {
				case "removed":
					if err := s.DeleteRules(tc.list, []netip.Prefix{wide}); err != nil {
						t.Fatal(err)
					}
				case "expired":
					if err := s.setClock(testNow + uint64(2*time.Minute)); err != nil {
						t.Fatal(err)
					}
					check("wide expired, before the sweep", inNarrow, narrowReason)
					check("wide expired, before the sweep", inWideOnly, unlisted)
					// The node's sweep removes what the store says expired.
					if err := s.DeleteRules(tc.list, []netip.Prefix{wide}); err != nil {
						t.Fatal(err)
					}
				}
				check("wide gone", inNarrow, narrowReason)
				check("wide gone", inWideOnly, unlisted)
				got := hitsOf(t, s, tc.list)
				if len(got) != 1 || got[narrow].RuleID != 3 {
					t.Errorf("left on the %s: %v, want only %s with rule 3", tc.list, got, narrow)
				}
				want := uint64(3)
				if how == "expired" {
					want = 4
				}
				checkHits("wide gone", map[netip.Prefix]uint64{narrow: want})
				checkFilterCounts(t, s)
			})
		}
	}
}

// emptyLists takes every entry off both lists and sets the clock back to
// testNow, so that subtests can share one loaded shield.
func emptyLists(t testing.TB, s *Shield) {
	t.Helper()
	for _, l := range []List{Allowlist, Blocklist} {
		rules, err := s.Rules(l)
		if err != nil {
			t.Fatal(err)
		}
		var ps []netip.Prefix
		for _, r := range rules {
			ps = append(ps, r.Prefix)
		}
		if err := s.DeleteRules(l, ps); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.setClock(testNow); err != nil {
		t.Fatal(err)
	}
}

// scratch holds filters that count nothing between calls of
// checkFilterCounts: they are a few megabytes, too many to allocate or
// clear on every step of a sequence.
var scratch *Shield

// checkFilterCounts checks that every filter's reference counts, its bits
// and the copy of its bits in the kernel are exactly what the maps'
// contents imply: a count too high keeps a bit nobody needs, one too low
// hides a listed prefix when another prefix of its bucket goes.
func checkFilterCounts(t testing.TB, s *Shield) {
	t.Helper()
	if scratch == nil {
		scratch = &Shield{}
		scratch.resetPrefilters()
	}
	want := scratch
	for _, l := range []List{Allowlist, Blocklist} {
		rules, err := s.Rules(l)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rules {
			want.filterAdd(l, r.Prefix)
			defer want.filterRemove(l, r.Prefix)
		}
	}
	samePrefilter := func(name string, got, want *prefilter, kernel []uint64) {
		t.Helper()
		if got.dirty {
			t.Errorf("%s: not written to the kernel", name)
		}
		if !slices.Equal(got.counts, want.counts) {
			for b := range got.counts {
				if got.counts[b] != want.counts[b] {
					t.Errorf("%s: bucket %d counted %d, the maps imply %d", name, b, got.counts[b], want.counts[b])
					break
				}
			}
		}
		if !slices.Equal(got.words, want.words) {
			t.Errorf("%s: bits differ from what the maps imply", name)
		}
		if !slices.Equal(kernel, want.words) {
			t.Errorf("%s: the kernel's bits differ from what the maps imply", name)
		}
	}
	var p4 shieldPrefilter
	var p6 shieldPrefilter6
	kernelExact := readArray[shieldExactBlock](t, s.objs.ExactFilters)
	for i := range numPrefilters {
		name := fmt.Sprintf("prefilter %d", i)
		if i == prefilterAllowV6 || i == prefilterBlockV6 {
			key := uint32(i - prefilterAllowV6)
			if err := s.objs.PrefiltersV6.Lookup(&key, &p6); err != nil {
				t.Fatal(err)
			}
			samePrefilter(name, s.filters[i], want.filters[i], p6.Words[:])
		} else {
			key := uint32(i)
			if err := s.objs.Prefilters.Lookup(&key, &p4); err != nil {
				t.Fatal(err)
			}
			samePrefilter(name, s.filters[i], want.filters[i], p4.Words[:])
		}
		got, exp := s.exact[i], want.exact[i]
		if !maps.Equal(got.counts, exp.counts) || got.blocks != exp.blocks {
			t.Errorf("exact filter %d: counts %v, the maps imply %v", i, got.counts, exp.counts)
		}
		if len(got.dirty) != 0 {
			t.Errorf("exact filter %d: not written to the kernel", i)
		}
		for b := range uint32(exactBlocks) {
			if kernelExact[uint32(i*exactBlocks)+b].Words != exp.blocks[b] {
				t.Errorf("exact filter %d: the kernel's block %d differs from what the maps imply", i, b)
			}
		}
	}
	for i := range s.long {
		key := uint32(i)
		if err := s.objs.PrefiltersLong.Lookup(&key, &p6); err != nil {
			t.Fatal(err)
		}
		samePrefilter(fmt.Sprintf("long prefilter %d", i), s.long[i], want.long[i], p6.Words[:])
	}
	kernel4 := readArray[shieldPlens4](t, s.objs.PrefixLensV4)
	kernel6 := readArray[shieldPlens6](t, s.objs.PrefixLensV6)
	for i, got := range s.lens {
		exp := want.lens[i]
		if !maps.Equal(got.counts, exp.counts) || !slices.Equal(got.masks, exp.masks) ||
			!maps.Equal(got.all, exp.all) || got.allMask != exp.allMask {
			t.Errorf("prefix lengths %d: counts %v and %v, the maps imply %v and %v", i, got.counts, got.all, exp.counts, exp.all)
		}
		if len(got.dirty) != 0 {
			t.Errorf("prefix lengths %d: not written to the kernel", i)
		}
		which := uint32(i % 2)
		for b := range exp.masks {
			m := exp.written(uint32(b))
			var k [2]uint64
			if got.v6 {
				v := kernel6[which*lensBuckets/lens6PerValue+uint32(b)/lens6PerValue]
				k = [2]uint64{v.Mask[2*(b%lens6PerValue)], v.Mask[2*(b%lens6PerValue)+1]}
			} else {
				k[0] = uint64(kernel4[which*lensBuckets/lens4PerValue+uint32(b)/lens4PerValue].Mask[b%lens4PerValue])
			}
			if k != m {
				t.Errorf("prefix lengths %d: the kernel's bucket %d holds %x, the maps imply %x", i, b, k, m)
				break
			}
		}
	}
}

// readArray reads every value of an array map, in one batch lookup where
// the kernel has them (a differential test reads the filters after every
// step).
func readArray[V any](t testing.TB, m *ebpf.Map) []V {
	t.Helper()
	n := int(m.MaxEntries())
	keys := make([]uint32, n)
	vals := make([]V, n)
	var cursor ebpf.MapBatchCursor
	got, err := m.BatchLookup(&cursor, keys, vals, nil)
	if errors.Is(err, ebpf.ErrNotSupported) {
		for k := range vals {
			if err := m.Lookup(uint32(k), &vals[k]); err != nil {
				t.Fatal(err)
			}
		}
		return vals
	}
	if (err != nil && !errors.Is(err, ebpf.ErrKeyNotExist)) || got != n {
		t.Fatalf("reading %s: %d of %d, %v", m, got, n, err)
	}
	for i, k := range keys {
		if k != uint32(i) {
			t.Fatalf("batch lookup of %s: key %d at %d", m, k, i)
		}
	}
	return vals
}

// TestListChangesThatFailKeepFiltersExact makes the kernel refuse part of
// a change: the filters must then count exactly what the maps hold, and
// bad input must change nothing. Twice: with the prefixes in the hash map
// alone (no tables, as before 5.5), and with the prefix table's one bucket
// full, so that what it cannot take goes to the hash map, and fails there.
func TestListChangesThatFailKeepFiltersExact(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    Options
		fillers []string // listed first (rules 101 on, by put): with them the table is one way short of full
		room    uint32   // the hash map's
		want    map[string]uint32
	}{
		{"hash map alone", Options{noMmap: true}, nil, 2,
			map[string]uint32{"198.18.5.0/24": 1, "198.18.0.0/15": 2}},
		{"table full", Options{prefixMasks: oneBucket}, []string{"192.0.2.0/24", "192.0.3.0/24"}, 1,
			map[string]uint32{"198.18.5.0/24": 1, "198.18.0.0/15": 2, "203.0.113.0/24": 3, "192.0.2.0/24": 101, "192.0.3.0/24": 102}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestShieldWith(t, tc.opts, noLimits())
			put(t, s, Blocklist, time.Time{}, append([]string{"198.18.0.0/15"}, tc.fillers...)...)

			// Bad input is refused before anything is written.
			if err := s.PutRules(Blocklist, []Rule{{Prefix: mustPrefix("198.20.0.0/16")}, {Prefix: netip.MustParsePrefix("198.21.0.1/16")}}); err == nil {
				t.Error("an unmasked prefix was accepted")
			}
			if err := s.DeleteRules(Blocklist, []netip.Prefix{mustPrefix("198.18.0.0/15"), {}}); err == nil {
				t.Error("an invalid prefix was accepted for removal")
			}
			if got := hitsOf(t, s, Blocklist); len(got) != 1+len(tc.fillers) {
				t.Errorf("bad input changed the list: %v", got)
			}
			checkFilterCounts(t, s)

			// A small prefix map stands in for a full one.
			orig := s.objs.BlockV4Lpm
			small, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: orig.KeySize(), ValueSize: orig.ValueSize(),
				MaxEntries: tc.room, Flags: unix.BPF_F_NO_PREALLOC})
			if err != nil {
				t.Fatal(err)
			}
			s.objs.BlockV4Lpm = small
			t.Cleanup(func() { s.objs.BlockV4Lpm = orig; small.Close() })
			if err := s.initPrefilters(); err != nil {
				t.Fatal(err)
			}
			if tc.fillers == nil {
				put(t, s, Blocklist, time.Time{}, "198.18.0.0/15")
			}
			err = s.PutRules(Blocklist, []Rule{
				{Prefix: mustPrefix("198.18.5.0/24"), RuleID: 1}, // fits
				{Prefix: mustPrefix("198.18.0.0/15"), RuleID: 2}, // present: a rewrite
				{Prefix: mustPrefix("203.0.113.0/24"), RuleID: 3},
				{Prefix: mustPrefix("10.0.0.0/8"), RuleID: 4},
			})
			if err == nil {
				t.Fatal("a prefix went in past the table's ways and the map's room")
			}
			got := hitsOf(t, s, Blocklist)
			if len(got) != len(tc.want) {
				t.Errorf("after the refusal the list holds %v, want %v", got, tc.want)
			}
			for p, rule := range tc.want {
				if r, ok := got[mustPrefix(p)]; !ok || r.RuleID != rule {
					t.Errorf("after the refusal %s is %+v (listed %v), want rule %d", p, r, ok, rule)
				}
			}
			checkFilterCounts(t, s)
		})
	}
}

// TestExpiredEntryUncoversTheLivePrefix lists a live prefix with expiring
// entries inside it on the same list, lets them expire and, before the
// node's sweep deletes them, checks that the data path classifies their
// sources by the live prefix: an expired entry is as if absent, so the
// next-longest live prefix decides (and counts the hit), not "not listed".
func TestExpiredEntryUncoversTheLivePrefix(t *testing.T) {
	s := newTestShield(t, noLimits())
	for _, tc := range []struct {
		name     string
		list     List
		live     string   // permanent
		expiring []string // inside live, each inside the one before
		probe    string   // inside every expiring entry
		outside  string   // inside live only
		// background is blocked so that an allowlisting is visible.
		background string
	}{
		{name: "block v4", list: Blocklist, live: "198.18.0.0/15", expiring: []string{"198.18.5.0/24"},
			probe: "198.18.5.77", outside: "198.19.0.1"},
		{name: "allow v4", list: Allowlist, live: "10.0.0.0/8", expiring: []string{"10.1.0.0/16"},
			probe: "10.1.2.3", outside: "10.2.0.1", background: "10.0.0.0/7"},
		{name: "block v6", list: Blocklist, live: "2001:db8::/32", expiring: []string{"2001:db8:5::/48"},
			probe: "2001:db8:5::9", outside: "2001:db8:6::9"},
		{name: "block v6 short", list: Blocklist, live: "2001:db8::/32", expiring: []string{"2001:db8:4::/46"},
			probe: "2001:db8:7::1", outside: "2001:db8:8::1"},
		{name: "allow v6", list: Allowlist, live: "2001:db8::/32", expiring: []string{"2001:db8:5:1::/64"},
			probe: "2001:db8:5:1::2", outside: "2001:db8:5:2::2", background: "2001:db8::/31"},
		{name: "block v4 exact", list: Blocklist, live: "198.18.0.0/15", expiring: []string{"198.18.5.5"},
			probe: "198.18.5.5", outside: "198.18.5.6"},
		{name: "allow v6 exact", list: Allowlist, live: "2001:db8:5::/48", expiring: []string{"2001:db8:5::7"},
			probe: "2001:db8:5::7", outside: "2001:db8:5::8", background: "2001:db8::/32"},
		{name: "block v4 nested chain", list: Blocklist, live: "198.18.0.0/16",
			expiring: []string{"198.18.16.0/20", "198.18.20.0/24", "198.18.20.16/28"},
			probe:    "198.18.20.17", outside: "198.18.0.1"},
		{name: "block v4 nested chain and exact", list: Blocklist, live: "198.18.0.0/16",
			expiring: []string{"198.18.16.0/20", "198.18.20.0/24", "198.18.20.16/28", "198.18.20.17"},
			probe:    "198.18.20.17", outside: "198.18.0.1"},
		{name: "allow v6 nested chain", list: Allowlist, live: "2001:db8::/32",
			expiring: []string{"2001:db8:5::/48", "2001:db8:5:1::/64", "2001:db8:5:1:8000::/65", "2001:db8:5:1:8000::/100"},
			probe:    "2001:db8:5:1:8000::1", outside: "2001:db8:6::1", background: "2001:db8::/31"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			emptyLists(t, s)
			live, probe, outside := mustPrefix(tc.live), netip.MustParseAddr(tc.probe), netip.MustParseAddr(tc.outside)
			var expiring []netip.Prefix
			for _, e := range tc.expiring {
				p := mustPrefix(e)
				if !p.Contains(probe) || !live.Contains(p.Addr()) || p.Bits() <= live.Bits() {
					t.Fatalf("bad test: %s", p)
				}
				expiring = append(expiring, p)
			}
			if !live.Contains(outside) || expiring[0].Contains(outside) {
				t.Fatal("bad test: outside")
			}
			listed, innermost := ReasonAllowlisted, ReasonAllowlisted
			if tc.list == Blocklist {
				listed, innermost = ReasonBlockedPrefix, ReasonBlockedPrefix
				if isExact(expiring[len(expiring)-1]) {
					innermost = ReasonBlockedExact
				}
			}
			if tc.background != "" {
				put(t, s, Blocklist, time.Time{}, tc.background)
			}
			check := func(step string, src netip.Addr, want Reason) {
				t.Helper()
				if _, got, _ := run(t, s, udpFrom(src)); got != want {
					t.Errorf("%s: %s got %s, want %s", step, src, got, want)
				}
			}
			put(t, s, tc.list, time.Time{}, tc.live)
			put(t, s, tc.list, s.clock().wall.Add(time.Minute), tc.expiring...)
			check("all live", probe, innermost)
			check("all live", outside, listed)
			before := hitsOf(t, s, tc.list)

			// Expired, not swept: the entries are still in the maps.
			if err := s.setClock(testNow + uint64(2*time.Minute)); err != nil {
				t.Fatal(err)
			}
			if got := hitsOf(t, s, tc.list); len(got) != 1+len(expiring) {
				t.Fatalf("before the sweep the %s holds %v", tc.list, got)
			}
			check("expired, before the sweep", probe, listed)
			check("expired, before the sweep", probe, listed)
			check("expired, before the sweep", outside, listed)
			after := hitsOf(t, s, tc.list)
			if n := after[live].Hits - before[live].Hits; n != 3 {
				t.Errorf("the live %s counted %d hits, want 3", live, n)
			}
			for _, p := range expiring {
				if after[p].Hits != before[p].Hits {
					t.Errorf("expired %s counted %d hits", p, after[p].Hits-before[p].Hits)
				}
			}

			// The sweep changes nothing the data path decides.
			if err := s.DeleteRules(tc.list, expiring); err != nil {
				t.Fatal(err)
			}
			check("swept", probe, listed)
			check("swept", outside, listed)
			checkFilterCounts(t, s)
		})
	}
}

// TestExpiredChainFallsThrough lists a live /8 under a chain of nested
// expired prefixes on the blocklist, up to one of every longer length: the
// data path looks past all of them (each length is tried once) and finds the
// /8, before and after the sweep deletes the expired entries. The variant
// puts the chain in IPv6, 1 to 119 expired prefixes over a live /8.
func TestExpiredChainFallsThrough(t *testing.T) {
	s := newTestShield(t, noLimits())
	for _, tc := range []struct {
		probe   string
		live    string
		expired int
	}{
		{"10.255.255.255", "10.0.0.0/8", 1},
		{"10.255.255.255", "10.0.0.0/8", 9},
		{"10.255.255.255", "10.0.0.0/8", 23},
		{"10.255.255.255", "10.0.0.0/7", 23}, // below /8: counted once for all buckets
		{"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "2000::/8", 1},
		{"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "2000::/8", 60},
		{"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "2000::/8", 119},
	} {
		t.Run(fmt.Sprintf("%s/%d", tc.live, tc.expired), func(t *testing.T) {
			emptyLists(t, s)
			if err := s.setClock(0); err != nil {
				t.Fatal(err)
			}
			probe := netip.MustParseAddr(tc.probe)
			put(t, s, Blocklist, time.Time{}, tc.live)
			var chain []string
			var prefixes []netip.Prefix
			for i := range tc.expired {
				p := netip.PrefixFrom(probe, 9+i).Masked()
				chain = append(chain, p.String())
				prefixes = append(prefixes, p)
			}
			put(t, s, Blocklist, s.clock().wall.Add(time.Minute), chain...)
			if err := s.setClock(testNow + uint64(2*time.Minute)); err != nil {
				t.Fatal(err)
			}
			rules := s.testRules(t)
			frame := udpFrom(probe)
			if _, want := reference(frame, rules, testNow+uint64(2*time.Minute)); want != ReasonBlockedPrefix {
				t.Errorf("reference says %s, want %s", want, ReasonBlockedPrefix)
			}
			if _, got, _ := run(t, s, frame); got != ReasonBlockedPrefix {
				t.Errorf("%d expired prefixes over a live %s: %s, want %s", tc.expired, tc.live, got, ReasonBlockedPrefix)
			}
			if err := s.DeleteRules(Blocklist, prefixes); err != nil {
				t.Fatal(err)
			}
			if _, got, _ := run(t, s, frame); got != ReasonBlockedPrefix {
				t.Errorf("swept: %s, want %s", got, ReasonBlockedPrefix)
			}
			checkFilterCounts(t, s)
		})
	}
}

// TestRewritingManyKeepsHitsAndFilters rewrites a list whose keys are
// mostly held already, long enough for PutRules to switch from writing
// first to reading first, with new keys among them: every held entry
// keeps its hit count and takes its new rule, every new one is enforced,
// and each filter counts every entry exactly once, before and after the
// entries go.
func TestRewritingManyKeepsHitsAndFilters(t *testing.T) {
	s := newTestShield(t, noLimits())
	var first, second []Rule
	for i := range 300 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i / 200), byte(i % 200)}), 32)
		if i%10 == 0 {
			p = netip.PrefixFrom(netip.AddrFrom4([4]byte{203, 0, byte(i / 10), 0}), 24)
		}
		r := Rule{Prefix: p, RuleID: uint32(i + 1)}
		if i%3 != 0 { // a third of the second batch is new
			first = append(first, r)
		}
		r.RuleID += 1000
		second = append(second, r)
	}
	if err := s.PutRules(Blocklist, first); err != nil {
		t.Fatal(err)
	}
	hit := []netip.Addr{netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("203.0.1.9")}
	for _, a := range hit {
		if _, got, _ := run(t, s, udpFrom(a)); got != ReasonBlockedExact && got != ReasonBlockedPrefix {
			t.Fatalf("%s: %s before the rewrite", a, got)
		}
	}
	if err := s.PutRules(Blocklist, second); err != nil {
		t.Fatal(err)
	}
	got := hitsOf(t, s, Blocklist)
	if len(got) != len(second) {
		t.Errorf("%d entries after the rewrite, want %d", len(got), len(second))
	}
	for _, r := range second {
		g, ok := got[r.Prefix]
		want := uint64(0)
		if slices.ContainsFunc(hit, r.Prefix.Contains) {
			want = 1
		}
		if !ok || g.RuleID != r.RuleID || g.Hits != want {
			t.Errorf("%s: rule %d with %d hits (listed %v), want rule %d with %d", r.Prefix, g.RuleID, g.Hits, ok, r.RuleID, want)
		}
	}
	for _, a := range []string{"198.18.0.3", "198.18.1.1", "203.0.0.77"} { // new in the second batch
		if _, got, _ := run(t, s, udpFrom(netip.MustParseAddr(a))); got != ReasonBlockedExact && got != ReasonBlockedPrefix {
			t.Errorf("%s: %s after the rewrite", a, got)
		}
	}
	checkFilterCounts(t, s)
	emptyLists(t, s)
	checkFilterCounts(t, s)
}

// TestBatchedPutsKeepHitsAndFilters writes runs of new exact entries as
// batches, with held entries between them, in both families and one entry
// at a time as on kernels without batch updates: a held entry keeps its
// hit count, every entry is enforced and the filters count what the maps
// hold. Then a batch that the kernel stops halfway (a hash map too small)
// leaves the filters exact.
func TestBatchedPutsKeepHitsAndFilters(t *testing.T) {
	addr := func(v6 bool, i int) netip.Addr {
		if v6 {
			return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)})
		}
		return netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
	}
	for _, oneByOne := range []bool{false, true} {
		for _, v6 := range []bool{false, true} {
			t.Run(fmt.Sprintf("oneByOne=%v/v6=%v", oneByOne, v6), func(t *testing.T) {
				s := newTestShield(t, noLimits())
				s.oneByOne = oneByOne
				var first []Rule
				for i := range 20 {
					first = append(first, Rule{Prefix: netip.PrefixFrom(addr(v6, 100+i), addr(v6, 0).BitLen()), RuleID: 1})
				}
				if err := s.PutRules(Blocklist, first); err != nil {
					t.Fatal(err)
				}
				hit := []netip.Addr{addr(v6, 103), addr(v6, 117)}
				for _, a := range hit {
					if _, got, _ := run(t, s, udpFrom(a)); got != ReasonBlockedExact {
						t.Fatalf("%s: %s", a, got)
					}
				}
				// Runs of 5, 6, 4 and 5 new entries around two held
				// ones (one hit) and a prefix.
				var second []Rule
				next := 0
				fresh := func(k int) {
					for range k {
						second = append(second, Rule{Prefix: netip.PrefixFrom(addr(v6, next), addr(v6, 0).BitLen()), RuleID: 2})
						next++
					}
				}
				fresh(5)
				second = append(second, Rule{Prefix: first[1].Prefix, RuleID: 2})
				fresh(6)
				second = append(second, Rule{Prefix: first[3].Prefix, RuleID: 2})
				fresh(4)
				pfx := netip.PrefixFrom(addr(v6, 0x300), 120)
				if !v6 {
					pfx = netip.PrefixFrom(addr(v6, 0x300), 24)
				}
				second = append(second, Rule{Prefix: pfx, RuleID: 2})
				fresh(5)
				if err := s.PutRules(Blocklist, second); err != nil {
					t.Fatal(err)
				}
				got := hitsOf(t, s, Blocklist)
				if len(got) != len(first)+len(second)-2 {
					t.Errorf("%d entries, want %d", len(got), len(first)+len(second)-2)
				}
				for _, r := range second {
					want := uint64(0)
					if r.Prefix.Contains(hit[0]) {
						want = 1
					}
					if g, ok := got[r.Prefix]; !ok || g.RuleID != 2 || g.Hits != want {
						t.Errorf("%s: rule %d with %d hits (listed %v), want rule 2 with %d", r.Prefix, g.RuleID, g.Hits, ok, want)
					}
				}
				for _, r := range second {
					if _, got, _ := run(t, s, udpFrom(r.Prefix.Addr())); got != ReasonBlockedExact && got != ReasonBlockedPrefix {
						t.Errorf("%s: %s", r.Prefix.Addr(), got)
					}
				}
				checkFilterCounts(t, s)
			})
		}
	}

	t.Run("full", func(t *testing.T) {
		// One bucket of four ways for each list, then a hash map of six.
		s := newTestShieldWith(t, Options{exactMasks: &[4]uint32{}}, noLimits())
		orig := s.objs.BlockV4
		small, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: orig.KeySize(), ValueSize: orig.ValueSize(),
			MaxEntries: 6, Flags: unix.BPF_F_NO_PREALLOC})
		if err != nil {
			t.Fatal(err)
		}
		s.objs.BlockV4 = small
		t.Cleanup(func() { s.objs.BlockV4 = orig; small.Close() })
		var rules []Rule
		for i := range 14 {
			rules = append(rules, Rule{Prefix: netip.PrefixFrom(addr(false, i), 32)})
		}
		if err := s.PutRules(Blocklist, rules); err == nil {
			t.Fatal("fourteen entries went into four ways and a map of six")
		}
		if got := hitsOf(t, s, Blocklist); len(got) != 10 {
			t.Errorf("the list holds %d entries, want the 10 that fit", len(got))
		}
		checkFilterCounts(t, s)
	})
}

// BenchmarkPutRules100k lists 100,000 new addresses in one call, as an
// import does, and removes them again outside the timer.
func BenchmarkPutRules100k(b *testing.B) {
	s := newTestShield(b, noLimits())
	rules := make([]Rule, 100_000)
	ps := make([]netip.Prefix, len(rules))
	for i := range rules {
		ps[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
		rules[i] = Rule{Prefix: ps[i], RuleID: uint32(i)}
	}
	for b.Loop() {
		if err := s.PutRules(Blocklist, rules); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := s.DeleteRules(Blocklist, ps); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
