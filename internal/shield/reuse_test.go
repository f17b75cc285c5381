//go:build linux

package shield

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"
	"unsafe"

	tu "github.com/aegis-edge/aegis/internal/testutil"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
)

// Loading the shield is the kernel verifier's walk of the program (630,000
// instructions when this was written, 269,000 now): about half a second
// here and 3–6 s in a QEMU guest of the kernel matrix, where most of the
// package's time went to the eighty loads its tests made. newTestShield
// therefore reuses a shield an earlier test let go of, once reset to what
// Load leaves: every map emptied, the ring buffer drained, and Load's
// start-up steps (settings, prefilters, clock, marks) run again on the same
// program. TestReusedShieldIsFresh holds the reset to that. Tests of loading itself, of pinned maps and of other load
// options call Load, as before.
var reusable struct {
	sync.Mutex
	free []*Shield
}

// reuseOK reports whether a shield loaded with opts for t may come from, and
// go back to, the pool: tests (not benchmarks, which measure a fresh load)
// with the default options. releaseShield also keeps out a shield on perf
// events (a kernel without a ring buffer): a perf event array's entries are
// its readers', which a reset does not undo.
func reuseOK(t testing.TB, opts Options) bool {
	_, bench := t.(*testing.B)
	return !bench && reflect.ValueOf(opts).IsZero()
}

// reusedShield takes a reset shield from the pool, or returns nil.
func reusedShield() *Shield {
	reusable.Lock()
	defer reusable.Unlock()
	n := len(reusable.free)
	if n == 0 {
		return nil
	}
	s := reusable.free[n-1]
	reusable.free = reusable.free[:n-1]
	return s
}

// releaseShield resets s and puts it in the pool, or closes it when it
// cannot be reused: attached somewhere, closed by the test, on perf events.
func releaseShield(t testing.TB, s *Shield) {
	if s.objs.AegisXdp.FD() < 0 {
		return // closed by the test
	}
	if len(s.links) > 0 || len(s.legacy) > 0 || s.perf {
		s.Close()
		return
	}
	if err := s.resetForReuse(); err != nil {
		t.Errorf("resetting the shield for the next test: %v", err)
		s.Close()
		return
	}
	reusable.Lock()
	defer reusable.Unlock()
	reusable.free = append(reusable.free, s)
}

// resetForReuse brings an unpinned, unattached shield back to the state
// Load(Options{}) leaves, keeping its program and maps.
func (s *Shield) resetForReuse() error {
	if err := s.sources.close(); err != nil {
		return err
	}
	// The exact and prefix tables are zeroed through their mappings: a
	// batch write of their 40 MiB for every test costs seconds under
	// emulation.
	tables := s.table4.used()
	for _, t := range []*exactTable{s.table4, s.table6, s.prefix4, s.prefix6} {
		t.clear()
		if err := t.close(); err != nil {
			return err
		}
	}
	if err := emptyMaps(&s.objs.shieldMaps, tables); err != nil {
		return err
	}
	fallback := ""
	if !s.jiffiesProg {
		fallback = s.clockFallback // decided before the program was loaded
	}
	*s = Shield{
		objs: s.objs, links: map[string]link.Link{}, legacy: map[string]int{},
		perf: s.perf, mono: s.mono, jiffiesProg: s.jiffiesProg, clockFallback: fallback, audit: s.audit,
		exactMasks: s.exactMasks, prefixMasks: s.prefixMasks,
	}
	var err error
	if s.sources, err = openSourceTable(s.objs.Sources); err != nil {
		return err
	}
	if err := s.openExactTables(); err != nil {
		return err
	}
	return s.start()
}

// eachMap calls fn for every map of the object with its name in the ELF.
func eachMap(ms *shieldMaps, fn func(name string, m *ebpf.Map) error) error {
	v := reflect.ValueOf(ms).Elem()
	for i := range v.NumField() {
		if m, ok := v.Field(i).Interface().(*ebpf.Map); ok && m != nil {
			if err := fn(v.Type().Field(i).Tag.Get("ebpf"), m); err != nil {
				return fmt.Errorf("%s: %w", v.Type().Field(i).Tag.Get("ebpf"), err)
			}
		}
	}
	return nil
}

// bytesOf is a slice of n byte arrays of size bytes each, for reading and
// writing any map's keys or values.
func bytesOf(size, n int) reflect.Value {
	t := reflect.SliceOf(reflect.ArrayOf(size, reflect.TypeFor[byte]()))
	return reflect.MakeSlice(t, n, n)
}

// emptyMaps puts every map in the state of a new one: arrays zeroed, hash
// maps and tries emptied, the ring buffer drained. Nothing else writes a
// perf event array than its reader (which the pool does not take).
func emptyMaps(ms *shieldMaps, tablesCleared bool) error {
	return eachMap(ms, func(name string, m *ebpf.Map) error {
		if tablesCleared && slices.Contains(tableMaps, name) {
			return nil
		}
		switch m.Type() {
		case ebpf.PerfEventArray:
			return nil
		case ebpf.RingBuf:
			return drainRing(m)
		case ebpf.Array, ebpf.PerCPUArray:
			return zeroArray(m)
		default:
			return deleteAll(m)
		}
	})
}

func drainRing(m *ebpf.Map) error {
	r, err := ringbuf.NewReader(m)
	if err != nil {
		return err
	}
	defer r.Close()
	r.SetDeadline(time.Now())
	for {
		if _, err := r.Read(); errors.Is(err, os.ErrDeadlineExceeded) {
			return nil
		} else if err != nil {
			return err
		}
	}
}

func zeroArray(m *ebpf.Map) error {
	n := int(m.MaxEntries())
	keys := make([]uint32, n)
	for i := range keys {
		keys[i] = uint32(i)
	}
	values := bytesOf(int(m.ValueSize()), n)
	if m.Type() == ebpf.PerCPUArray {
		values = bytesOf(int(m.ValueSize()), n*mustPossibleCPUs())
	}
	_, err := m.BatchUpdate(keys, values.Interface(), nil)
	if !errors.Is(err, ebpf.ErrNotSupported) {
		return err
	}
	// Kernels before 5.6: one key at a time.
	one := bytesOf(int(m.ValueSize()), 1).Index(0).Addr().Interface()
	if m.Type() == ebpf.PerCPUArray {
		one = bytesOf(int(m.ValueSize()), mustPossibleCPUs()).Interface()
	}
	for _, k := range keys {
		if err := m.Update(k, one, ebpf.UpdateExist); err != nil {
			return err
		}
	}
	return nil
}

func deleteAll(m *ebpf.Map) error {
	var keys [][]byte
	k := make([]byte, m.KeySize())
	it := m.Iterate()
	for it.Next(&k, new([]byte)) {
		keys = append(keys, append([]byte(nil), k...))
	}
	if err := it.Err(); err != nil {
		return err
	}
	for _, k := range keys {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
	}
	return nil
}

func mustPossibleCPUs() int {
	n, err := ebpf.PossibleCPU()
	if err != nil {
		panic(err)
	}
	return n
}

// mapDump is every map's contents, entry by entry in hexadecimal; arrays
// list their non-zero entries only.
type mapDump map[string]map[string]string

func dumpMaps(t *testing.T, ms *shieldMaps) mapDump {
	t.Helper()
	out := mapDump{}
	err := eachMap(ms, func(name string, m *ebpf.Map) error {
		entries := map[string]string{}
		out[name] = entries
		switch m.Type() {
		case ebpf.PerfEventArray, ebpf.RingBuf:
			return nil // not readable entry by entry
		case ebpf.Array, ebpf.PerCPUArray:
			return eachArrayValue(m, func(k uint32, v reflect.Value) {
				if allZero(v) {
					return
				}
				if m.Type() == ebpf.Array {
					value := v.Index(0).Slice(0, v.Index(0).Len()).Bytes()
					entries[hex.EncodeToString(binary.NativeEndian.AppendUint32(nil, k))] = hex.EncodeToString(value)
				} else {
					entries[fmt.Sprint(k)] = fmt.Sprint(v.Interface())
				}
			})
		}
		k, v := make([]byte, m.KeySize()), make([]byte, m.ValueSize())
		it := m.Iterate()
		for it.Next(&k, &v) {
			entries[hex.EncodeToString(k)] = hex.EncodeToString(v)
		}
		return it.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// eachArrayValue calls fn with every index of an array map and its values,
// one byte array per CPU for a per-CPU array, else one. It reads in
// batches: the tables are millions of entries, and two syscalls an entry
// took minutes under emulation. Kernels before
// 5.6 are read one entry at a time.
func eachArrayValue(m *ebpf.Map, fn func(k uint32, v reflect.Value)) error {
	size, ncpu := int(m.ValueSize()), 1
	if m.Type() == ebpf.PerCPUArray {
		ncpu = mustPossibleCPUs()
	}
	// A batch of about a MiB: some arrays are one value of megabytes.
	batch := max(1, min(int(m.MaxEntries()), (1<<20)/(size*ncpu)))
	keys := make([]uint32, batch)
	values := bytesOf(size, batch*ncpu)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookup(&cursor, keys, values.Interface(), nil)
		if errors.Is(err, ebpf.ErrNotSupported) {
			break
		}
		for i := range n {
			fn(keys[i], values.Slice(i*ncpu, (i+1)*ncpu))
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
	}
	for k := range m.MaxEntries() {
		v := bytesOf(size, ncpu)
		lookupInto := v.Interface()
		if ncpu == 1 {
			lookupInto = v.Index(0).Addr().Interface()
		}
		if err := m.Lookup(k, lookupInto); err != nil {
			return err
		}
		fn(k, v)
	}
	return nil
}

// allZero reports whether a slice (of bytes or of byte arrays) holds only zeros.
func allZero(v reflect.Value) bool {
	if v.Type().Elem().Kind() == reflect.Uint8 {
		return !slices.ContainsFunc(v.Bytes(), func(b byte) bool { return b != 0 })
	}
	if v.Type().Elem().Kind() == reflect.Array {
		for i := range v.Len() {
			if !allZero(v.Index(i).Slice(0, v.Index(i).Len())) {
				return false
			}
		}
		return true
	}
	for i := range v.Len() {
		if !v.Index(i).IsZero() {
			return false
		}
	}
	return true
}

// goState is the shield's own fields but those that name kernel objects or
// measure time (the clock's line is compared apart), for comparison.
func goState(s *Shield) map[string]any {
	skip := map[string]bool{"mu": true, "objs": true, "sources": true, "audit": true, "line": true, "bootOffset": true,
		"table4": true, "table6": true, "prefix4": true, "prefix6": true}
	out := map[string]any{}
	v := reflect.ValueOf(s).Elem()
	for i := range v.NumField() {
		f := v.Type().Field(i)
		if skip[f.Name] {
			continue
		}
		out[f.Name] = reflect.NewAt(f.Type, unsafe.Pointer(v.Field(i).UnsafeAddr())).Elem().Interface()
	}
	// The tables' mappings differ; what they index must not.
	for name, t := range map[string]*exactTable{"table4": s.table4, "table6": s.table6, "prefix4": s.prefix4, "prefix6": s.prefix6} {
		out[name] = []any{t.used(), t.masks, t.index}
	}
	return out
}

// TestReusedShieldIsFresh: a shield whose every map a test has written
// (lists and their filters, management, settings, the clock, counters,
// automatic blocks with their marks, sources and events), reset for the
// next test, holds what a freshly loaded one does, map by map and field by
// field.
func TestReusedShieldIsFresh(t *testing.T) {
	tu.RequireRoot(t)
	fresh, err := Load(Options{})
	if err != nil {
		t.Fatal(err)
	}
	want, wantState, wantLine := dumpMaps(t, &fresh.objs.shieldMaps), goState(fresh), fresh.line
	fresh.Close()

	s := newTestShield(t, autoBlockSettings()) // a reused one, unless the test runs alone
	put(t, s, Allowlist, time.Time{}, "10.1.2.3", "2001:db8::1", "10.9.0.0/16", "2001:db8:1::/48", "2001:db8:2::/32")
	put(t, s, Blocklist, s.clock().wall.Add(time.Hour), "10.1.2.4", "2001:db8::2", "10.8.0.0/16", "2001:db8:3::/48", "2001:db9::/32")
	if err := s.SetManagement([]netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")}); err != nil {
		t.Fatal(err)
	}
	blockByFlood(t, s, netip.MustParseAddr("198.51.100.7"))
	// A hit on an exact entry (its slot), and an entry in each exact hash
	// map, where only the overflow of a full pair of buckets goes; a hit
	// on a prefix (its slot).
	if _, got, _ := run(t, s, udpFrom(netip.MustParseAddr("10.8.0.9"))); got != ReasonBlockedPrefix {
		t.Fatalf("a packet from a blocked prefix: %s", got)
	}
	if _, got, _ := run(t, s, udpFrom(netip.MustParseAddr("10.1.2.4"))); got != ReasonBlockedExact {
		t.Fatalf("a packet from a blocked address: %s", got)
	}
	for _, m := range []*ebpf.Map{s.objs.AllowV4, s.objs.BlockV4} {
		if err := m.Put(uint32(7), shieldEntry{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range []*ebpf.Map{s.objs.AllowV6, s.objs.BlockV6} {
		if err := m.Put(shieldAddr6{Addr: [4]uint32{7}}, shieldEntry{}); err != nil {
			t.Fatal(err)
		}
	}
	// And in each prefix hash map, likewise (the prefixes put above are in
	// the prefix tables).
	for _, m := range []*ebpf.Map{s.objs.AllowV4Lpm, s.objs.BlockV4Lpm} {
		if err := m.Put(shieldLpmV4Key{Prefixlen: 8, Addr: 7}, shieldEntry{Prefixlen: 8}); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range []*ebpf.Map{s.objs.AllowV6Lpm, s.objs.BlockV6Lpm} {
		if err := m.Put(shieldLpmV6Key{Prefixlen: 8, Addr: [4]uint32{7}}, shieldEntry{Prefixlen: 8}); err != nil {
			t.Fatal(err)
		}
	}
	s.oneByOne = true
	dirty := dumpMaps(t, &s.objs.shieldMaps)
	for name := range want {
		if name == "perf_events" || name == "events" {
			continue
		}
		if reflect.DeepEqual(dirty[name], want[name]) {
			t.Errorf("the test left %s as a fresh load has it: it cannot show that the reset empties it", name)
		}
	}
	events, err := ringbuf.NewReader(s.objs.Events)
	if err != nil {
		t.Fatal(err)
	}
	defer events.Close()
	if events.AvailableBytes() == 0 {
		t.Error("no event in the ring buffer before the reset")
	}

	if err := s.resetForReuse(); err != nil {
		t.Fatal(err)
	}
	got := dumpMaps(t, &s.objs.shieldMaps)
	// The clock line is calibrated again: the same tick, a later base.
	wantClock, gotClock := want["clock"], got["clock"]
	delete(want, "clock")
	delete(got, "clock")
	if !reflect.DeepEqual(got, want) {
		for name := range want {
			if !reflect.DeepEqual(got[name], want[name]) {
				t.Errorf("%s after the reset: %v, fresh: %v", name, got[name], want[name])
			}
		}
	}
	if len(gotClock) != len(wantClock) || s.line.TickNs != wantLine.TickNs {
		t.Errorf("clock after the reset: %v (line %+v), fresh: %v (line %+v)", gotClock, s.line, wantClock, wantLine)
	}
	if events.AvailableBytes() != 0 {
		t.Errorf("%d bytes of events left in the ring buffer", events.AvailableBytes())
	}
	if gotState := goState(s); !reflect.DeepEqual(gotState, wantState) {
		for name := range wantState {
			if !reflect.DeepEqual(gotState[name], wantState[name]) {
				t.Errorf("field %s after the reset: %+v, fresh: %+v", name, gotState[name], wantState[name])
			}
		}
	}
}
