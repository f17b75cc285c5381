//go:build linux

package privilege

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"testing"

	"github.com/aegis-edge/aegis/internal/testutil"
	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

const page = 4096

func TestMemlockTargetAddsHeadroomAndStopsAtTheCeiling(t *testing.T) {
	for _, need := range []uint64{0, 1, page, 3 << 20, 40 << 20, 200 << 20, MemlockCeiling, 1 << 40, Unlimited} {
		target, capped := memlockTarget(need, MemlockCeiling, page)
		if target > MemlockCeiling {
			t.Errorf("need %d: target %d above the ceiling", need, target)
		}
		if target%page != 0 {
			t.Errorf("need %d: target %d not page-aligned", need, target)
		}
		want := need + max(need/4, minHeadroom)
		if want < need || want > MemlockCeiling {
			if !capped || target != MemlockCeiling {
				t.Errorf("need %d: target %d capped=%v, want the ceiling", need, target, capped)
			}
			continue
		}
		if capped || target < want || target-want >= page {
			t.Errorf("need %d: target %d capped=%v, want %d rounded up to a page", need, target, capped, want)
		}
	}
	if target, capped := memlockTarget(1<<20, 4<<20, page); target != 4<<20 || !capped {
		t.Errorf("a lower ceiling is not honoured: %d capped=%v", target, capped)
	}
}

func TestPlanMemlockNeverLowersAndRaisesHardOnlyWhenNeeded(t *testing.T) {
	tests := []struct {
		name   string
		old    Rlimit
		target uint64
		want   Rlimit
		change bool
	}{
		{"soft below, hard room", Rlimit{8 << 20, 64 << 20}, 16 << 20, Rlimit{16 << 20, 64 << 20}, true},
		{"soft and hard below", Rlimit{8 << 20, 8 << 20}, 16 << 20, Rlimit{16 << 20, 16 << 20}, true},
		{"hard unlimited", Rlimit{64 << 10, Unlimited}, 16 << 20, Rlimit{16 << 20, Unlimited}, true},
		{"already enough", Rlimit{32 << 20, 32 << 20}, 16 << 20, Rlimit{32 << 20, 32 << 20}, false},
		{"exactly enough", Rlimit{16 << 20, 32 << 20}, 16 << 20, Rlimit{16 << 20, 32 << 20}, false},
		{"unlimited stays", Rlimit{Unlimited, Unlimited}, 16 << 20, Rlimit{Unlimited, Unlimited}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, change := planMemlock(tc.old, tc.target)
			if got != tc.want || change != tc.change {
				t.Fatalf("plan %+v change=%v, want %+v change=%v", got, change, tc.want, tc.change)
			}
		})
	}
}

// shieldSpec is the shield's committed object: the maps whose charge the
// daemon asks RaiseMemlock to cover.
func shieldSpec(t *testing.T) *ebpf.CollectionSpec {
	t.Helper()
	spec, err := ebpf.LoadCollectionSpec("../shield/shield_bpfel.o")
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

func TestMemlockNeedCoversEveryMapsPayload(t *testing.T) {
	spec := shieldSpec(t)
	const cpus = 4
	var payload uint64
	for name, m := range spec.Maps {
		charge := mapCharge(m, cpus, page)
		raw := uint64(m.KeySize+m.ValueSize) * uint64(m.MaxEntries)
		if m.Type == ebpf.PerCPUArray || m.Type == ebpf.PerCPUHash || m.Type == ebpf.LRUCPUHash {
			raw = uint64(m.KeySize)*uint64(m.MaxEntries) + uint64(m.ValueSize)*uint64(m.MaxEntries)*cpus
		}
		if m.Type == ebpf.RingBuf {
			raw = uint64(m.MaxEntries)
		}
		if m.Type == ebpf.Array {
			raw = uint64(m.ValueSize) * uint64(m.MaxEntries) // an array stores no keys
		}
		if charge < raw {
			t.Errorf("map %s (%s, %d entries): charge %d below its payload %d", name, m.Type, m.MaxEntries, charge, raw)
		}
		payload += raw
	}
	total := memlockNeed(spec, cpus, page)
	if total < payload {
		t.Errorf("total %d below the maps' payload %d", total, payload)
	}
	if total%page != 0 {
		t.Errorf("total %d is not whole pages", total)
	}
	t.Logf("shield on a pre-5.11 kernel with %d CPUs: estimated charge %s (payload %s), ceiling %s",
		cpus, formatBytes(total), formatBytes(payload), formatBytes(MemlockCeiling))
}

func TestMemlockNeedScales(t *testing.T) {
	hash := func(entries uint32) *ebpf.MapSpec {
		return &ebpf.MapSpec{Type: ebpf.Hash, KeySize: 4, ValueSize: 24, MaxEntries: entries, Flags: unix.BPF_F_NO_PREALLOC}
	}
	if a, b := mapCharge(hash(1000), 2, page), mapCharge(hash(2000), 2, page); b <= a {
		t.Errorf("doubling a hash map's entries: charge %d then %d", a, b)
	}
	percpu := &ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 16, MaxEntries: 20}
	one, many := mapCharge(percpu, 1, page), mapCharge(percpu, 64, page)
	if many-one < 63*20*16 {
		t.Errorf("per-CPU array with 1 and 64 CPUs: %d and %d, want at least 63 copies of its values more", one, many)
	}
	perf := &ebpf.MapSpec{Type: ebpf.PerfEventArray, KeySize: 4, ValueSize: 4}
	if a, b := mapCharge(perf, 2, page), mapCharge(perf, 128, page); b <= a {
		t.Errorf("perf event array sized by CPUs: %d with 2, %d with 128", a, b)
	}
	prog := &ebpf.CollectionSpec{Programs: map[string]*ebpf.ProgramSpec{"p": {Instructions: shieldSpec(t).Programs["aegis_xdp"].Instructions}}}
	if n := memlockNeed(prog, 2, page); n < prog.Programs["p"].Instructions.Size() {
		t.Errorf("program charge %d below its %d instruction bytes", n, prog.Programs["p"].Instructions.Size())
	}
}

func TestMemlockResultLogsAndPrintsItsOutcome(t *testing.T) {
	raised := MemlockResult{Need: 300 << 20, Target: MemlockCeiling, Capped: true, Old: Rlimit{8 << 20, 8 << 20}, New: Rlimit{MemlockCeiling, MemlockCeiling}, Changed: true}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("memlock", "memlock", raised)
	var rec struct {
		Memlock map[string]any `json:"memlock"`
	}
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"changed": true, "capped": true, "old_soft": "8MiB", "new_hard": "256MiB", "need": "300MiB"} {
		if rec.Memlock[k] != want {
			t.Errorf("logged %s=%v, want %v (record %s)", k, rec.Memlock[k], want, buf.String())
		}
	}
	if s := raised.String(); !strings.Contains(s, "from 8MiB/8MiB to 256MiB/256MiB") || !strings.Contains(s, "capped") {
		t.Errorf("summary %q", s)
	}
	skipped := MemlockResult{Need: 1 << 20, Old: Rlimit{8 << 20, Unlimited}, New: Rlimit{8 << 20, Unlimited}, Skipped: SkipMemcg}
	if s := skipped.String(); !strings.Contains(s, "unchanged at 8MiB/unlimited") || !strings.Contains(s, "memory cgroup") {
		t.Errorf("summary %q", s)
	}
}

// kernelAtLeast compares the running kernel's release with major.minor.
func kernelAtLeast(t *testing.T, major, minor int) bool {
	t.Helper()
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	rel := unix.ByteSliceToString(u.Release[:])
	parts := strings.SplitN(rel, ".", 3)
	if len(parts) < 2 {
		t.Fatalf("kernel release %q", rel)
	}
	maj, err1 := strconv.Atoi(parts[0])
	min, err2 := strconv.Atoi(strings.TrimFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	if err1 != nil || err2 != nil {
		t.Fatalf("kernel release %q", rel)
	}
	return maj > major || maj == major && min >= minor
}

// keepMemlock restores the process's RLIMIT_MEMLOCK when the test ends.
func keepMemlock(t *testing.T) Rlimit {
	t.Helper()
	old, err := getMemlock()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Prlimit(0, unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: old.Soft, Max: old.Hard}, nil); err != nil {
			t.Errorf("restoring RLIMIT_MEMLOCK: %v", err)
		}
	})
	return old
}

func setSoftMemlock(t *testing.T, soft uint64) {
	t.Helper()
	l, err := getMemlock()
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Prlimit(0, unix.RLIMIT_MEMLOCK, &unix.Rlimit{Cur: soft, Max: l.Hard}, nil); err != nil {
		t.Fatal(err)
	}
}

func TestMemcgAccountingMatchesTheKernelVersion(t *testing.T) {
	testutil.RequireRoot(t)
	before := keepMemlock(t)
	got, err := MemcgAccounting()
	if err != nil {
		t.Fatal(err)
	}
	if want := kernelAtLeast(t, 5, 11); got != want {
		t.Errorf("MemcgAccounting %v on a kernel where 5.11+ is %v", got, want)
	}
	if after, _ := getMemlock(); after != before {
		t.Errorf("probe left RLIMIT_MEMLOCK at %+v, was %+v", after, before)
	}
}

func TestRaiseMemlockLeavesMemcgKernelsAlone(t *testing.T) {
	testutil.RequireRoot(t)
	if !kernelAtLeast(t, 5, 11) {
		t.Skip("kernel before 5.11 charges RLIMIT_MEMLOCK")
	}
	before := keepMemlock(t)
	res, err := RaiseMemlock(MemlockCeiling*4, MemlockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Changed || res.Skipped != SkipMemcg || res.Old != before || res.New != before {
		t.Errorf("result %+v, want skipped for memcg with the limit at %+v", res, before)
	}
	if after, _ := getMemlock(); after != before {
		t.Errorf("RLIMIT_MEMLOCK changed to %+v", after)
	}
}

// The pre-5.11 path, forced: the soft limit rises to the target, capped,
// and a second call finds it sufficient. Only the soft limit is moved, so
// the test needs no CAP_SYS_RESOURCE to restore it.
func TestRaiseMemlockForcedRaisesTheSoftLimit(t *testing.T) {
	testutil.RequireRoot(t)
	old := keepMemlock(t)
	ceiling := min(uint64(16<<20), old.Hard)
	if ceiling < 2<<20 {
		t.Skipf("hard RLIMIT_MEMLOCK %d leaves no room", old.Hard)
	}
	setSoftMemlock(t, 1<<20)

	res, err := RaiseMemlock(64<<20, MemlockOptions{Force: true, Ceiling: ceiling})
	if err != nil {
		t.Fatal(err)
	}
	now, err := getMemlock()
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || !res.Capped || res.Target != ceiling || res.Old.Soft != 1<<20 {
		t.Errorf("result %+v, want a change from 1MiB capped at %d", res, ceiling)
	}
	if now != res.New || now.Soft != ceiling || now.Hard != old.Hard {
		t.Errorf("limit is %+v, result says %+v, want soft %d and hard %d", now, res.New, ceiling, old.Hard)
	}

	again, err := RaiseMemlock(1<<20, MemlockOptions{Force: true, Ceiling: ceiling})
	if err != nil {
		t.Fatal(err)
	}
	if again.Changed || again.Skipped != SkipSufficient {
		t.Errorf("second call %+v, want skipped as sufficient", again)
	}
	if after, _ := getMemlock(); after != now {
		t.Errorf("a sufficient limit was changed from %+v to %+v", now, after)
	}
}

// Above the hard limit RaiseMemlock needs CAP_SYS_RESOURCE: with it the hard
// limit rises too, without it the error says what to grant.
func TestRaiseMemlockForcedAboveTheHardLimit(t *testing.T) {
	testutil.RequireRoot(t)
	old := keepMemlock(t)
	if old.Hard >= MemlockCeiling {
		t.Skipf("hard RLIMIT_MEMLOCK %s is already at least the ceiling", formatBytes(old.Hard))
	}
	setSoftMemlock(t, min(old.Hard, 1<<20))
	before, _ := getMemlock()
	eff, err := Effective()
	if err != nil {
		t.Fatal(err)
	}

	res, err := RaiseMemlock(MemlockCeiling, MemlockOptions{Force: true})
	now, _ := getMemlock()
	if eff.Has(CapSysResource) {
		if err != nil {
			t.Fatal(err)
		}
		if now.Soft != MemlockCeiling || now.Hard != MemlockCeiling || now != res.New {
			t.Errorf("limit %+v, result %+v, want both at the ceiling", now, res)
		}
		return
	}
	if err == nil || !strings.Contains(err.Error(), "CAP_SYS_RESOURCE") || !strings.Contains(err.Error(), "LimitMEMLOCK=") {
		t.Fatalf("error %v, want one naming CAP_SYS_RESOURCE and LimitMEMLOCK=", err)
	}
	if res.Changed || now != before || res.New != before {
		t.Errorf("a refused raise changed something: result %+v, limit %+v, was %+v", res, now, before)
	}
}
