package shield

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"

	"github.com/cilium/ebpf"
)

// PinnedLists reads the blocklist's exact IPv4 addresses of a shield
// pinned at a pin path, from another process (a test of the daemon's
// processes, a diagnostic): its exact table and its hash map, read only,
// through the map system calls.
type PinnedLists struct {
	table, hash *ebpf.Map
	t           exactTable // the table's geometry (default masks), unmapped
}

// OpenPinned opens the maps a shield pinned under pinPath.
func OpenPinned(pinPath string) (*PinnedLists, error) {
	dir := filepath.Join(pinPath, "maps")
	ro := &ebpf.LoadPinOptions{ReadOnly: true}
	table, err := ebpf.LoadPinnedMap(filepath.Join(dir, "exact_table_v4"), ro)
	if err != nil {
		return nil, fmt.Errorf("opening the pinned exact table: %w", err)
	}
	hash, err := ebpf.LoadPinnedMap(filepath.Join(dir, "block_v4"), ro)
	if err != nil {
		table.Close()
		return nil, fmt.Errorf("opening the pinned blocklist map: %w", err)
	}
	return &PinnedLists{table: table, hash: hash,
		t: exactTable{geom: geomExact4, masks: [2]uint32{1<<exact4AllowLog - 1, 1<<exact4BlockLog - 1}}}, nil
}

func (p *PinnedLists) Close() error { return errors.Join(p.table.Close(), p.hash.Close()) }

// Blocks reports whether the blocklist holds the IPv4 address a.
func (p *PinnedLists) Blocks(a netip.Addr) (bool, error) {
	b := a.As4()
	k := exactKey{binary.NativeEndian.Uint32(b[:])}
	for _, h := range p.t.hashes(k) {
		idx := p.t.bucket(1, h)
		var bk shieldExact4Bucket
		if err := p.table.Lookup(&idx, &bk); err != nil {
			return false, fmt.Errorf("reading exact table bucket %d: %w", idx, err)
		}
		for _, w := range bk.Ways {
			if w.State&1 != 0 && w.Addr == k[0] {
				return true, nil
			}
		}
	}
	var v shieldEntry
	err := p.hash.Lookup(&k[0], &v)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return false, nil
	}
	return err == nil, err
}

// BlockedCount counts the blocklist's exact IPv4 addresses.
func (p *PinnedLists) BlockedCount() (int, error) {
	n := 0
	var (
		idx uint32
		bk  shieldExact4Bucket
	)
	it := p.table.Iterate()
	for it.Next(&idx, &bk) {
		if p.t.listOf(idx) != 1 {
			continue
		}
		for _, w := range bk.Ways {
			if w.State&1 != 0 {
				n++
			}
		}
	}
	if err := it.Err(); err != nil {
		return 0, fmt.Errorf("reading the exact table: %w", err)
	}
	var k uint32
	var v shieldEntry
	for hi := p.hash.Iterate(); hi.Next(&k, &v); {
		n++
	}
	return n, nil
}
