package shield

import (
	"net/netip"
	"testing"
	"time"

	tu "github.com/aegis-edge/aegis/internal/testutil"
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
	a4 := tu.UDP4("203.0.113.9", dst4).Bytes()    // in 203.0.113.0/24 and 203.0.0.0/16
	b4 := tu.UDP4("203.0.200.9", dst4).Bytes()    // in 203.0.0.0/16 only
	a6 := tu.UDP6("2001:db8:aa::1", dst6).Bytes() // in 2001:db8:aa::/48 and 2001:db8::/32
	wide := tu.UDP4("100.70.1.1", dst4).Bytes()   // in 100.64.0.0/10, shorter than a bucket

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
		"2001:db8::/48": 1, "2001:db8::/32": 1, "2001:d00::/24": 256, "2000::/3": 65536,
	} {
		if got := count(p); got != want {
			t.Errorf("%s covers %d buckets, want %d", p, got, want)
		}
	}
}
