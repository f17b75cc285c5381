package privilege

import (
	"fmt"
	"log/slog"
	"math"
	"math/bits"
	"os"

	"github.com/cilium/ebpf"
)

// MemlockCeiling is the most RaiseMemlock ever sets RLIMIT_MEMLOCK to: the
// fixed 256 MiB of the task document, kept as the upper bound of the
// computed one.
const MemlockCeiling uint64 = 256 << 20

// minHeadroom is the least RaiseMemlock adds on top of the need. Before 5.11
// the kernel charges every BPF object of a user (systemd's own cgroup
// programs, other tools run as root) to one counter checked against the
// creating process's limit, so the need is never the whole story; 8 MiB is
// systemd's default memlock limit, the budget those others already assume.
const minHeadroom uint64 = 8 << 20

// Unlimited is RLIM_INFINITY as Rlimit reports it.
const Unlimited uint64 = math.MaxUint64

// MemlockOptions adjust RaiseMemlock.
type MemlockOptions struct {
	// Force takes the pre-5.11 path, raising the limit even where the
	// kernel charges BPF memory to the memory cgroup: for tests, since no
	// pre-5.11 kernel can be booted here.
	Force bool
	// Ceiling replaces MemlockCeiling when nonzero; it can only lower it.
	Ceiling uint64
}

func (o MemlockOptions) ceiling() uint64 {
	if o.Ceiling == 0 || o.Ceiling > MemlockCeiling {
		return MemlockCeiling
	}
	return o.Ceiling
}

// Rlimit is a soft and hard resource limit in bytes; Unlimited means none.
type Rlimit struct {
	Soft uint64 `json:"soft"`
	Hard uint64 `json:"hard"`
}

// Reasons RaiseMemlock leaves the limit alone.
const (
	SkipMemcg      = "the kernel charges BPF memory to the memory cgroup (5.11 and later), not to RLIMIT_MEMLOCK"
	SkipSufficient = "the current limit already covers the need"
)

// MemlockResult says what RaiseMemlock did, for the caller to log and audit.
type MemlockResult struct {
	// Need is the caller's estimate of what its objects are charged.
	Need uint64 `json:"need_bytes"`
	// Target is Need plus headroom, at most the ceiling; zero when skipped
	// for memcg accounting.
	Target uint64 `json:"target_bytes,omitempty"`
	// Capped is true when Need plus headroom exceeded the ceiling: loading
	// may then still fail for want of locked memory.
	Capped  bool   `json:"capped,omitempty"`
	Old     Rlimit `json:"old"`
	New     Rlimit `json:"new"`
	Changed bool   `json:"changed"`
	// Skipped is SkipMemcg or SkipSufficient when nothing changed.
	Skipped string `json:"skipped,omitempty"`
}

// LogValue renders the result as one slog group.
func (r MemlockResult) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.Bool("changed", r.Changed),
		slog.String("need", formatBytes(r.Need)),
		slog.String("old_soft", formatBytes(r.Old.Soft)),
		slog.String("old_hard", formatBytes(r.Old.Hard)),
		slog.String("new_soft", formatBytes(r.New.Soft)),
		slog.String("new_hard", formatBytes(r.New.Hard)),
	}
	if r.Target != 0 {
		attrs = append(attrs, slog.String("target", formatBytes(r.Target)))
	}
	if r.Capped {
		attrs = append(attrs, slog.Bool("capped", true))
	}
	if r.Skipped != "" {
		attrs = append(attrs, slog.String("skipped", r.Skipped))
	}
	return slog.GroupValue(attrs...)
}

// String summarises the result in one line.
func (r MemlockResult) String() string {
	if r.Skipped != "" {
		return fmt.Sprintf("RLIMIT_MEMLOCK unchanged at %s/%s: %s", formatBytes(r.Old.Soft), formatBytes(r.Old.Hard), r.Skipped)
	}
	s := fmt.Sprintf("RLIMIT_MEMLOCK raised from %s/%s to %s/%s for an estimated need of %s",
		formatBytes(r.Old.Soft), formatBytes(r.Old.Hard), formatBytes(r.New.Soft), formatBytes(r.New.Hard), formatBytes(r.Need))
	if r.Capped {
		s += fmt.Sprintf(" (capped at the %s ceiling)", formatBytes(r.Target))
	}
	return s
}

func formatBytes(n uint64) string {
	switch {
	case n == Unlimited:
		return "unlimited"
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

// memlockTarget is the limit to ask for: the need plus headroom (a quarter,
// at least minHeadroom), rounded up to whole pages, at most ceiling.
func memlockTarget(need, ceiling, page uint64) (target uint64, capped bool) {
	headroom := max(need/4, minHeadroom)
	target = need + headroom
	if target < need { // overflow
		return ceiling, true
	}
	target = roundUp(target, page)
	if target > ceiling {
		return ceiling, true
	}
	return target, false
}

// planMemlock decides the new limit: the soft limit goes up to target, the
// hard limit only as far as the soft one requires. A limit is never lowered.
func planMemlock(old Rlimit, target uint64) (Rlimit, bool) {
	if old.Soft >= target { // includes Unlimited
		return old, false
	}
	nl := Rlimit{Soft: target, Hard: old.Hard}
	if nl.Hard < target {
		nl.Hard = target
	}
	return nl, true
}

// Sizes of kernel structures that the pre-5.11 accounting charges, for
// x86-64 and arm64 builds without lock debugging (5.4 to 5.10). They are
// rounded up where configurations differ, so the estimate errs high.
const (
	kernelMapHeader = 512 // struct bpf_array, bpf_htab or lpm_trie with the embedded bpf_map
	kernelHtabElem  = 48  // struct htab_elem before the key
	kernelBucket    = 16  // struct bucket: list head and spin lock
	kernelLPMNode   = 40  // struct lpm_trie_node before value and data
	kernelRingbuf   = 4   // pages of ring buffer header, consumer and producer positions
	kernelProgPage  = 1   // pages of struct bpf_prog ahead of the instructions
)

// MemlockNeed estimates what kernels before 5.11 charge to RLIMIT_MEMLOCK
// for creating every map and loading every program in spec: the formulas the
// map types' allocators used then (a hash map is charged for all its
// max_entries even with BPF_F_NO_PREALLOC; per-CPU values once per possible
// CPU), each object rounded up to whole pages. Maps already pinned and
// adopted are counted too, so the estimate errs high.
func MemlockNeed(spec *ebpf.CollectionSpec) (uint64, error) {
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return 0, fmt.Errorf("counting possible CPUs: %w", err)
	}
	return memlockNeed(spec, uint64(cpus), uint64(os.Getpagesize())), nil
}

func memlockNeed(spec *ebpf.CollectionSpec, cpus, page uint64) uint64 {
	var total uint64
	for _, m := range spec.Maps {
		total = saturatingAdd(total, roundUp(mapCharge(m, cpus, page), page))
	}
	for _, p := range spec.Programs {
		// The verifier's rewrites may grow a program; count it twice.
		insns := 2 * p.Instructions.Size()
		total = saturatingAdd(total, roundUp(insns, page)+kernelProgPage*page)
	}
	return total
}

// mapCharge is one map's charge before page rounding.
func mapCharge(m *ebpf.MapSpec, cpus, page uint64) uint64 {
	entries := uint64(m.MaxEntries)
	key, value := roundUp(uint64(m.KeySize), 8), roundUp(uint64(m.ValueSize), 8)
	switch m.Type {
	case ebpf.PerfEventArray:
		if entries == 0 { // the loader sizes it to the possible CPUs
			entries = cpus
		}
		return kernelMapHeader + entries*8
	case ebpf.Array, ebpf.ProgramArray, ebpf.ArrayOfMaps, ebpf.CGroupArray:
		// BPF_F_MMAPABLE arrays are page-aligned: one page more at most.
		return kernelMapHeader + entries*value + page
	case ebpf.PerCPUArray:
		return kernelMapHeader + entries*8 + entries*value*cpus
	case ebpf.Hash, ebpf.LRUHash, ebpf.HashOfMaps:
		elem := kernelHtabElem + key + value
		return kernelMapHeader + roundUpPow2(entries)*kernelBucket + elem*entries + elem*cpus
	case ebpf.PerCPUHash, ebpf.LRUCPUHash:
		elem := kernelHtabElem + key + 8
		return kernelMapHeader + roundUpPow2(entries)*kernelBucket + elem*entries + value*cpus*entries
	case ebpf.LPMTrie:
		data := uint64(m.KeySize) - min(uint64(m.KeySize), 4) // the key minus its prefix length
		return kernelMapHeader + entries*(kernelLPMNode+uint64(m.ValueSize)+data)
	case ebpf.RingBuf:
		return entries + kernelRingbuf*page
	}
	// Types aegis does not use: as much as a hash map of the same shape.
	return kernelMapHeader + roundUpPow2(entries)*kernelBucket + (kernelHtabElem+key+value)*(entries+cpus)
}

func roundUp(n, to uint64) uint64 {
	if to == 0 {
		return n
	}
	return (n + to - 1) / to * to
}

func roundUpPow2(n uint64) uint64 {
	if n <= 1 {
		return 1
	}
	return 1 << bits.Len64(n-1)
}

func saturatingAdd(a, b uint64) uint64 {
	if s := a + b; s >= a {
		return s
	}
	return math.MaxUint64
}
