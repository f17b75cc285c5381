package bpfguard

import (
	"math"
	"math/bits"
	"runtime"

	"github.com/cilium/ebpf"
)

// Per-element overheads of the kernel's map implementations on 64-bit
// hosts: struct htab_elem (hash, LRU) and struct lpm_trie_node.
const (
	hashElemOverhead = 48
	lpmNodeOverhead  = 40
	lpmKeyPrefixLen  = 4 // the prefixlen word at the start of an LPM key
	pointerSize      = 8
)

// EstimateMapBytes estimates the kernel memory a map can use when full, in
// bytes. Maps created with BPF_F_NO_PREALLOC start small but may grow to this.
// The formulas follow the kernel's own accounting, rounded up:
//
//   - hash, lru_hash: entries × (48 + round8(key) + round8(value))
//   - percpu_hash, lru_percpu_hash: entries × (48 + round8(key) + 8 + cpus × round8(value))
//   - array: entries × round8(value); percpu_array: × cpus
//   - lpm_trie: entries × (40 + key − 4 + value), plus entries − 1
//     intermediate nodes of 40 + key − 4 bytes
//   - ringbuf: max_entries (the buffer size in bytes)
//   - perf_event_array: entries × 8, entries defaulting to cpus (the
//     buffers themselves are allocated by the reader)
//   - queue, stack: (entries + 1) × value
//   - anything else: entries × (round8(key) + round8(value)), a floor
//
// cpus is the number of possible CPUs.
func EstimateMapBytes(m *ebpf.MapSpec, cpus int) uint64 {
	n := uint64(effectiveEntries(m, cpus))
	c := uint64(max(cpus, 1))
	k, v := uint64(m.KeySize), uint64(m.ValueSize)
	switch m.Type {
	case ebpf.Hash, ebpf.LRUHash:
		return mul(n, add(hashElemOverhead, round8(k), round8(v)))
	case ebpf.PerCPUHash, ebpf.LRUCPUHash:
		return mul(n, add(hashElemOverhead, round8(k), pointerSize, mul(c, round8(v))))
	case ebpf.Array:
		return mul(n, round8(v))
	case ebpf.PerCPUArray:
		return mul(n, mul(round8(v), c))
	case ebpf.LPMTrie:
		data := k - min(k, lpmKeyPrefixLen)
		total := mul(n, add(lpmNodeOverhead, data, v))
		if n > 1 {
			total = add(total, mul(n-1, lpmNodeOverhead+data))
		}
		return total
	case ebpf.RingBuf:
		return n
	case ebpf.PerfEventArray:
		return mul(n, pointerSize)
	case ebpf.Queue, ebpf.Stack:
		return mul(n+1, v)
	}
	return mul(n, add(round8(k), round8(v)))
}

// effectiveEntries is max_entries as the kernel will see it: a perf event
// array declared without a size gets one slot per possible CPU.
func effectiveEntries(m *ebpf.MapSpec, cpus int) uint32 {
	if m.Type == ebpf.PerfEventArray && m.MaxEntries == 0 {
		return uint32(max(cpus, 1))
	}
	return m.MaxEntries
}

func round8(n uint64) uint64 { return (n + 7) &^ 7 }

// mul and add saturate at the largest uint64, so a hostile map definition
// cannot wrap its estimate around to something small.
func mul(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	if hi != 0 {
		return math.MaxUint64
	}
	return lo
}

func add(terms ...uint64) uint64 {
	var sum uint64
	for _, t := range terms {
		s, carry := bits.Add64(sum, t, 0)
		if carry != 0 {
			return math.MaxUint64
		}
		sum = s
	}
	return sum
}

// possibleCPUs is the number of CPUs per-CPU maps are sized for.
func possibleCPUs() int {
	if n, err := ebpf.PossibleCPU(); err == nil && n > 0 {
		return n
	}
	return runtime.NumCPU()
}
