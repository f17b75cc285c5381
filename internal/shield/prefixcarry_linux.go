package shield

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
)

// prefixMapNames name the prefix maps. They are hash maps keyed by length
// and masked address since the data path looks prefixes up by length;
// shields before that pinned LPM tries, with the same keys and values,
// under the same names.
var prefixMapNames = []string{"allow_v4_lpm", "allow_v6_lpm", "block_v4_lpm", "block_v6_lpm"}

// entryPrefixlenOffset is where struct entry holds prefixlen.
const entryPrefixlenOffset = 20

// oldPrefix is an entry of a pinned trie, key and value as the map holds
// them.
type oldPrefix struct{ key, val []byte }

// takeOldPrefixes reads the prefix tries an earlier shield pinned, so the
// load creates the hash maps instead of refusing the tries as
// incompatible. Each trie keeps its pin until the load has succeeded
// (pinOver, Load's last step) and lives on as long as the old program that
// reads it.
func takeOldPrefixes(spec *ebpf.CollectionSpec, mapsDir string) (map[string][]oldPrefix, error) {
	out := map[string][]oldPrefix{}
	for _, name := range prefixMapNames {
		m, err := ebpf.LoadPinnedMap(filepath.Join(mapsDir, name), nil)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("opening pinned %s: %w", name, err)
		}
		want := spec.Maps[name]
		if m.Type() != ebpf.LPMTrie || m.KeySize() != want.KeySize || m.ValueSize() != want.ValueSize {
			m.Close()
			continue // the current layout, or one the load refuses
		}
		var entries []oldPrefix
		k, v := make([]byte, m.KeySize()), make([]byte, m.ValueSize())
		it := m.Iterate()
		for it.Next(k, v) {
			entries = append(entries, oldPrefix{key: append([]byte(nil), k...), val: append([]byte(nil), v...)})
		}
		err = it.Err()
		m.Close()
		if err != nil {
			return nil, fmt.Errorf("reading pinned %s: %w", name, err)
		}
		out[name] = entries
		spec.Maps[name].Pinning = ebpf.PinNone
	}
	return out, nil
}

// restorePrefixes writes the entries of the old tries into the new maps,
// hit counts and all. A key is masked to its length (the trie did not need
// it masked; the lookup by length does), and its length written into the
// value, where the layout before that field left 0; a key with an
// impossible length is left out.
func (s *Shield) restorePrefixes(old map[string][]oldPrefix) error {
	for name, entries := range old {
		m := s.prefixMap(name)
		for _, e := range entries {
			p, ok := prefixOfKey(e.key)
			if !ok {
				continue
			}
			key := append([]byte(nil), e.key[:4]...)
			key = append(key, p.Addr().AsSlice()...)
			binary.NativeEndian.PutUint32(e.val[entryPrefixlenOffset:], uint32(p.Bits()))
			if err := m.Update(key, e.val, ebpf.UpdateAny); err != nil {
				return fmt.Errorf("carrying %s over into %s: %w", p, name, err)
			}
		}
	}
	return nil
}

// prefixOfKey decodes a prefix map's key: the length in host order, then
// the address as the packet holds it.
func prefixOfKey(key []byte) (netip.Prefix, bool) {
	bits := int(binary.NativeEndian.Uint32(key[:4]))
	a, ok := netip.AddrFromSlice(key[4:])
	if !ok || bits > a.BitLen() {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, bits).Masked(), true
}

func (s *Shield) prefixMap(name string) *ebpf.Map {
	switch name {
	case "allow_v4_lpm":
		return s.objs.AllowV4Lpm
	case "allow_v6_lpm":
		return s.objs.AllowV6Lpm
	case "block_v4_lpm":
		return s.objs.BlockV4Lpm
	}
	return s.objs.BlockV6Lpm
}
