//go:build linux

package shield

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/netlab"
)

// TestPrefilterNeverHidesAPrefix adds and removes prefixes that share
// prefilter buckets and checks the data path after every step.
func TestPrefilterNeverHidesAPrefix(t *testing.T) {
	s := newTestShield(t, noLimits())
	check := func(step string, frame []byte, want Reason) {
		t.Helper()
		if _, got, _ := run(t, s, frame); got != want {
			t.Errorf("%s: got %s, want %s", step, got, want)
		}
	}
	a4 := netlab.UDP4("203.0.113.9", dst4).Bytes()    // in 203.0.113.0/24 and 203.0.0.0/16
	b4 := netlab.UDP4("203.0.200.9", dst4).Bytes()    // in 203.0.0.0/16 only
	a6 := netlab.UDP6("2001:db8:aa::1", dst6).Bytes() // in 2001:db8:aa::/48 and 2001:db8::/32
	wide := netlab.UDP4("100.70.1.1", dst4).Bytes()   // in 100.64.0.0/10, shorter than a bucket

	put(t, s, Blocklist, time.Time{}, "203.0.113.0/24", "203.0.0.0/16", "2001:db8:aa::/48", "2001:db8::/32", "100.64.0.0/10")
	check("both v4 prefixes", a4, ReasonBlockedPrefix)
	check("wide prefix", wide, ReasonBlockedPrefix)
	if err := s.DeleteRules(Blocklist, []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}); err != nil {
		t.Fatal(err)
	}
	check("/16 left in the same bucket", a4, ReasonBlockedPrefix)
	check("/16 left, other address", b4, ReasonBlockedPrefix)
	if err := s.DeleteRules(Blocklist, []netip.Prefix{netip.MustParsePrefix("203.0.0.0/16"), netip.MustParsePrefix("2001:db8::/32")}); err != nil {
		t.Fatal(err)
	}
	check("no v4 prefix left in the bucket", a4, ReasonPassed)
	check("v6 /48 left", a6, ReasonBlockedPrefix)
	if f := s.filters[prefilterBlockV4]; f.counts[203<<8] != 0 {
		t.Errorf("bucket 203.0/16 still counted %d", f.counts[203<<8])
	}

	// A reloaded shield rebuilds the filter from the tries it adopts.
	if err := s.initPrefilters(); err != nil {
		t.Fatal(err)
	}
	check("after rebuild, v6", a6, ReasonBlockedPrefix)
	check("after rebuild, wide", wide, ReasonBlockedPrefix)
	check("after rebuild, removed", a4, ReasonPassed)
}

func TestPrefilterBuckets(t *testing.T) {
	count := func(p string) int {
		n := 0
		buckets(netip.MustParsePrefix(p), func(uint32) { n++ })
		return n
	}
	for p, want := range map[string]int{
		"192.0.2.0/24": 1, "10.0.0.0/16": 1, "10.0.0.0/8": 256, "0.0.0.0/0": 65536,
		"2001:db8::/48": 1, "2001:db8::/32": 1, "2001:d00::/24": 256, "2000::/3": 1 << 20,
	} {
		if got := count(p); got != want {
			t.Errorf("%s covers %d buckets, want %d", p, got, want)
		}
	}
}

// TestExactFilterAgreesWithTheDataPath lists thousands of random addresses,
// so that the Go and C hashes must agree for every one (a listed address
// the filter hid would pass), then removes half, including addresses that
// share a filter bit with one that stays.
func TestExactFilterAgreesWithTheDataPath(t *testing.T) {
	s := newTestShield(t, noLimits())
	rng := rand.New(rand.NewPCG(7, 7))
	var addrs []netip.Addr
	for range 1500 {
		var b4 [4]byte
		binary.BigEndian.PutUint32(b4[:], rng.Uint32()|1<<31) // not 0.0.0.0/1 specials
		addrs = append(addrs, netip.AddrFrom4(b4))
		var b16 [16]byte
		binary.BigEndian.PutUint64(b16[:], 0x20010db8_00000000|rng.Uint64()>>32)
		binary.BigEndian.PutUint64(b16[8:], rng.Uint64())
		addrs = append(addrs, netip.AddrFrom16(b16))
	}
	// Two addresses forced onto one filter bit: find a partner for addrs[0].
	shared := exactHash(addrs[0])
	for i := uint32(0); ; i++ {
		var b4 [4]byte
		binary.BigEndian.PutUint32(b4[:], 0xc0000000+i)
		if a := netip.AddrFrom4(b4); a != addrs[0] && exactHash(a) == shared {
			addrs = append(addrs, a)
			break
		}
	}
	var rules []Rule
	for i, a := range addrs {
		rules = append(rules, Rule{Prefix: netip.PrefixFrom(a, a.BitLen()), RuleID: uint32(i + 1)})
	}
	if err := s.PutRules(Blocklist, rules); err != nil {
		t.Fatal(err)
	}
	frame := func(a netip.Addr) []byte {
		if a.Is4() {
			return netlab.UDP4(a.String(), dst4).Bytes()
		}
		return netlab.UDP6(a.String(), dst6).Bytes()
	}
	for _, a := range addrs {
		if _, got, _ := run(t, s, frame(a)); got != ReasonBlockedExact {
			t.Fatalf("listed %s: %s (the filter hid it)", a, got)
		}
	}
	// Remove addrs[0] and every second address; the partner sharing
	// addrs[0]'s bit must still be found.
	var gone []netip.Prefix
	for i, a := range addrs[:len(addrs)-1] {
		if i%2 == 0 {
			gone = append(gone, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	if err := s.DeleteRules(Blocklist, gone); err != nil {
		t.Fatal(err)
	}
	for i, a := range addrs {
		want := ReasonBlockedExact
		if i%2 == 0 && i != len(addrs)-1 {
			want = ReasonPassed
		}
		if _, got, _ := run(t, s, frame(a)); got != want {
			t.Fatalf("after removals, %s: %s, want %s", a, got, want)
		}
	}
	if n := s.exact[prefilterBlockV4].counts[shared]; n != 1 {
		t.Errorf("shared bit counted %d, want 1", n)
	}
}

// TestLongPrefilter covers IPv6 prefixes of /48 and longer, kept in their
// own bitmaps: the covered addresses are found, the rest of the /32 is not
// sent to the trie, and a bucket shared by two prefixes survives the
// removal of one.
func TestLongPrefilter(t *testing.T) {
	s := newTestShield(t, noLimits())
	check := func(step, src string, want Reason) {
		t.Helper()
		if _, got, _ := run(t, s, netlab.UDP6(src, dst6).Bytes()); got != want {
			t.Errorf("%s: %s got %s, want %s", step, src, got, want)
		}
	}
	put(t, s, Blocklist, time.Time{}, "2001:db8:dead::/48", "2001:db8:beef:1::/64", "2001:db8:dead:2::/64")
	check("in the /48", "2001:db8:dead:7::1", ReasonBlockedPrefix)
	check("in the /64", "2001:db8:beef:1::9", ReasonBlockedPrefix)
	check("same /48, other /64", "2001:db8:beef:2::9", ReasonPassed)
	check("same /32, no prefix", "2001:db8::1", ReasonPassed)
	if f := s.filters[prefilterBlockV6]; f.counts[bucketV6(0x20010db8)] != 0 {
		t.Errorf("long prefixes counted in the /32 bucket: %d", f.counts[bucketV6(0x20010db8)])
	}
	if err := s.DeleteRules(Blocklist, []netip.Prefix{netip.MustParsePrefix("2001:db8:dead::/48")}); err != nil {
		t.Fatal(err)
	}
	check("/64 left in the /48's bucket", "2001:db8:dead:2::5", ReasonBlockedPrefix)
	check("rest of the removed /48", "2001:db8:dead:7::1", ReasonPassed)
	put(t, s, Blocklist, time.Time{}, "2001:db8::/40")
	check("a /40 goes to the /32 bucket", "2001:db8:77::1", ReasonBlockedPrefix)
}
