//go:build linux

package shield

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/aegis-edge/aegis/internal/lists"
)

// TestSyncIsIdempotent applies the same batch twice: the second changes
// nothing, and a held rule keeps its hit counter, so a node may repair a
// list by syncing it again.
func TestSyncIsIdempotent(t *testing.T) {
	s := newTestShield(t, DefaultSettings())
	p := func(v string) netip.Prefix { return netip.MustParsePrefix(v) }
	first := ListChange{Put: []Rule{{Prefix: p("192.0.2.1/32"), RuleID: 1}, {Prefix: p("198.51.100.0/24"), RuleID: 2}}}
	second := ListChange{Put: []Rule{{Prefix: p("2001:db8::/32"), RuleID: 3}}, Delete: []netip.Prefix{p("192.0.2.1/32"), p("203.0.113.0/24")}}
	for range 2 {
		if err := s.Sync(Blocklist, first); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if err := s.Sync(Blocklist, second); err != nil {
			t.Fatal(err)
		}
	}
	rules, err := s.Rules(Blocklist)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rules {
		got = append(got, r.Prefix.String())
	}
	slices.Sort(got)
	if want := []string{"198.51.100.0/24", "2001:db8::/32"}; !slices.Equal(got, want) {
		t.Errorf("after syncing twice: %v, want %v", got, want)
	}
	if err := s.Sync(Blocklist, ListChange{Put: []Rule{{Prefix: p("192.0.2.1/24")}}}); err == nil {
		t.Error("Sync took an unmasked rule")
	}
}

// TestCeilingsAreTheMapSizes binds package lists' ceilings to the sizes
// bpf/shield.c gives the list maps.
func TestCeilingsAreTheMapSizes(t *testing.T) {
	spec, err := loadShield()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int{
		"block_v4": lists.CeilingV4, "block_v4_lpm": lists.CeilingV4,
		"block_v6": lists.CeilingV6, "block_v6_lpm": lists.CeilingV6,
		"allow_v4": lists.AllowCeiling, "allow_v4_lpm": lists.AllowCeiling,
		"allow_v6": lists.AllowCeiling, "allow_v6_lpm": lists.AllowCeiling,
	} {
		if got := spec.Maps[name].MaxEntries; int(got) != want {
			t.Errorf("map %s holds %d entries, lists says %d", name, got, want)
		}
	}
}
