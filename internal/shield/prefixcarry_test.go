//go:build linux

package shield

import (
	"encoding/binary"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/aegis-edge/aegis/internal/audit"
	tu "github.com/aegis-edge/aegis/internal/testutil"
)

// TestPrefixTriesCarryOver adopts pins left by a shield that kept prefixes
// in LPM tries: the load takes their entries, hit counts included, into the
// hash maps; a trie keeps its pin until the load has succeeded; the data
// path then finds the carried prefixes by length. The variants in the old
// entries: an unmasked key, a value without its prefix length (the layout
// before that field), a key with an impossible length (left out), IPv6, the
// allowlist.
func TestPrefixTriesCarryOver(t *testing.T) {
	tu.RequireRoot(t)
	pin := tu.PinPath(t)
	// The shield before: its lists hold the prefixes (which sets the
	// presence flags), then its maps are made the tries it pinned.
	s, err := Load(Options{PinPath: pin})
	if err != nil {
		t.Fatal(err)
	}
	put(t, s, Blocklist, time.Time{}, "198.18.0.0/15", "203.0.113.0/24", "2001:db8::/32")
	put(t, s, Allowlist, time.Time{}, "198.19.7.0/24")
	s.Close()
	// That shield had no prefix tables: its prefixes were in the tries
	// alone.
	for _, name := range []string{"prefix_table_v4", "prefix_table_v6", "prefix_slots"} {
		if err := os.Remove(filepath.Join(pin, "maps", name)); err != nil {
			t.Fatal(err)
		}
	}
	type old struct {
		prefix  string
		plen    int // the key's length, when not the prefix's
		hits    uint64
		oldForm bool // no prefix length in the value
	}
	olds := map[string][]old{
		"block_v4_lpm": {{prefix: "198.18.0.0/15", hits: 7}, {prefix: "203.0.113.77/24", hits: 2, oldForm: true}, {prefix: "192.0.2.0/24", plen: 40}},
		"block_v6_lpm": {{prefix: "2001:db8::/32", hits: 5}},
		"allow_v4_lpm": {{prefix: "198.19.7.0/24", hits: 1}},
	}
	for name, entries := range olds {
		path := filepath.Join(pin, "maps", name)
		v6 := name == "block_v6_lpm"
		keySize := uint32(8)
		if v6 {
			keySize = 20
		}
		m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.LPMTrie, KeySize: keySize, ValueSize: 24, MaxEntries: 16, Flags: unix.BPF_F_NO_PREALLOC})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		for _, e := range entries {
			p := netip.MustParsePrefix(e.prefix) // unmasked where written so
			plen := p.Bits()
			if e.plen != 0 {
				plen = e.plen
			}
			key := binary.NativeEndian.AppendUint32(nil, uint32(plen))
			key = append(key, p.Addr().AsSlice()...)
			val := make([]byte, 24)
			binary.NativeEndian.PutUint64(val[8:], e.hits)
			binary.NativeEndian.PutUint32(val[16:], 42)
			if !e.oldForm {
				binary.NativeEndian.PutUint32(val[20:], uint32(plen))
			}
			if e.plen > 32 {
				// The kernel refuses a length past the key: such a
				// key can only be found in a corrupt map, so it is
				// written with a valid length and its check tested
				// by prefixOfKey alone.
				if _, ok := prefixOfKey(key); ok {
					t.Errorf("a key of length %d was decoded", plen)
				}
				continue
			}
			if err := m.Update(key, val, ebpf.UpdateAny); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		if err := m.Pin(path); err != nil {
			t.Fatal(err)
		}
	}

	rec := recorder{fail: func(ev audit.Event) bool { return ev.Op == audit.OpLoad && ev.Err == nil }}
	if s, err := Load(Options{PinPath: pin, Audit: rec.record}); err == nil {
		s.Close()
		t.Fatal("Load succeeded although its audit record could not be written")
	}
	for name := range olds {
		m, err := ebpf.LoadPinnedMap(filepath.Join(pin, "maps", name), nil)
		if err != nil {
			t.Fatalf("the old %s pin is gone after a failed load: %v", name, err)
		}
		if m.Type() != ebpf.LPMTrie {
			t.Errorf("%s is pinned as a %s after a failed load, want the old trie", name, m.Type())
		}
		m.Close()
	}

	s, err = Load(Options{PinPath: pin})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for name := range olds {
		m, err := ebpf.LoadPinnedMap(filepath.Join(pin, "maps", name), nil)
		if err != nil {
			t.Fatal(err)
		}
		if m.Type() != ebpf.Hash {
			t.Errorf("%s is pinned as a %s after the load, want the hash map", name, m.Type())
		}
		m.Close()
	}
	want := map[List]map[netip.Prefix]uint64{
		Blocklist: {mustPrefix("198.18.0.0/15"): 7, mustPrefix("203.0.113.0/24"): 2, mustPrefix("2001:db8::/32"): 5},
		Allowlist: {mustPrefix("198.19.7.0/24"): 1},
	}
	var e shieldEntry
	k := shieldLpmV4Key{Prefixlen: 24, Addr: binary.NativeEndian.Uint32([]byte{203, 0, 113, 0})}
	if err := s.objs.BlockV4Lpm.Lookup(&k, &e); err != nil || e.Prefixlen != 24 {
		t.Errorf("the entry carried without its length: %+v, %v; want its length 24 recorded", e, err)
	}
	for l, w := range want {
		got := hitsOf(t, s, l)
		if len(got) != len(w) {
			t.Errorf("%s holds %v, want %v", l, got, w)
		}
		for p, hits := range w {
			if g, ok := got[p]; !ok || g.Hits != hits || g.RuleID != 42 {
				t.Errorf("%s %s: %+v (listed %v), want rule 42 with %d hits", l, p, g, ok, hits)
			}
		}
	}
	for _, tc := range []struct {
		src  string
		want Reason
	}{
		{"198.18.200.1", ReasonBlockedPrefix},
		{"203.0.113.9", ReasonBlockedPrefix},
		{"2001:db8:1::1", ReasonBlockedPrefix},
		{"198.19.7.7", ReasonAllowlisted},
		{"192.0.2.1", ReasonPassed},
	} {
		if _, got, _ := run(t, s, udpFrom(netip.MustParseAddr(tc.src))); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.src, got, tc.want)
		}
	}
	checkFilterCounts(t, s)
}
