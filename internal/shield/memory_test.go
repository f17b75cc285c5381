//go:build linux

package shield

import (
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
)

// BenchmarkMapMemory reports what each of the shield's maps takes in the
// kernel (the kernel's own accounting, memlock in fdinfo) when loaded
// empty and after the block lists take 100,000 addresses and 10,000
// prefixes per family: the memory per capacity of docs/BENCHMARKS.md.
func BenchmarkMapMemory(b *testing.B) {
	s := newTestShield(b, noLimits())
	byName := shieldMapsByName(&s.objs.shieldMaps)
	empty := memlocks(b, byName)
	for b.Loop() {
		b.StopTimer()
		emptyLists(b, s)
		b.StartTimer()
		var rules []Rule
		for i := range 100_000 {
			rules = append(rules,
				Rule{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)},
				Rule{Prefix: netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)}), 128)})
		}
		for i := range 10_000 {
			rules = append(rules,
				Rule{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{100, byte(i >> 8), byte(i), 0}), 24)},
				Rule{Prefix: netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb9, byte(i >> 8), byte(i)}), 48)})
		}
		if err := s.PutRules(Blocklist, rules); err != nil {
			b.Fatal(err)
		}
	}
	full := memlocks(b, byName)
	var total, totalFull uint64
	var table strings.Builder
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		m := byName[name]
		total += empty[name]
		totalFull += full[name]
		fmt.Fprintf(&table, "\n%-16s %-14s max %8d  value %5d B  empty %11d B  filled %11d B", name, m.Type(), m.MaxEntries(), m.ValueSize(), empty[name], full[name])
	}
	b.Log(table.String())
	b.ReportMetric(float64(total)/(1<<20), "MiB-empty")
	b.ReportMetric(float64(totalFull)/(1<<20), "MiB-filled")
}

// shieldMapsByName lists the maps of a loaded object by their names in
// the ELF, whatever maps the object declares.
func shieldMapsByName(ms *shieldMaps) map[string]*ebpf.Map {
	out := map[string]*ebpf.Map{}
	v := reflect.ValueOf(ms).Elem()
	for i := range v.NumField() {
		if m, ok := v.Field(i).Interface().(*ebpf.Map); ok && m != nil {
			out[v.Type().Field(i).Tag.Get("ebpf")] = m
		}
	}
	return out
}

func memlocks(tb testing.TB, maps map[string]*ebpf.Map) map[string]uint64 {
	tb.Helper()
	out := map[string]uint64{}
	for name, m := range maps {
		info, err := m.Info()
		if err != nil {
			tb.Fatalf("%s: %v", name, err)
		}
		out[name], _ = info.Memlock() // an empty trie without preallocation reports none

	}
	return out
}
