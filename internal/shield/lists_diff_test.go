//go:build linux

package shield

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

var listSeed = flag.Uint64("shield.seed", 0, "run TestListsMatchTheReference with this seed only")

// diffPool are the prefixes the differential test lists: nested and
// adjacent prefixes of every kind the maps and filters treat apart (exact
// addresses, IPv4 prefixes over one or many filter buckets, IPv6 prefixes
// shorter and longer than /48, a whole family).
var diffPool = []string{
	"0.0.0.0/0", "198.16.0.0/12", "198.18.0.0/15", "198.18.0.0/16", "198.18.4.0/23",
	"198.18.5.0/24", "198.18.5.128/25", "198.18.5.7", "198.18.5.8", "198.18.5.128", "198.19.255.255",
	"10.0.0.0/8", "10.1.0.0/16", "10.1.2.3", "10.1.2.4", "203.0.113.9",
	"2000::/3", "2001:db8::/32", "2001:db9::/32", "2001:db8:4::/46", "2001:db8:4::/47",
	"2001:db8:5::/48", "2001:db8:5:1::/64", "2001:db8:5:1:8000::/65", "2001:db8:5:1::7", "2001:db8:5:1::8",
	"2001:db8:5:1:8000::", "2001:db9::1", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
}

// overflowPool is diffPool's exact addresses, more of each family than a
// bucket has ways, with a few prefixes around them: with one bucket a list
// (TestListsMatchTheReferenceOverflowing) exact entries overflow into the
// hash maps and come back to a freed way.
var overflowPool = []string{
	"198.18.5.0/24", "198.18.5.7", "198.18.5.8", "198.18.5.128", "198.19.255.255",
	"10.1.0.0/16", "10.1.2.3", "10.1.2.4", "203.0.113.9",
	"2001:db8:5::/48", "2001:db8:5:1::7", "2001:db8:5:1::8", "2001:db8:5:1:8000::",
	"2001:db9::1", "2001:db9::2", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
}

// diffKey names one list entry.
type diffKey struct {
	list   List
	prefix netip.Prefix
}

// diffEntry is what the store holds for an entry, and the hits the data
// path must have counted for it.
type diffEntry struct {
	rule    uint32
	expires uint64 // boot ns, 0 = permanent
	hits    uint64
}

// TestListsMatchTheReference runs random sequences of additions, removals,
// expiries, sweeps and filter rebuilds of overlapping prefixes on both
// lists and both families. After every step the maps must hold exactly the
// entries the store would, each with the hits the data path counted for it,
// the filters must count exactly what the maps hold, and the data path must
// classify every probe address (inside and outside every prefix, at the
// edges of each) as the reference classifier does over those entries.
func TestListsMatchTheReference(t *testing.T) {
	s := newTestShield(t, noLimits())
	// Two fixed sequences always, and a fresh one unless -short; a seed
	// given on the command line replays its sequence alone (a sequence's
	// first steps do not depend on its length).
	type sequence struct {
		seed  uint64
		steps int
	}
	runs := []sequence{{1, 40}, {2, 40}}
	if !testing.Short() {
		runs = append(runs, sequence{uint64(time.Now().UnixNano()), 100})
	}
	if *listSeed != 0 {
		runs = []sequence{{*listSeed, 100}}
	}
	for _, r := range runs {
		t.Run(fmt.Sprint(r.seed), func(t *testing.T) {
			t.Logf("seed %d (again: go test -run TestListsMatchTheReference ./internal/shield -shield.seed=%d)", r.seed, r.seed)
			emptyLists(t, s)
			runListSequence(t, s, rand.New(rand.NewPCG(r.seed, r.seed)), r.steps, diffPool, nil)
		})
	}
}

// TestListsMatchTheReferenceOverflowing runs the fixed sequences on a
// shield whose exact and prefix tables have one bucket a list: most
// entries go to the hash maps, and a removal frees a way the next entry
// takes, so each kind of entry is looked up in both places.
func TestListsMatchTheReferenceOverflowing(t *testing.T) {
	s := newTestShieldWith(t, Options{exactMasks: oneBucket, prefixMasks: oneBucket}, noLimits())
	var hashed [2]int // the most exact entries of a family seen in the hash maps at once
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			emptyLists(t, s)
			runListSequence(t, s, rand.New(rand.NewPCG(seed, seed)), 40, diffPool, nil)
		})
		t.Run(fmt.Sprintf("exact-%d", seed), func(t *testing.T) {
			emptyLists(t, s)
			runListSequence(t, s, rand.New(rand.NewPCG(seed, seed)), 40, overflowPool, func() {
				for fam, v6 := range []bool{false, true} {
					for _, l := range []List{Allowlist, Blocklist} {
						_, n := storedIn(t, s, l, v6, false)
						hashed[fam] = max(hashed[fam], n)
					}
				}
			})
		})
	}
	t.Logf("exact entries in the hash maps at once, at most: IPv4 %d, IPv6 %d", hashed[0], hashed[1])
	if hashed[0] == 0 || hashed[1] == 0 {
		t.Errorf("exact entries never overflowed into the hash maps (IPv4 %d, IPv6 %d at most): the sequences test the tables alone", hashed[0], hashed[1])
	}
}

// runListSequence runs steps random steps over the prefixes of names on s,
// checking it against the model after each; after, if not nil, runs then
// too.
func runListSequence(t *testing.T, s *Shield, rng *rand.Rand, steps int, names []string, after func()) {
	pool := make([]netip.Prefix, len(names))
	for i, p := range names {
		pool[i] = mustPrefix(p)
	}
	probes := probeAddrs(pool, rng)
	lists := []List{Allowlist, Blocklist}
	model := map[diffKey]*diffEntry{}
	var ruleID uint32
	// The clock stays half a second off the whole seconds expiries fall
	// on, so the wall-to-boot conversion of an expiry cannot move it past
	// a probe.
	now := testNow + uint64(time.Second/2)
	if err := s.setClock(now); err != nil {
		t.Fatal(err)
	}
	pick := func() diffKey { return diffKey{lists[rng.IntN(2)], pool[rng.IntN(len(pool))]} }

	for step := range steps {
		var desc string
		switch op := rng.IntN(20); {
		case op < 9: // add (or rewrite) a few entries in one call
			l := lists[rng.IntN(2)]
			wall := s.clock().wall
			var rules []Rule
			for range 1 + rng.IntN(3) {
				k := diffKey{l, pool[rng.IntN(len(pool))]}
				ruleID++
				r := Rule{Prefix: k.prefix, RuleID: ruleID}
				var exp uint64
				if rng.IntN(2) == 0 {
					// Whole seconds from one in the past to four ahead.
					exp = (now/uint64(time.Second) + uint64(rng.IntN(6))) * uint64(time.Second)
					exp -= uint64(time.Second)
					r.Expires = wall.Add(time.Duration(int64(exp) - int64(now)))
				}
				rules = append(rules, r)
				if rng.IntN(4) == 0 { // the same prefix twice in one call
					ruleID++
					again := r
					again.RuleID = ruleID
					rules = append(rules, again)
				}
			}
			if err := s.PutRules(l, rules); err != nil {
				t.Fatal(err)
			}
			for _, r := range rules {
				k := diffKey{l, r.Prefix}
				var exp uint64
				if !r.Expires.IsZero() {
					exp = now + uint64(r.Expires.Sub(wall))
					if r.Expires.Sub(wall) <= 0 {
						exp = 1
					}
				}
				if e := model[k]; e != nil {
					e.rule, e.expires = r.RuleID, exp
				} else {
					model[k] = &diffEntry{rule: r.RuleID, expires: exp}
				}
				desc += fmt.Sprintf(" %s:%s#%d", l, r.Prefix, r.RuleID)
				switch {
				case exp == 1:
					desc += "@expired"
				case exp != 0:
					desc += fmt.Sprintf("@%+.1fs", float64(int64(exp-now))/float64(time.Second))
				}
			}
			desc = "put" + desc
		case op < 14: // remove a few, listed or not
			k := pick()
			ps := []netip.Prefix{k.prefix}
			for range rng.IntN(3) {
				ps = append(ps, pool[rng.IntN(len(pool))])
			}
			if err := s.DeleteRules(k.list, ps); err != nil {
				t.Fatal(err)
			}
			for _, p := range ps {
				delete(model, diffKey{k.list, p})
			}
			desc = fmt.Sprintf("rm %s %v", k.list, ps)
		case op < 17: // time passes
			now += uint64(1+rng.IntN(2)) * uint64(time.Second)
			if err := s.setClock(now); err != nil {
				t.Fatal(err)
			}
			desc = fmt.Sprintf("clock +%ds", (now-testNow)/uint64(time.Second))
		case op < 19: // the node's sweep: remove what the store says expired
			byList := map[List][]netip.Prefix{}
			for k, e := range model {
				if e.expires != 0 && e.expires <= now {
					byList[k.list] = append(byList[k.list], k.prefix)
					delete(model, k)
				}
			}
			for l, ps := range byList {
				if err := s.DeleteRules(l, ps); err != nil {
					t.Fatal(err)
				}
			}
			desc = fmt.Sprintf("sweep %v", byList)
		default: // a new daemon adopting the maps rebuilds the filters
			if err := s.initPrefilters(); err != nil {
				t.Fatal(err)
			}
			desc = "rebuild filters"
		}
		t.Logf("step %d: %s", step, desc)

		checkListModel(t, s, model)
		checkFilterCounts(t, s)
		classifyProbes(t, s, probes, model, now)
		if after != nil {
			after()
		}
		if t.Failed() {
			t.FailNow() // the first divergence is the one to read
		}
	}
}

// probeAddrs are the addresses the data path is asked about: each
// prefix's first and last address, those just outside it, and one inside
// at random.
func probeAddrs(pool []netip.Prefix, rng *rand.Rand) []netip.Addr {
	var out []netip.Addr
	for _, p := range pool {
		first := p.Addr()
		last := lastAddr(p)
		out = append(out, first, last, first.Prev(), last.Next(), randomIn(p, rng))
	}
	out = slices.DeleteFunc(out, func(a netip.Addr) bool { return !a.IsValid() })
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func randomIn(p netip.Prefix, rng *rand.Rand) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		if rng.IntN(2) == 0 {
			b[i/8] |= 0x80 >> (i % 8)
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// checkListModel compares both lists in the kernel with the model: the
// same prefixes, rule IDs, permanence and hit counters.
func checkListModel(t *testing.T, s *Shield, model map[diffKey]*diffEntry) {
	t.Helper()
	seen := 0
	for _, l := range []List{Allowlist, Blocklist} {
		for p, r := range hitsOf(t, s, l) {
			e := model[diffKey{l, p}]
			if e == nil {
				t.Errorf("%s on the %s map, not in the store", p, l)
				continue
			}
			seen++
			if r.RuleID != e.rule || r.Expires.IsZero() != (e.expires == 0) || r.Hits != e.hits {
				t.Errorf("%s %s: kernel has rule %d permanent %v hits %d, store rule %d permanent %v, hits counted %d",
					l, p, r.RuleID, r.Expires.IsZero(), r.Hits, e.rule, e.expires == 0, e.hits)
			}
		}
	}
	if seen != len(model) {
		for k := range model {
			if _, ok := hitsOf(t, s, k.list)[k.prefix]; !ok {
				t.Errorf("%s in the store, not on the %s map", k.prefix, k.list)
			}
		}
	}
}

// classifyProbes sends one frame from every probe address through the
// data path and compares its verdict with the reference classifier's over
// the model's entries; it then counts the hit on the entry the data path
// matches (the live exact entry, else the longest live prefix; the
// allowlist first).
func classifyProbes(t *testing.T, s *Shield, probes []netip.Addr, model map[diffKey]*diffEntry, now uint64) {
	t.Helper()
	var rules []refRule
	for k, e := range model {
		rules = append(rules, refRule{k.list, k.prefix, e.expires})
	}
	before := counterSums(t, s)
	for _, a := range probes {
		frame := udpFrom(a)
		ret, err := s.Program().Run(&ebpf.RunOptions{Data: frame})
		if err != nil {
			t.Fatalf("test run: %v", err)
		}
		after := counterSums(t, s)
		got := Reason(numReasons)
		for _, r := range Reasons() {
			if after[r].Packets != before[r].Packets {
				got = r
			}
		}
		before = after
		if wantRet, want := reference(frame, rules, now); ret != wantRet || got != want {
			t.Errorf("%s: data path %d %s, reference %d %s", a, ret, got, wantRet, want)
		}
		if k, ok := matchedEntry(model, a, now); ok {
			model[k].hits++
		}
	}
}

// matchedEntry is the entry whose hit counter the data path bumps for a
// packet from src.
func matchedEntry(model map[diffKey]*diffEntry, src netip.Addr, now uint64) (diffKey, bool) {
	live := func(e *diffEntry) bool { return e.expires == 0 || e.expires > now }
	for _, l := range []List{Allowlist, Blocklist} {
		exact := diffKey{l, netip.PrefixFrom(src, src.BitLen())}
		if e := model[exact]; e != nil && live(e) {
			return exact, true
		}
		for bits := src.BitLen() - 1; bits >= 0; bits-- {
			k := diffKey{l, netip.PrefixFrom(src, bits).Masked()}
			if e := model[k]; e != nil && live(e) {
				return k, true // an expired entry is as if absent: the next-longest decides
			}
		}
	}
	return diffKey{}, false
}
