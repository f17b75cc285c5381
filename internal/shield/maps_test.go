package shield

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"testing"
	"time"

	tu "github.com/aegis-edge/aegis/internal/testutil"
	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// udpFrom is a UDP frame from src to the test destination of its family.
func udpFrom(src netip.Addr) []byte {
	if src.Is4() {
		return tu.UDP4(src.String(), dst4).Bytes()
	}
	return tu.UDP6(src.String(), dst6).Bytes()
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
		var blk shieldExactBlock
		for b := range uint32(exactBlocks) {
			key := uint32(i*exactBlocks) + b
			if err := s.objs.ExactFilters.Lookup(&key, &blk); err != nil {
				t.Fatal(err)
			}
			if blk.Words != exp.blocks[b] {
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
}

// TestListChangesThatFailKeepFiltersExact makes the kernel refuse part of
// a change: the filters must then count exactly what the maps hold, and
// bad input must change nothing.
func TestListChangesThatFailKeepFiltersExact(t *testing.T) {
	s := newTestShield(t, noLimits())
	put(t, s, Blocklist, time.Time{}, "198.18.0.0/15")

	// Bad input is refused before anything is written.
	if err := s.PutRules(Blocklist, []Rule{{Prefix: mustPrefix("198.20.0.0/16")}, {Prefix: netip.MustParsePrefix("198.21.0.1/16")}}); err == nil {
		t.Error("an unmasked prefix was accepted")
	}
	if err := s.DeleteRules(Blocklist, []netip.Prefix{mustPrefix("198.18.0.0/15"), {}}); err == nil {
		t.Error("an invalid prefix was accepted for removal")
	}
	if got := hitsOf(t, s, Blocklist); len(got) != 1 {
		t.Errorf("bad input changed the list: %v", got)
	}
	checkFilterCounts(t, s)

	// A prefix trie with room for two entries stands in for a full map.
	orig := s.objs.BlockV4Lpm
	small, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.LPMTrie, KeySize: orig.KeySize(), ValueSize: orig.ValueSize(),
		MaxEntries: 2, Flags: unix.BPF_F_NO_PREALLOC})
	if err != nil {
		t.Fatal(err)
	}
	s.objs.BlockV4Lpm = small
	t.Cleanup(func() { s.objs.BlockV4Lpm = orig; small.Close() })
	if err := s.initPrefilters(); err != nil {
		t.Fatal(err)
	}
	put(t, s, Blocklist, time.Time{}, "198.18.0.0/15")
	err = s.PutRules(Blocklist, []Rule{
		{Prefix: mustPrefix("198.18.5.0/24"), RuleID: 1}, // fits
		{Prefix: mustPrefix("198.18.0.0/15"), RuleID: 2}, // present: a rewrite
		{Prefix: mustPrefix("203.0.113.0/24"), RuleID: 3},
		{Prefix: mustPrefix("10.0.0.0/8"), RuleID: 4},
	})
	if err == nil {
		t.Fatal("a third prefix went into a trie of two")
	}
	got := hitsOf(t, s, Blocklist)
	if len(got) != 2 || got[mustPrefix("198.18.5.0/24")].RuleID != 1 || got[mustPrefix("198.18.0.0/15")].RuleID != 2 {
		t.Errorf("after the refusal the list holds %v", got)
	}
	checkFilterCounts(t, s)
}
