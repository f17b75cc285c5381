package shield

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/cilium/ebpf"
)

// flagChargeLongChains is FLAG_CHARGE_LONG_CHAINS of enum config_flag.
const flagChargeLongChains = 1 << 0

// SetManagement replaces the management prefixes: sources inside them (or
// whose source prefix, as rate limiting groups sources, covers part of one)
// are rate limited like any other but never blocked automatically, so a
// flood spoofing the operator's address cannot lock the operator out.
// Automatic blocks already in place on such sources are lifted. Prefixes
// must be valid; at most ManagementEntries of each family.
func (s *Shield) SetManagement(prefixes []netip.Prefix) error {
	var n4, n6 int
	norm := make([]netip.Prefix, 0, len(prefixes))
	for _, p := range prefixes {
		if !p.IsValid() {
			return fmt.Errorf("management prefix %v: not a valid prefix", p)
		}
		if a := p.Addr(); a.Is4In6() {
			p = netip.PrefixFrom(a.Unmap(), max(0, p.Bits()-96))
		}
		p = p.Masked()
		if p.Addr().Is4() {
			n4++
		} else {
			n6++
		}
		norm = append(norm, p)
	}
	if n4 > ManagementEntries || n6 > ManagementEntries {
		return fmt.Errorf("management prefixes: %d IPv4 and %d IPv6, at most %d of each", n4, n6, ManagementEntries)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mgmt, s.mgmtSet = norm, true
	return s.syncManagementLocked()
}

// Management returns the management prefixes last set.
func (s *Shield) Management() []netip.Prefix {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.mgmt)
}

// syncManagementLocked makes the management maps hold s.mgmt, each prefix
// shortened to the sources' prefix length of its family: the data path looks
// up a sources key, so a management /128 inside a rate-limited /64 must be
// found from the /64. Entries are added before stale ones go, so no
// management source is ever unprotected while the maps change. Nothing is
// done until SetManagement was called: the maps (perhaps adopted) keep their
// contents until the node says what they hold.
func (s *Shield) syncManagementLocked() error {
	if !s.mgmtSet {
		return nil
	}
	v4Len := maskLen(s.cfg.V4Mask)
	v6Len := maskLen(s.cfg.V6Mask[0]) + maskLen(s.cfg.V6Mask[1]) + maskLen(s.cfg.V6Mask[2]) + maskLen(s.cfg.V6Mask[3])
	want := map[shieldLpmV6Key]bool{}
	for _, p := range s.mgmt {
		// Keys as the sources map's: IPv4 as ::ffff:a.b.c.d.
		a, bits := p.Addr(), min(p.Bits(), v6Len)
		if a.Is4() {
			a, bits = netip.AddrFrom16(a.As16()), 96+min(p.Bits(), v4Len)
		}
		q, _ := a.Prefix(bits)
		want[shieldLpmV6Key{Prefixlen: uint32(q.Bits()), Addr: addr6Words(q.Addr())}] = true
	}
	if err := syncKeys(s.objs.Management, want); err != nil {
		return fmt.Errorf("writing management prefixes: %w", err)
	}
	// Lift automatic blocks that now cover a management address.
	var lift []shieldAddr6
	err := s.forEachSource(func(key *shieldAddr6, st *shieldSourceState) {
		if st.BlockedUntil == 0 {
			return
		}
		a := wordsAddr6(key.Addr)
		src := netip.PrefixFrom(a, v6Len)
		if a.Is4In6() {
			src = netip.PrefixFrom(a.Unmap(), v4Len)
		}
		for _, m := range s.mgmt {
			if m.Overlaps(src) {
				lift = append(lift, *key)
				return
			}
		}
	})
	if err != nil {
		return err
	}
	for _, k := range lift {
		if err := s.sources.remove(k); err != nil {
			return fmt.Errorf("lifting automatic block on a management source: %w", err)
		}
	}
	return nil
}

// syncKeys makes the set map m hold exactly the keys of want.
func syncKeys[K comparable](m *ebpf.Map, want map[K]bool) error {
	one := uint32(1)
	for k := range want {
		if err := m.Update(&k, &one, ebpf.UpdateAny); err != nil {
			return err
		}
	}
	var stale []K
	var (
		k K
		v uint32
	)
	it := m.Iterate()
	for it.Next(&k, &v) {
		if !want[k] {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return err
	}
	for _, k := range stale {
		if err := m.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
	}
	return nil
}
