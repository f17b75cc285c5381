//go:build linux

package shield

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/netlab"
	tu "github.com/aegis-edge/aegis/internal/testutil"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

// The data-path benchmarks time the XDP program with BPF_PROG_TEST_RUN: the
// kernel runs the program Repeat times on one frame and reports the mean time
// per run, so the figures are the program's own cost per packet, without the
// driver. BenchmarkPeerXDPFilter and BenchmarkEmptyXDP time other programs on
// the same frames with the same method; scripts/bench-shield.sh runs all three
// side by side and docs/BENCHMARKS.md records the results.

// Map sizes of the benchmark: the blocklist full as the default limits allow.
const (
	benchExact4   = 100_000
	benchExact6   = 50_000
	benchPrefixes = 10_000 // per family
	benchSources4 = 4_000  // warm rate-limiter state, IPv4 sources
	benchSources6 = 2_000  // and IPv6 /64s
	benchSeed     = 0xae915
	// Each BPF_PROG_TEST_RUN call with more than one repeat costs ~16 ms of
	// wall time here (the kernel points its XDP dispatcher at the program
	// and back around the run), so the runs go in as few calls as possible.
	benchMaxRepeat = 10_000_000
)

// Sources of the benchmark frames. The peer script (scripts/bench-shield.sh)
// puts the drop-exact and drop-prefix sources into xdp-filter's src list, so
// keep them in step with it.
const (
	benchPass4     = "192.0.2.1"
	benchDrop4     = "192.0.2.66"
	benchPrefix4   = "203.0.113.0/24"
	benchInPrefix4 = "203.0.113.9"

	benchPrefix4Len = 24 // benchPrefix4's
	benchSYN4       = "192.0.2.20"
	benchPass6      = "2001:db8::1"
	benchDrop6      = "2001:db8:bad::66"
	benchPrefix6    = "2001:db8:dead::/48"
	benchInPrefix6  = "2001:db8:dead:2::5"
	benchSYN6       = "2001:db8:1:2::1"
)

// benchCase is one packet path: a frame, the verdict the shield must give
// it, and how many runs the verdict stays stable for.
type benchCase struct {
	family, name string
	frame        []byte
	ret          uint32
	reason       Reason
	peerRet      uint32 // xdp-filter's verdict, as scripts/bench-shield.sh fills it
	chunk        int    // repeats per test run before the state must be reset
	src          netip.Prefix
	class        Class // for stateful cases: the class whose state prime resets
	over         bool  // prime puts the source over its limit
}

func (c benchCase) String() string { return c.family + "/" + c.name }

// benchSettings are the default settings with two changes that let a run of
// many packets keep one verdict: the UDP bucket is
// large, so the clean source's bucket does not run dry (the pass path still
// looks the source up and updates its bucket exactly as with the default), and
// the automatic-block factor is at its maximum, so the source over its SYN
// limit stays rate-limited rather than auto-blocked for 100,000 packets. The
// benchmark resets both sources' state every chunk of half that many runs.
func benchSettings() Settings {
	st := DefaultSettings()
	st.UDP = Bucket{PPS: 1_000_000, Burst: 1_000_000}
	st.AutoBlockFactor = 1000
	return st
}

// benchCases lists the paths for both families, in table order.
func benchCases(st Settings) []benchCase {
	// A clean UDP source passes for at least Burst packets before its
	// bucket is empty (the clock runs, as in production, and refills
	// it), and a source over its SYN limit stays
	// rate-limited until its window count crosses the automatic-block
	// threshold; the benchmark resets that state every chunk of half
	// that many runs, for a margin.
	passChunk := min(int(st.UDP.Burst), st.AutoBlockFactor*int(st.UDP.PPS)) / 2
	synChunk := st.AutoBlockFactor * int(st.SYN.PPS) / 2
	pfx4 := netip.PrefixFrom(netip.MustParseAddr(benchSYN4), st.IPv4PrefixLen).Masked()
	pfx6 := netip.PrefixFrom(netip.MustParseAddr(benchSYN6), st.IPv6PrefixLen).Masked()
	pass4 := netip.PrefixFrom(netip.MustParseAddr(benchPass4), st.IPv4PrefixLen).Masked()
	pass6 := netip.PrefixFrom(netip.MustParseAddr(benchPass6), st.IPv6PrefixLen).Masked()
	return []benchCase{
		{family: "ipv4", name: "pass", frame: netlab.UDP4(benchPass4, dst4).Bytes(), ret: xdpPass, reason: ReasonPassed, peerRet: xdpPass, chunk: passChunk, src: pass4, class: ClassUDP},
		{family: "ipv4", name: "pass-tcp", frame: tcpAck4(benchPass4), ret: xdpPass, reason: ReasonPassed, peerRet: xdpPass, chunk: benchMaxRepeat},
		{family: "ipv4", name: "drop-exact", frame: netlab.UDP4(benchDrop4, dst4).Bytes(), ret: xdpDrop, reason: ReasonBlockedExact, peerRet: xdpDrop, chunk: benchMaxRepeat},
		{family: "ipv4", name: "drop-prefix", frame: netlab.UDP4(benchInPrefix4, dst4).Bytes(), ret: xdpDrop, reason: ReasonBlockedPrefix, peerRet: xdpDrop, chunk: benchMaxRepeat},
		{family: "ipv4", name: "rate-limited", frame: netlab.TCPSyn4(benchSYN4, dst4).Bytes(), ret: xdpDrop, reason: ReasonRateSYN, peerRet: xdpPass, chunk: synChunk, src: pfx4, class: ClassSYN, over: true},
		{family: "ipv6", name: "pass", frame: netlab.UDP6(benchPass6, dst6).Bytes(), ret: xdpPass, reason: ReasonPassed, peerRet: xdpPass, chunk: passChunk, src: pass6, class: ClassUDP},
		{family: "ipv6", name: "pass-tcp", frame: tcpAck6(benchPass6), ret: xdpPass, reason: ReasonPassed, peerRet: xdpPass, chunk: benchMaxRepeat},
		{family: "ipv6", name: "drop-exact", frame: netlab.UDP6(benchDrop6, dst6).Bytes(), ret: xdpDrop, reason: ReasonBlockedExact, peerRet: xdpDrop, chunk: benchMaxRepeat},
		{family: "ipv6", name: "drop-prefix", frame: netlab.UDP6(benchInPrefix6, dst6).Bytes(), ret: xdpDrop, reason: ReasonBlockedPrefix, peerRet: xdpDrop, chunk: benchMaxRepeat},
		{family: "ipv6", name: "rate-limited", frame: netlab.TCPSyn6(benchSYN6, dst6).Bytes(), ret: xdpDrop, reason: ReasonRateSYN, peerRet: xdpPass, chunk: synChunk, src: pfx6, class: ClassSYN, over: true},
	}
}

// benchFixture is the loaded shield with full maps, shared by every
// sub-benchmark of the process: filling it takes about a second.
type benchFixture struct {
	s     *Shield
	st    Settings
	cases []benchCase
	stats string
}

var (
	benchOnce sync.Once
	benchFix  *benchFixture
	benchErr  error
)

func loadBenchFixture(b *testing.B) *benchFixture {
	b.Helper()
	tu.RequireRoot(b)
	benchOnce.Do(func() { benchFix, benchErr = newBenchFixture() })
	if benchErr != nil {
		b.Fatalf("building benchmark fixture: %v", benchErr)
	}
	return benchFix
}

// newBenchFixture loads a shield that lives until the process exits.
func newBenchFixture() (*benchFixture, error) {
	start := time.Now()
	s, err := Load(Options{})
	if err != nil {
		return nil, fmt.Errorf("loading shield: %w", err)
	}
	st := benchSettings()
	if err := s.SetSettings(st); err != nil {
		return nil, err
	}
	// The clock is not frozen: the data path reads its jiffies clock as
	// in production, so the figures include telling the time.
	f := &benchFixture{s: s, st: st, cases: benchCases(st)}
	if err := f.fill(); err != nil {
		s.Close()
		return nil, err
	}
	n := 0
	err = s.forEachSource(func(*shieldAddr6, *shieldSourceState) { n++ })
	if err != nil {
		return nil, err
	}
	f.stats = fmt.Sprintf("%d+%d exact, %d+%d prefixes, %d limiter sources, built in %s",
		benchExact4, benchExact6, benchPrefixes, benchPrefixes, n, time.Since(start).Round(time.Millisecond))
	return f, nil
}

// fill puts the seeded random blocklist in and warms the limiter.
func (f *benchFixture) fill() error {
	rng := rand.New(rand.NewPCG(benchSeed, benchSeed))
	// Addresses the random entries must neither hit nor cover: the frames'
	// sources, so each frame takes exactly the path it stands for.
	keep := []netip.Addr{}
	for _, a := range []string{benchPass4, benchDrop4, benchInPrefix4, benchSYN4, benchPass6, benchDrop6, benchInPrefix6, benchSYN6} {
		keep = append(keep, netip.MustParseAddr(a))
	}
	covers := func(p netip.Prefix) bool {
		for _, a := range keep {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	rand4 := func() netip.Addr {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], rng.Uint32())
		return netip.AddrFrom4(b)
	}
	rand6 := func() netip.Addr { // global unicast, 2000::/3
		var b [16]byte
		binary.BigEndian.PutUint64(b[:8], rng.Uint64()>>3|1<<61)
		binary.BigEndian.PutUint64(b[8:], rng.Uint64())
		return netip.AddrFrom16(b)
	}
	gen := func(n int, fixed []string, next func() netip.Prefix) []Rule {
		seen := map[netip.Prefix]bool{}
		var rules []Rule
		for _, s := range fixed {
			p := mustPrefix(s)
			seen[p] = true
			rules = append(rules, Rule{Prefix: p, RuleID: uint32(len(rules) + 1)})
		}
		for len(rules) < n {
			p := next().Masked()
			if seen[p] || covers(p) {
				continue
			}
			seen[p] = true
			rules = append(rules, Rule{Prefix: p, RuleID: uint32(len(rules) + 1)})
		}
		return rules
	}
	var rules []Rule
	rules = append(rules, gen(benchExact4, []string{benchDrop4}, func() netip.Prefix { return netip.PrefixFrom(rand4(), 32) })...)
	rules = append(rules, gen(benchExact6, []string{benchDrop6}, func() netip.Prefix { return netip.PrefixFrom(rand6(), 128) })...)
	rules = append(rules, gen(benchPrefixes, []string{benchPrefix4}, func() netip.Prefix { return netip.PrefixFrom(rand4(), 16+rng.IntN(13)) })...)
	rules = append(rules, gen(benchPrefixes, []string{benchPrefix6}, func() netip.Prefix { return netip.PrefixFrom(rand6(), 32+rng.IntN(33)) })...)
	if err := f.s.PutRules(Blocklist, rules); err != nil {
		return err
	}

	// Warm the limiter with traffic from some thousands of other sources, as
	// a busy node has; some of them are blocked by the random prefixes and
	// leave no state, which is fine.
	prog := f.s.Program()
	for i := 0; i < benchSources4+benchSources6; i++ {
		var frame []byte
		if i < benchSources4 {
			frame = netlab.UDP4(rand4().String(), dst4).Bytes()
		} else {
			frame = netlab.UDP6(rand6().String(), dst6).Bytes()
		}
		if _, err := prog.Run(&ebpf.RunOptions{Data: frame}); err != nil {
			return fmt.Errorf("warming the limiter: %w", err)
		}
	}
	return nil
}

// prime resets a stateful case's source before a chunk of runs: the pass
// source has a full bucket, the SYN source is past its burst, and neither has
// counted anything in its window, so the verdict holds for c.chunk runs.
func (f *benchFixture) prime(c benchCase) error {
	if !c.src.IsValid() {
		return nil
	}
	a := c.src.Addr()
	if a.Is4() {
		a = netip.AddrFrom16(a.As16())
	}
	key := shieldAddr6{Addr: addr6Words(a)}
	var st shieldSourceState
	b := f.s.cfg.Rate[c.class]
	cs := &st.Cls[c.class]
	now := f.s.clock().boot
	cs.Tat = now
	if c.over {
		cs.Tat = now + b.ToleranceNs + 10*b.IntervalNs
	}
	cs.WinStart = now
	return f.s.sources.put(key, st)
}

// measure runs prog b.N times on the case's frame in chunks, priming before
// each chunk, checks every chunk's last verdict and reports ns per packet.
func measure(b *testing.B, prog *ebpf.Program, frame []byte, want uint32, chunk int, prime func() error) {
	b.Helper()
	chunk = max(1, min(chunk, benchMaxRepeat))
	var total time.Duration
	b.ResetTimer()
	for left := b.N; left > 0; {
		n := min(left, chunk)
		if prime != nil {
			b.StopTimer()
			if err := prime(); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		// A signal interrupts the test run; the retry starts over with
		// the state the interrupted runs left, so it is primed again.
		var primeErr error
		reset := func() {
			if prime != nil && primeErr == nil {
				primeErr = prime()
			}
		}
		ret, per, err := prog.Benchmark(frame, n, reset)
		if err == nil {
			err = primeErr
		}
		if err != nil {
			b.Fatal(err)
		}
		if ret != want {
			b.Fatalf("verdict changed during a run of %d: got %d, want %d", n, ret, want)
		}
		total += per * time.Duration(n)
		left -= n
	}
	b.StopTimer()
	b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/pkt")
}

// BenchmarkDataPath times the shield on each packet path with its maps full.
func BenchmarkDataPath(b *testing.B) {
	f := loadBenchFixture(b)
	b.Logf("fixture: %s", f.stats)
	for _, c := range f.cases {
		b.Run(c.String(), func(b *testing.B) {
			if err := f.prime(c); err != nil {
				b.Fatal(err)
			}
			ret, reason, monitored := run(b, f.s, c.frame)
			if ret != c.ret || reason != c.reason || monitored {
				b.Fatalf("frame gets verdict %d reason %s (monitored %v), want %d %s", ret, reason, monitored, c.ret, c.reason)
			}
			measure(b, f.s.Program(), c.frame, c.ret, c.chunk, func() error { return f.prime(c) })
		})
	}
}

// BenchmarkPeerXDPFilter times the xdp-filter programs whose ids
// AEGIS_PEER_PROG_ID lists (comma-separated) on the same frames, with the
// same method, one sub-benchmark per program named after it (the program
// name tells xdp-filter's feature variant, e.g. xdpfilt_alw_all). It expects
// xdp-filter as scripts/bench-shield.sh loads and fills it: the drop-exact
// and drop-prefix sources are in its src list (it has no prefixes, so the
// prefix case's one address is listed), and the rate-limited SYN passes (it
// has no rate limits), so that case times its full pass path.
func BenchmarkPeerXDPFilter(b *testing.B) {
	for name, prog := range peerPrograms(b) {
		for _, c := range benchCases(benchSettings()) {
			b.Run(name+"/"+c.String(), func(b *testing.B) {
				ret, err := prog.Run(&ebpf.RunOptions{Data: c.frame})
				if err != nil {
					b.Fatal(err)
				}
				if ret != c.peerRet {
					b.Fatalf("%s gives verdict %d, want %d: is xdp-filter loaded and filled by scripts/bench-shield.sh?", name, ret, c.peerRet)
				}
				measure(b, prog, c.frame, c.peerRet, c.chunk, nil)
			})
		}
	}
}

// peerPrograms opens the programs AEGIS_PEER_PROG_ID lists, by name.
func peerPrograms(b *testing.B) map[string]*ebpf.Program {
	ids := os.Getenv("AEGIS_PEER_PROG_ID")
	if ids == "" {
		b.Skip("AEGIS_PEER_PROG_ID is not set: run scripts/bench-shield.sh, which loads xdp-filter and sets it")
	}
	tu.RequireRoot(b)
	progs := map[string]*ebpf.Program{}
	for _, id := range strings.Split(ids, ",") {
		n, err := strconv.ParseUint(strings.TrimSpace(id), 10, 32)
		if err != nil {
			b.Fatalf("AEGIS_PEER_PROG_ID=%q: %v", ids, err)
		}
		prog, err := ebpf.NewProgramFromID(ebpf.ProgramID(n))
		if err != nil {
			b.Fatalf("opening program %d: %v", n, err)
		}
		b.Cleanup(func() { prog.Close() })
		name := fmt.Sprintf("prog%d", n)
		if info, err := prog.Info(); err == nil && info.Name != "" {
			name = info.Name
		}
		if prog.Type() != ebpf.XDP {
			b.Fatalf("program %d (%s) is of type %s, not XDP: load xdp-filter without the libxdp dispatcher", n, name, prog.Type())
		}
		progs[name] = prog
	}
	return progs
}

// emptyXDP loads a program that only returns XDP_PASS, closed when b ends.
func emptyXDP(b *testing.B) *ebpf.Program {
	b.Helper()
	tu.RequireRoot(b)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.XDP,
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, xdpPass), asm.Return()},
		License:      "MIT",
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { prog.Close() })
	return prog
}

// BenchmarkEmptyXDP times a program that only returns XDP_PASS on the same
// frames: the floor that BPF_PROG_TEST_RUN itself adds to every figure.
func BenchmarkEmptyXDP(b *testing.B) {
	prog := emptyXDP(b)
	for _, c := range benchCases(benchSettings()) {
		if c.name != "pass" {
			continue
		}
		b.Run(c.family, func(b *testing.B) {
			measure(b, prog, c.frame, xdpPass, c.chunk, nil)
		})
	}
}

// BenchmarkLookupFloor times programs that do one thing each, in the
// benchmark fixture's maps, on the pass frame: nothing, one lookup in each
// kind of map the data path consults (with a key that is there: the
// per-source LRU entry of the pass source, an exact blocklist entry, a
// prefix entry; a program whose lookup misses returns XDP_DROP, which
// fails the run), and one read of each clock. Set next to xdp-filter's
// figures, they show what the structures the shield must consult cost on
// their own on this machine, before any parsing or logic.
func BenchmarkLookupFloor(b *testing.B) {
	f := loadBenchFixture(b)
	if err := f.prime(f.cases[0]); err != nil { // the pass source's table entry
		b.Fatal(err)
	}
	frame := f.cases[0].frame
	word := func(a netip.Addr, i int) int32 { return int32(addr6Words(a)[i]) }
	pass4 := netip.AddrFrom16(netip.MustParseAddr(benchPass4).As16())
	drop4 := netip.MustParseAddr(benchDrop4)
	inPrefix4 := netip.MustParseAddr(benchInPrefix4)
	// lookup stores the key's words at fp-16 and looks it up in m.
	lookup := func(m *ebpf.Map, key ...int32) asm.Instructions {
		var in asm.Instructions
		for i, w := range key {
			in = append(in, asm.StoreImm(asm.RFP, int16(-16+4*i), int64(w), asm.Word))
		}
		return append(in,
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -16),
			asm.LoadMapPtr(asm.R1, m.FD()),
			asm.FnMapLookupElem.Call(),
			asm.JNE.Imm(asm.R0, 0, "hit"),
			asm.Mov.Imm(asm.R0, xdpDrop),
			asm.Return(),
		)
	}
	v4 := func(a netip.Addr) int32 { return word(netip.AddrFrom16(a.As16()), 3) }
	// The LPM trie the prefixes were in before issue 15's lookup by
	// length, and the hash map by length they were in before the prefix
	// tables, holding the same IPv4 prefixes: what each costs beside the
	// table that replaced them.
	trie, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.LPMTrie, KeySize: 8, ValueSize: f.s.objs.BlockV4Lpm.ValueSize(),
		MaxEntries: 1 << 16, Flags: unix.BPF_F_NO_PREALLOC})
	if err != nil {
		b.Fatal(err)
	}
	defer trie.Close()
	prefixHash, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 8, ValueSize: f.s.objs.BlockV4Lpm.ValueSize(),
		MaxEntries: 1 << 20, Flags: unix.BPF_F_NO_PREALLOC})
	if err != nil {
		b.Fatal(err)
	}
	defer prefixHash.Close()
	// The hash map the exact addresses were in before the exact tables,
	// holding the same IPv4 addresses.
	exactHash, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 4, ValueSize: f.s.objs.BlockV4.ValueSize(),
		MaxEntries: 1 << 20, Flags: unix.BPF_F_NO_PREALLOC})
	if err != nil {
		b.Fatal(err)
	}
	defer exactHash.Close()
	rules, err := f.s.Rules(Blocklist)
	if err != nil {
		b.Fatal(err)
	}
	for _, r := range rules {
		a := r.Prefix.Addr()
		switch {
		case !a.Is4():
		case r.Prefix.Bits() == 32:
			if err := exactHash.Put(uint32(v4(a)), shieldEntry{}); err != nil {
				b.Fatal(err)
			}
		default:
			k := shieldLpmV4Key{Prefixlen: uint32(r.Prefix.Bits()), Addr: uint32(v4(a))}
			for _, m := range []*ebpf.Map{trie, prefixHash} {
				if err := m.Put(&k, shieldEntry{Prefixlen: k.Prefixlen}); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	dropKey := exactKey{uint32(v4(drop4))}
	prefixKey := exactKey{prefix4Key(mustPrefix(benchPrefix4))}
	for _, c := range []struct {
		name string
		body asm.Instructions
	}{
		{"empty", nil},
		{"array", lookup(f.s.objs.Config, 0)},
		{"array-source", lookup(f.s.objs.Sources, int32(sourceBucketOf(addr6Words(pass4))))},
		{"table-exact-v4", lookup(f.s.objs.ExactTableV4, int32(f.s.table4.bucket(1, f.s.table4.hashes(dropKey)[0])))},
		{"hash-exact-v4", lookup(exactHash, v4(drop4))},
		{"table-prefix-v4", lookup(f.s.objs.PrefixTableV4, int32(f.s.prefix4.bucket(1, f.s.prefix4.hashes(prefixKey)[0])))},
		{"hash-prefix-v4", lookup(prefixHash, int32(benchPrefix4Len), v4(inPrefix4)&int32(prefixMask4(benchPrefix4Len)))},
		{"lpm-trie-v4", lookup(trie, 32, v4(inPrefix4))},
		{"ktime-boot-ns", asm.Instructions{asm.FnKtimeGetBootNs.Call()}},
		{"jiffies64", asm.Instructions{asm.FnJiffies64.Call()}},
	} {
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Type:         ebpf.XDP,
			Instructions: append(c.body, asm.Mov.Imm(asm.R0, xdpPass).WithSymbol("hit"), asm.Return()),
			License:      "GPL",
		})
		if err != nil {
			b.Fatalf("%s: %v", c.name, err)
		}
		b.Run(c.name, func(b *testing.B) {
			measure(b, prog, frame, xdpPass, benchMaxRepeat, nil)
		})
		prog.Close()
	}
}
