//go:build linux

package shield

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	tu "github.com/aegis-edge/aegis/internal/testutil"
)

// oneBucket leaves each list of each family one bucket of four ways in the
// exact tables: its fifth address goes to the hash map.
var oneBucket = &[4]uint32{}

// exactIn counts where a list's exact addresses of a family are: in the
// table and in the hash map.
func exactIn(t *testing.T, s *Shield, l List, v6 bool) (table, hash int) {
	t.Helper()
	return storedIn(t, s, l, v6, false)
}

// storedIn counts a list's entries of a family and kind (prefixes or exact
// addresses) in their table and in their hash map.
func storedIn(t *testing.T, s *Shield, l List, v6, prefix bool) (table, hash int) {
	t.Helper()
	lm, err := s.maps(l)
	if err != nil {
		t.Fatal(err)
	}
	i := 0 // stores: exact4, prefix4, exact6, prefix6
	if v6 {
		i += 2
	}
	if prefix {
		i++
	}
	st := s.stores(lm)[i]
	var k []byte
	var v shieldEntry
	it := st.m.Iterate()
	for it.Next(&k, &v) {
		hash++
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	if st.table.used() {
		table = st.table.count(lm.list)
	}
	return table, hash
}

func exactAddrs(v6 bool, base, n int) []netip.Addr {
	var out []netip.Addr
	for i := range n {
		if v6 {
			out = append(out, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0xee, byte(base), 14: byte(i >> 8), 15: byte(i)}))
		} else {
			out = append(out, netip.AddrFrom4([4]byte{10, 77, byte(base), byte(i)}))
		}
	}
	return out
}

// TestExactTablesOverflow: with one bucket a list, four addresses take the
// table's ways and the rest the hash map; the data path finds each where
// it is, counts its hits there, and a removal frees a way the next address
// takes. Both lists, both families; the filters and presence flags follow.
func TestExactTablesOverflow(t *testing.T) {
	s := newTestShieldWith(t, Options{exactMasks: oneBucket}, noLimits())
	if !s.table4.used() {
		t.Fatal("the exact tables are not mapped on a kernel that maps arrays")
	}
	checkOverflow(t, s, false)
}

// checkOverflow is TestExactTablesOverflow, and TestPrefixTablesOverflow
// with prefix: seven entries of each list and family (exact addresses or
// prefixes), an address in each, on a shield whose tables of that kind
// have one bucket a list.
func checkOverflow(t *testing.T, s *Shield, prefix bool) {
	for _, l := range []List{Blocklist, Allowlist} {
		want := ReasonBlockedExact
		if prefix {
			want = ReasonBlockedPrefix
		}
		if l == Allowlist {
			want = ReasonAllowlisted
		}
		for _, v6 := range []bool{false, true} {
			name := fmt.Sprintf("%s v6=%v", l, v6)
			var entries []netip.Prefix
			var inside []netip.Addr
			if prefix {
				entries, inside = testPrefixes(v6, len(l), 7)
			} else {
				inside = exactAddrs(v6, len(l), 7)
				for _, a := range inside {
					entries = append(entries, netip.PrefixFrom(a, a.BitLen()))
				}
			}
			var rules []Rule
			for i, p := range entries[:6] {
				rules = append(rules, Rule{Prefix: p, RuleID: uint32(i + 1)})
			}
			if err := s.PutRules(l, rules); err != nil {
				t.Fatal(err)
			}
			if table, hash := storedIn(t, s, l, v6, prefix); table != 4 || hash != 2 {
				t.Fatalf("%s: %d in the table, %d in the hash map; want 4 and 2", name, table, hash)
			}
			for _, a := range inside[:6] {
				if _, got, _ := run(t, s, udpFrom(a)); got != want {
					t.Errorf("%s: %s counted %s, want %s", name, a, got, want)
				}
			}
			if _, got, _ := run(t, s, udpFrom(inside[6])); got == want {
				t.Errorf("%s: %s, never listed, counted %s", name, inside[6], got)
			}
			for _, r := range rules {
				if got := hitsOf(t, s, l)[r.Prefix]; got.Hits != 1 || got.RuleID != r.RuleID {
					t.Errorf("%s: %s has %d hits and rule %d, want 1 and %d", name, r.Prefix, got.Hits, got.RuleID, r.RuleID)
				}
			}
			// Put again with a new rule: held in place, hits kept.
			again := rules[0]
			again.RuleID = 99
			if err := s.PutRules(l, []Rule{again}); err != nil {
				t.Fatal(err)
			}
			if got := hitsOf(t, s, l)[again.Prefix]; got.Hits != 1 || got.RuleID != 99 {
				t.Errorf("%s: after a put over it, %s has %d hits and rule %d", name, again.Prefix, got.Hits, got.RuleID)
			}
			// A removal frees a way; the next entry takes it.
			if err := s.DeleteRules(l, []netip.Prefix{rules[0].Prefix}); err != nil {
				t.Fatal(err)
			}
			if _, got, _ := run(t, s, udpFrom(inside[0])); got == want {
				t.Errorf("%s: %s still counted %s after its removal", name, inside[0], got)
			}
			if err := s.PutRules(l, []Rule{{Prefix: entries[6]}}); err != nil {
				t.Fatal(err)
			}
			if table, hash := storedIn(t, s, l, v6, prefix); table != 4 || hash != 2 {
				t.Fatalf("%s after a removal and a put: %d in the table, %d in the hash map; want 4 and 2", name, table, hash)
			}
			if _, got, _ := run(t, s, udpFrom(inside[6])); got != want {
				t.Errorf("%s: %s in a freed way counted %s", name, inside[6], got)
			}
			// An entry the hash map holds, put again once a way is free,
			// stays there: one copy (a second in the table, with another
			// expiry, would leave the first to answer once it ended), its
			// hits kept.
			if err := s.DeleteRules(l, []netip.Prefix{rules[1].Prefix}); err != nil {
				t.Fatal(err)
			}
			held := rules[4]
			held.RuleID = 98
			if err := s.PutRules(l, []Rule{held}); err != nil {
				t.Fatal(err)
			}
			if table, hash := storedIn(t, s, l, v6, prefix); table != 3 || hash != 2 {
				t.Errorf("%s: put again with a way free, %s is in the table %d, hash map %d times; want 3 and 2", name, held.Prefix, table, hash)
			}
			if got := hitsOf(t, s, l)[held.Prefix]; got.Hits != 1 || got.RuleID != 98 {
				t.Errorf("%s: put again with a way free, %s has %d hits and rule %d, want 1 and 98", name, held.Prefix, got.Hits, got.RuleID)
			}
			checkFilterCounts(t, s)
		}
	}
	// Everything removed: no presence flag is left.
	for _, l := range []List{Blocklist, Allowlist} {
		var all []netip.Prefix
		for p := range hitsOf(t, s, l) {
			all = append(all, p)
		}
		if err := s.DeleteRules(l, all); err != nil {
			t.Fatal(err)
		}
	}
	if s.cfg.Presence != 0 {
		t.Errorf("presence flags %#x left with the lists empty", s.cfg.Presence)
	}
	checkFilterCounts(t, s)
}

// TestExactTableExpiry: an expired entry in the table counts as absent, as
// in the hash map, and its expiry changed in place is read at once.
func TestExactTableExpiry(t *testing.T) {
	s := newTestShield(t, noLimits())
	a := netip.MustParseAddr("10.78.0.1")
	put(t, s, Blocklist, s.clock().wall.Add(-time.Second), a.String())
	if _, got, _ := run(t, s, udpFrom(a)); got == ReasonBlockedExact {
		t.Fatal("an expired entry of the table dropped a packet")
	}
	put(t, s, Blocklist, s.clock().wall.Add(time.Hour), a.String())
	if _, got, _ := run(t, s, udpFrom(a)); got != ReasonBlockedExact {
		t.Fatalf("after its expiry moved ahead: %s", got)
	}
	if table, hash := exactIn(t, s, Blocklist, false); table != 1 || hash != 0 {
		t.Fatalf("%d in the table, %d in the hash map", table, hash)
	}
}

// TestExactTableRace: userspace churns one way of a bucket while packets of
// an innocent address and of a listed one run on both CPUs. The churned
// addresses are built from the two: each half of the innocent address
// paired with another's half, and the listed address with its first or its
// last word changed, so that a read that took one address's first words
// and the next one's last words would match the innocent address (and drop
// it) or the listed one in the churned way (and, given up there, miss it in
// its own way, further on). None of the innocent address's packets is
// dropped and every one of the listed address's is. (With the data path's
// second read of the state taken out, 2 runs of 3 dropped the innocent
// address; with a torn way ending the lookup instead of being passed
// over, 1 run of 3 let the listed address through, and a review's 10 s
// test 7 to 16 times.)
func TestExactTableRace(t *testing.T) {
	s := newTestShieldWith(t, Options{exactMasks: oneBucket}, noLimits())
	innocent := netip.MustParseAddr("2001:db8:aaaa:aaaa:bbbb:bbbb:cccc:cccc")
	listed := netip.MustParseAddr("2001:db8:7777:7777:8888:8888:9999:9999")
	other := [16]byte{0x20, 0x01, 0x0d, 0xb8, 0xff, 0xff, 0xff, 0xff, 0xee, 0xee, 0xee, 0xee, 0xdd, 0xdd, 0xdd, 0xdd}
	halves := func(hi, lo [16]byte) exactKey {
		var b [16]byte
		copy(b[:8], hi[:8])
		copy(b[8:], lo[8:])
		return key6(netip.AddrFrom16(b))
	}
	word := func(a netip.Addr, i int) exactKey {
		b := a.As16()
		b[4*i] ^= 0x55
		return key6(netip.AddrFrom16(b))
	}
	churn := []exactKey{
		word(listed, 3), word(listed, 0), // torn between them: the listed address
		halves(innocent.As16(), other), halves(other, innocent.As16()), // torn: the innocent one
	}
	// The churned way comes before the listed address's: a placeholder
	// takes the first way while the listed address and the innocent one's
	// filter twin take the next two, then leaves it free.
	placeholder := "2001:db8::1"
	put(t, s, Blocklist, time.Time{}, placeholder, listed.String(), filterTwin(innocent).String())
	if err := s.DeleteRules(Blocklist, []netip.Prefix{mustPrefix(placeholder)}); err != nil {
		t.Fatal(err)
	}

	raceReads(t, s, innocent, listed, ReasonBlockedExact, func(i int) bool {
		// Straight through the table, as PutRules and DeleteRules
		// write it, but many times faster than they sync the filters.
		k := churn[i%len(churn)]
		s.mu.Lock()
		defer s.mu.Unlock()
		placed := s.table6.place(1, k, 0, 0)
		s.table6.remove(1, k)
		return placed
	})
}

// raceReads runs packets of an innocent address and of a listed one on
// both CPUs for three seconds while churn(i) writes the tables, i counting
// up, until it returns false (no free way). Every packet of the innocent
// address must pass and every one of the listed address's be dropped for
// reason.
func raceReads(t *testing.T, s *Shield, innocent, listed netip.Addr, reason Reason, churn func(i int) bool) {
	t.Helper()
	before, err := s.Counters()
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var writes atomic.Int64
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if !churn(i) {
				t.Error("no free way for the churned entry")
				return
			}
			writes.Add(2)
		}
	})
	var innocentRuns, listedRuns atomic.Int64
	deadline := time.Now().Add(3 * time.Second)
	for cpu := range 2 {
		wg.Go(func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			if !pinToCPU(t, cpu) {
				return
			}
			frames := [][]byte{udpFrom(innocent), udpFrom(listed)}
			for i := 0; time.Now().Before(deadline); i++ {
				ret, err := s.Program().Run(&ebpf.RunOptions{Data: frames[i%2], Repeat: 100})
				if err != nil {
					t.Error(err)
					return
				}
				if i%2 == 0 {
					if ret != xdpPass {
						t.Errorf("innocent %s dropped on CPU %d", innocent, cpu)
						return
					}
					innocentRuns.Add(100)
				} else {
					if ret != xdpDrop {
						t.Errorf("listed %s let through on CPU %d", listed, cpu)
						return
					}
					listedRuns.Add(100)
				}
			}
		})
	}
	time.Sleep(time.Until(deadline))
	close(stop)
	wg.Wait()
	c, err := s.Counters()
	if err != nil {
		t.Fatal(err)
	}
	// More is fine in both counts: a run a signal interrupts is started
	// over.
	if dropped := c.Verdicts[reason].Packets - before.Verdicts[reason].Packets; dropped < uint64(listedRuns.Load()) {
		t.Errorf("%d packets dropped as listed, %d of the listed address run", dropped, listedRuns.Load())
	}
	if passed := c.Verdicts[ReasonPassed].Packets - before.Verdicts[ReasonPassed].Packets; passed < uint64(innocentRuns.Load()) {
		t.Errorf("%d packets of the innocent address passed of %d run", passed, innocentRuns.Load())
	}
	t.Logf("%d innocent and %d listed packets on 2 CPUs, %d writes to their bucket", innocentRuns.Load(), listedRuns.Load(), writes.Load())
	if writes.Load() == 0 || innocentRuns.Load() == 0 {
		t.Error("the race did not run")
	}
}

// key6 is an IPv6 address's key in the exact table.
func key6(a netip.Addr) exactKey {
	var k exactKey
	w := addr6Words(a)
	copy(k[:4], w[:])
	return k
}

// filterTwin is an IPv6 address other than a whose exact-filter hash is
// a's.
func filterTwin(a netip.Addr) netip.Addr {
	want := exactHash(a)
	b := a.As16()
	for i := uint32(1); ; i++ {
		c := b
		c[12], c[13], c[14], c[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
		if cand := netip.AddrFrom16(c); cand != a && exactHash(cand) == want {
			return cand
		}
	}
}

// TestExactTablesAdopted: a daemon restarted over pinned maps finds the
// exact tables' entries where its predecessor placed them, with their hits,
// and goes on placing and removing without disturbing them.
func TestExactTablesAdopted(t *testing.T) {
	tu.RequireRoot(t)
	pin := tu.PinPath(t)
	first, err := Load(Options{PinPath: pin})
	if err != nil {
		t.Fatal(err)
	}
	put(t, first, Blocklist, time.Time{}, "10.79.0.1", "2001:db8::79", "10.79.1.0/24", "2001:db8:79::/48")
	if _, got, _ := run(t, first, udpFrom(netip.MustParseAddr("10.79.0.1"))); got != ReasonBlockedExact {
		t.Fatalf("before the restart: %s", got)
	}
	if _, got, _ := run(t, first, udpFrom(netip.MustParseAddr("10.79.1.1"))); got != ReasonBlockedPrefix {
		t.Fatalf("before the restart, in the prefix: %s", got)
	}
	first.Close()

	s, err := Load(Options{PinPath: pin})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	hits := hitsOf(t, s, Blocklist)
	if len(hits) != 4 || hits[mustPrefix("10.79.0.1")].Hits != 1 || hits[mustPrefix("10.79.1.0/24")].Hits != 1 {
		t.Fatalf("after the restart the blocklist is %+v", hits)
	}
	if table, hash := exactIn(t, s, Blocklist, false); table != 1 || hash != 0 {
		t.Fatalf("after the restart: %d in the table, %d in the hash map", table, hash)
	}
	if table, hash := prefixIn(t, s, Blocklist, true); table != 1 || hash != 0 {
		t.Fatalf("after the restart: %d IPv6 prefixes in the table, %d in the hash map", table, hash)
	}
	put(t, s, Blocklist, time.Time{}, "10.79.0.2", "10.79.2.0/24")
	if err := s.DeleteRules(Blocklist, []netip.Prefix{mustPrefix("2001:db8::79"), mustPrefix("2001:db8:79::/48")}); err != nil {
		t.Fatal(err)
	}
	for a, want := range map[string]Reason{"10.79.0.1": ReasonBlockedExact, "10.79.0.2": ReasonBlockedExact, "2001:db8::79": ReasonPassed,
		"10.79.1.1": ReasonBlockedPrefix, "10.79.2.2": ReasonBlockedPrefix, "2001:db8:79::1": ReasonPassed} {
		if _, got, _ := run(t, s, udpFrom(netip.MustParseAddr(a))); got != want {
			t.Errorf("%s after the restart: %s, want %s", a, got, want)
		}
	}
	checkFilterCounts(t, s)
}

// TestExactWithoutMmap: where the kernel cannot map arrays (before 5.5)
// the tables stay empty and every exact entry and prefix goes to the hash
// maps, as before the tables.
func TestExactWithoutMmap(t *testing.T) {
	s := newTestShieldWith(t, Options{noMmap: true}, noLimits())
	if s.table4.used() || s.table6.used() || s.prefix4.used() || s.prefix6.used() {
		t.Fatal("the exact or prefix tables are used without mmap")
	}
	put(t, s, Blocklist, time.Time{}, "10.80.0.1", "2001:db8::80", "10.80.1.0/24", "2001:db8:80::/48")
	put(t, s, Allowlist, time.Time{}, "10.80.0.2")
	for a, want := range map[string]Reason{"10.80.0.1": ReasonBlockedExact, "2001:db8::80": ReasonBlockedExact,
		"10.80.0.2": ReasonAllowlisted, "10.80.0.3": ReasonPassed, "10.80.1.1": ReasonBlockedPrefix, "2001:db8:80::1": ReasonBlockedPrefix} {
		if _, got, _ := run(t, s, udpFrom(netip.MustParseAddr(a))); got != want {
			t.Errorf("%s: %s, want %s", a, got, want)
		}
	}
	if table, hash := exactIn(t, s, Blocklist, false); table != 0 || hash != 1 {
		t.Fatalf("without mmap: %d in the table, %d in the hash map", table, hash)
	}
	if table, hash := prefixIn(t, s, Blocklist, true); table != 0 || hash != 1 {
		t.Fatalf("without mmap: %d IPv6 prefixes in the table, %d in the hash map", table, hash)
	}
	checkFilterCounts(t, s)
}

// TestExactRemovalTakesBothCopies: an address in the table and in the hash
// map as well (a daemon of an earlier version put it there, run over the
// same pins) is gone from both once removed.
func TestExactRemovalTakesBothCopies(t *testing.T) {
	s := newTestShield(t, noLimits())
	a := netip.MustParseAddr("10.81.0.1")
	put(t, s, Blocklist, time.Time{}, a.String())
	b := a.As4()
	if err := s.objs.BlockV4.Put(binary.NativeEndian.Uint32(b[:]), shieldEntry{RuleId: 7}); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	err := s.exactPresenceLocked()
	s.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRules(Blocklist, []netip.Prefix{mustPrefix(a.String())}); err != nil {
		t.Fatal(err)
	}
	if _, got, _ := run(t, s, udpFrom(a)); got == ReasonBlockedExact {
		t.Error("the address is still dropped after its removal")
	}
	if table, hash := exactIn(t, s, Blocklist, false); table != 0 || hash != 0 {
		t.Errorf("after the removal: %d in the table, %d in the hash map", table, hash)
	}
}
