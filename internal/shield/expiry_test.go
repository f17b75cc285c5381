//go:build linux

package shield

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// rawExpiry is the boot-time expiry the kernel holds for p on list l, in
// its table or its hash map.
func rawExpiry(t *testing.T, s *Shield, l List, p netip.Prefix) uint64 {
	t.Helper()
	lm, err := s.maps(l)
	if err != nil {
		t.Fatal(err)
	}
	if tb, k := s.table(p); tb.used() {
		var exp uint64
		found := false
		tb.entries(lm.list, func(key exactKey, expires, _ uint64, _ uint32) {
			if key == k {
				exp, found = expires, true
			}
		})
		if found {
			return exp
		}
	}
	m, key, _ := lm.slot(p)
	e, held, err := lookupEntry(m, key)
	if err != nil || !held {
		t.Fatalf("%s: not in the %s's table nor its hash map (%v)", p, l, err)
	}
	return e.ExpiresNs
}

// TestExpiryBoundary: an entry is live while now < expires and gone at
// expires itself, in every place the data path reads an entry (exact and
// prefix tables, their hash maps) and for both families; an automatic
// block is the same at its end. The Go side (the sweep, the reference
// model of the differential test) uses the same boundary, so the edge
// must be the same in the kernel.
func TestExpiryBoundary(t *testing.T) {
	for _, overflow := range []bool{false, true} {
		opts := Options{}
		if overflow {
			opts = Options{exactMasks: oneBucket, prefixMasks: oneBucket}
		}
		s := newTestShieldWith(t, opts, noLimits())
		for _, tc := range []struct {
			entry, inside string
			fillers       []string // fill the entry's one bucket when overflowing
			want          Reason
		}{
			{"198.51.100.7/32", "198.51.100.7", []string{"198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4"}, ReasonBlockedExact},
			{"198.51.0.0/16", "198.51.9.9", []string{"10.1.0.0/16", "10.2.0.0/16", "10.3.0.0/16", "10.4.0.0/16"}, ReasonBlockedPrefix},
			{"2001:db8::7/128", "2001:db8::7", []string{"2001:db8::1", "2001:db8::2", "2001:db8::3", "2001:db8::4"}, ReasonBlockedExact},
			{"2001:db8:7::/48", "2001:db8:7::9", []string{"2001:db9:1::/48", "2001:db9:2::/48", "2001:db9:3::/48", "2001:db9:4::/48"}, ReasonBlockedPrefix},
		} {
			t.Run(fmt.Sprintf("%s/overflow=%v", tc.entry, overflow), func(t *testing.T) {
				emptyLists(t, s)
				if err := s.setClock(testNow); err != nil {
					t.Fatal(err)
				}
				p := mustPrefix(tc.entry)
				if overflow {
					put(t, s, Blocklist, time.Time{}, tc.fillers...)
				}
				put(t, s, Blocklist, time.Now().Add(time.Hour), tc.entry)
				if overflow {
					if table, hash := storedIn(t, s, Blocklist, p.Addr().Is6(), !p.IsSingleIP()); table != 4 || hash != 1 {
						t.Fatalf("%d in the table, %d in the hash map: want the entry in the hash map", table, hash)
					}
				}
				exp := rawExpiry(t, s, Blocklist, p)
				src := udpFrom(netip.MustParseAddr(tc.inside))
				for _, at := range []struct {
					now  uint64
					live bool
				}{{exp - 1, true}, {exp, false}, {exp + 1, false}} {
					if err := s.setClock(at.now); err != nil {
						t.Fatal(err)
					}
					_, got, _ := run(t, s, src)
					if (got == tc.want) != at.live {
						t.Errorf("at expires%+d ns: %s, want live %v", int64(at.now-exp), got, at.live)
					}
				}
			})
		}
	}

	t.Run("automatic block", func(t *testing.T) {
		s := newTestShield(t, autoBlockSettings())
		if err := s.setClock(testNow); err != nil {
			t.Fatal(err)
		}
		src := netip.MustParseAddr("198.51.100.77")
		for range 30 {
			run(t, s, udpFrom(src))
		}
		st, ok, err := s.sources.get(v4Key(src))
		if err != nil || !ok || st.BlockedUntil == 0 {
			t.Fatalf("the flood set no automatic block: %+v, %v, %v", st, ok, err)
		}
		for _, at := range []struct {
			now     uint64
			blocked bool
		}{{st.BlockedUntil - 1, true}, {st.BlockedUntil, false}} {
			if err := s.setClock(at.now); err != nil {
				t.Fatal(err)
			}
			wantBlocked(t, s, src, at.blocked)
		}
	})
}
