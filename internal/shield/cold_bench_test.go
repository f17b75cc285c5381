//go:build linux

package shield

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/netlab"
	"github.com/cilium/ebpf"
)

// The cache-cold benchmarks (issue 15). The hot benchmarks repeat one frame,
// so every map node the program touches stays in L1. Here each packet comes
// from another source, drawn from about a million addresses: the source
// table's bucket, the exact lists' hash buckets and the tries' nodes are
// mostly not in any cache. BPF_PROG_TEST_RUN cannot vary the frame within a
// call, so each packet is one call with one repeat, and the figure is the
// mean of the per-call times the kernel reports. That time includes the
// kernel's timer around the run, which BenchmarkEmptyXDPCold measures on its
// own. BenchmarkFlood sends a distinct source per packet through the limiter:
// a spoofed flood, where every packet takes a way of the source table.

// coldSources is how many distinct frames a cold case cycles through
// (AEGIS_BENCH_COLD_SOURCES, default 2^20), at most b.N.
func coldSources() int {
	if n, err := strconv.Atoi(os.Getenv("AEGIS_BENCH_COLD_SOURCES")); err == nil && n > 0 {
		return n
	}
	return 1 << 20
}

// coldCase is a family's frames for one path, drawn at random.
type coldCase struct {
	family, name string
	ret          uint32 // 0: either verdict (clean sources may fall in a random prefix)
	next         func(rng *rand.Rand) []byte
}

// coldCases builds the cases from the fixture's lists: clean sources from
// the whole address space, and sources in the exact and prefix entries.
func coldCases(b *testing.B, f *benchFixture) []coldCase {
	b.Helper()
	rules, err := f.s.Rules(Blocklist)
	if err != nil {
		b.Fatal(err)
	}
	var exact4, exact6, pfx4, pfx6 []netip.Prefix
	for _, r := range rules {
		p := r.Prefix
		switch {
		case p.Addr().Is4() && p.Bits() == 32:
			exact4 = append(exact4, p)
		case p.Addr().Is4():
			pfx4 = append(pfx4, p)
		case p.Bits() == 128:
			exact6 = append(exact6, p)
		default:
			pfx6 = append(pfx6, p)
		}
	}
	pick := func(rng *rand.Rand, ps []netip.Prefix) netip.Addr { return randomIn(ps[rng.IntN(len(ps))], rng) }
	udp := func(a netip.Addr) []byte {
		if a.Is4() {
			return netlab.UDP4(a.String(), dst4).Bytes()
		}
		return netlab.UDP6(a.String(), dst6).Bytes()
	}
	all4 := netip.MustParsePrefix("0.0.0.0/0")
	all6 := netip.MustParsePrefix("2000::/3")
	return []coldCase{
		// The reference: one clean source, the same one-repeat calls.
		// What the cold cases cost over it is their data's cache misses;
		// what it costs over the hot benchmark is the call's (code,
		// branch predictors and TLB cold after the syscall).
		{"ipv4", "pass-one-source", xdpPass, func(*rand.Rand) []byte { return udp(netip.MustParseAddr(benchPass4)) }},
		{"ipv4", "pass", 0, func(rng *rand.Rand) []byte { return udp(randomIn(all4, rng)) }},
		{"ipv4", "drop-exact", xdpDrop, func(rng *rand.Rand) []byte { return udp(pick(rng, exact4)) }},
		{"ipv4", "drop-prefix", xdpDrop, func(rng *rand.Rand) []byte { return udp(pick(rng, pfx4)) }},
		{"ipv6", "pass-one-source", xdpPass, func(*rand.Rand) []byte { return udp(netip.MustParseAddr(benchPass6)) }},
		{"ipv6", "pass", 0, func(rng *rand.Rand) []byte { return udp(randomIn(all6, rng)) }},
		{"ipv6", "drop-exact", xdpDrop, func(rng *rand.Rand) []byte { return udp(pick(rng, exact6)) }},
		{"ipv6", "drop-prefix", xdpDrop, func(rng *rand.Rand) []byte { return udp(pick(rng, pfx6)) }},
	}
}

// coldFrames caches each case's frames for the process: the shield and the
// peers run on the same ones.
var (
	coldMu     sync.Mutex
	coldFrames = map[string][][]byte{}
)

func framesFor(c coldCase, n int) [][]byte {
	coldMu.Lock()
	defer coldMu.Unlock()
	key := c.family + "/" + c.name
	fs := coldFrames[key]
	if len(fs) < n {
		rng := rand.New(rand.NewPCG(benchSeed, uint64(len(key))))
		fs = fs[:0]
		for range n {
			fs = append(fs, c.next(rng))
		}
		coldFrames[key] = fs
	}
	return fs[:n]
}

// measureCold runs prog once on each of b.N frames (cycling through frames)
// and reports the mean of the kernel's per-run times, and the share of
// packets dropped. A frame whose verdict is not want (when want is set)
// fails the benchmark.
func measureCold(b *testing.B, prog *ebpf.Program, frames [][]byte, want uint32) {
	b.Helper()
	var total time.Duration
	dropped := 0
	b.ResetTimer()
	for i := range b.N {
		ret, d, err := prog.Benchmark(frames[i%len(frames)], 1, nil)
		if err != nil {
			b.Fatal(err)
		}
		if want != 0 && ret != want {
			b.Fatalf("packet %d: verdict %d, want %d", i, ret, want)
		}
		if ret == xdpDrop {
			dropped++
		}
		total += d
	}
	b.StopTimer()
	b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/pkt")
	b.ReportMetric(100*float64(dropped)/float64(b.N), "%dropped")
}

// BenchmarkDataPathCold times the shield on each path with sources spread
// over about a million addresses (see above).
func BenchmarkDataPathCold(b *testing.B) {
	f := loadBenchFixture(b)
	for _, c := range coldCases(b, f) {
		b.Run(c.family+"/"+c.name, func(b *testing.B) {
			measureCold(b, f.s.Program(), framesFor(c, min(b.N, coldSources())), c.ret)
		})
	}
}

// BenchmarkPeerXDPFilterCold times xdp-filter's programs (AEGIS_PEER_PROG_ID,
// as BenchmarkPeerXDPFilter) on the same clean frames: none of their sources
// is in its lists, so every packet takes its full pass path.
func BenchmarkPeerXDPFilterCold(b *testing.B) {
	progs := peerPrograms(b)
	f := loadBenchFixture(b)
	for name, prog := range progs {
		for _, c := range coldCases(b, f) {
			if c.name != "pass" && c.name != "pass-one-source" {
				continue
			}
			b.Run(name+"/"+c.family+"/"+c.name, func(b *testing.B) {
				measureCold(b, prog, framesFor(c, min(b.N, coldSources())), 0)
			})
		}
	}
}

// BenchmarkEmptyXDPCold is the floor of a one-repeat run: the kernel's timer
// and call around a program that only returns XDP_PASS.
func BenchmarkEmptyXDPCold(b *testing.B) {
	prog := emptyXDP(b)
	f := loadBenchFixture(b)
	for _, c := range coldCases(b, f) {
		if c.name == "pass" {
			b.Run(c.family, func(b *testing.B) {
				measureCold(b, prog, framesFor(c, min(b.N, coldSources())), xdpPass)
			})
		}
	}
}

// BenchmarkFlood sends b.N packets from b.N distinct IPv4 sources through
// the limiter, as a spoofed flood does: every packet is a source the table
// has not seen and takes the oldest way of its bucket. Run it with
// -benchtime=10000000x for the 10M sources. What the flood leaves in
// the table is tested, not measured, here: TestSourceTableFlood.
func BenchmarkFlood(b *testing.B) {
	f := loadBenchFixture(b)
	prog := f.s.Program()
	frame := netlab.UDP4("10.0.0.1", dst4).Bytes()
	src := frame[14+12 : 14+16] // the IPv4 header's source, after Ethernet
	var total time.Duration
	b.ResetTimer()
	for i := range b.N {
		// A bijection of i: distinct for every packet of the run.
		binary.BigEndian.PutUint32(src, uint32(i)*2654435761+0x0b000000)
		ipv4Checksum(frame[14:34])
		ret, d, err := prog.Benchmark(frame, 1, nil)
		if err != nil {
			b.Fatal(err)
		}
		if ret != xdpPass && ret != xdpDrop {
			b.Fatalf("packet %d: verdict %d", i, ret)
		}
		total += d
	}
	b.StopTimer()
	b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/pkt")
}

// ipv4Checksum rewrites an IPv4 header's checksum.
func ipv4Checksum(h []byte) {
	h[10], h[11] = 0, 0
	var sum uint32
	for i := 0; i < len(h); i += 2 {
		sum += uint32(h[i])<<8 | uint32(h[i+1])
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(h[10:], ^uint16(sum))
}
