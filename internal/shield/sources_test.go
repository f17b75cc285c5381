//go:build linux

package shield

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/audit"
	"github.com/aegis-edge/aegis/internal/netlab"
	tu "github.com/aegis-edge/aegis/internal/testutil"
	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// v4Key is the table key of an IPv4 source with the default /32 prefix.
func v4Key(a netip.Addr) shieldAddr6 {
	return shieldAddr6{Addr: addr6Words(netip.AddrFrom16(a.As16()))}
}

// bucketMates returns n IPv4 addresses, counted up from start, whose keys
// fall in the bucket.
func bucketMates(bucket uint32, n int, start netip.Addr) []netip.Addr {
	var out []netip.Addr
	for a := start; len(out) < n; a = a.Next() {
		if sourceBucketOf(v4Key(a).Addr) == bucket {
			out = append(out, a)
		}
	}
	return out
}

// passOnce sends one UDP packet from src and wants it passed.
func passOnce(t *testing.T, s *Shield, src netip.Addr) {
	t.Helper()
	ret, err := s.Program().Run(&ebpf.RunOptions{Data: netlab.UDP4(src.String(), dst4).Bytes()})
	if err != nil {
		t.Fatal(err)
	}
	if ret != xdpPass {
		t.Fatalf("first packet of %s: verdict %d, want pass", src, ret)
	}
}

func blockByFlood(t *testing.T, s *Shield, src netip.Addr) {
	t.Helper()
	frame := netlab.UDP4(src.String(), dst4).Bytes()
	for range 25 { // autoBlockSettings: more than 20 in a second
		run(t, s, frame)
	}
	if ret, reason, _ := run(t, s, frame); ret != xdpDrop || reason != ReasonAutoBlocked {
		t.Fatalf("%s after its flood: %d %s, want an automatic block", src, ret, reason)
	}
}

func wantBlocked(t *testing.T, s *Shield, src netip.Addr, blocked bool) {
	t.Helper()
	for _, frame := range [][]byte{netlab.UDP4(src.String(), dst4).Bytes(), tcpAck4(src.String())} {
		ret, reason, _ := run(t, s, frame)
		if got := ret == xdpDrop && reason == ReasonAutoBlocked; got != blocked {
			t.Errorf("%s: %d %s, blocked %v, want %v", src, ret, reason, got, blocked)
		}
	}
}

// TestSourceTableFlood: a spoofed flood of distinct sources (the LRU used to
// churn through) evicts within a bucket only and takes the oldest limiter
// state first: a blocked source stays blocked through a flood of fresh
// sources in its own bucket and across the table, and every fresh source's
// first packet passes. The bound: a live block is evicted when its bucket
// holds four live blocks and a new source arrives, the one ending first.
func TestSourceTableFlood(t *testing.T) {
	s := newTestShield(t, autoBlockSettings())
	x := netip.MustParseAddr("198.51.100.7")
	blockByFlood(t, s, x)
	bucket := sourceBucketOf(v4Key(x).Addr)

	// Fresh sources in X's bucket: 200 of them through its 4 ways.
	for _, a := range bucketMates(bucket, 200, netip.MustParseAddr("10.0.0.0")) {
		passOnce(t, s, a)
	}
	wantBlocked(t, s, x, true)

	// 100,000 spoofed sources across the table.
	rng := rand.New(rand.NewPCG(15, 15))
	for range 100_000 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], rng.Uint32())
		if a := netip.AddrFrom4(b); a != x {
			passOnce(t, s, a)
		}
	}
	wantBlocked(t, s, x, true)

	// Walking the full table (status, metrics, marks) allocates per walk,
	// not per source: it was two objects a way, 7 MiB a walk.
	var held int
	walk := func() {
		held = 0
		if err := s.forEachSource(func(*shieldAddr6, *shieldSourceState) { held++ }); err != nil {
			t.Fatal(err)
		}
	}
	if allocs := testing.AllocsPerRun(2, walk); allocs > 100 || held < sourceBuckets {
		t.Errorf("a walk of %d sources made %.0f allocations", held, allocs)
	}

	// The limiter still counts a resident source exactly: the burst of 5
	// passes, then the bucket is full.
	y := netip.MustParseAddr("203.0.113.9")
	for i := range 7 {
		ret, reason, _ := run(t, s, netlab.UDP4(y.String(), dst4).Bytes())
		want := ReasonPassed
		if i >= 5 {
			want = ReasonRateUDP
		}
		if reason != want || (ret == xdpDrop) != (want == ReasonRateUDP) {
			t.Fatalf("packet %d of %s: %d %s, want %s", i, y, ret, reason, want)
		}
	}

	// The bound: three more blocks in X's bucket, each ending later, fill
	// its ways; the next new source evicts X's block (it ends first) and
	// only it.
	mates := bucketMates(bucket, 4, netip.MustParseAddr("172.16.0.0"))
	for i, a := range mates[:3] {
		if err := s.setClock(testNow + uint64(i+1)*uint64(time.Second)); err != nil {
			t.Fatal(err)
		}
		blockByFlood(t, s, a)
	}
	wantBlocked(t, s, x, true)
	passOnce(t, s, mates[3])
	for _, a := range mates[:3] {
		wantBlocked(t, s, a, true)
	}
	if _, ok, err := s.sources.get(v4Key(x)); err != nil || ok {
		t.Errorf("X still in the table (%v, %v) after a fifth source came to a bucket of four blocks", ok, err)
	}
	wantBlocked(t, s, x, false) // what the eviction means: X's traffic passes again
}

// TestSourceTableEvictsABlockNearItsEnd is the bound's other case: near the
// end of X's block, three sources of its bucket whose limiter state reaches
// past that end (a burst ahead of now) make X's block the oldest way, and a
// fourth source evicts it early, by less than a burst's length.
func TestSourceTableEvictsABlockNearItsEnd(t *testing.T) {
	s := newTestShield(t, autoBlockSettings()) // TTL 1 min; a burst of 5 at 5/s is 1 s
	x := netip.MustParseAddr("198.51.100.7")
	blockByFlood(t, s, x)
	st, ok, err := s.sources.get(v4Key(x))
	if err != nil || !ok {
		t.Fatalf("X not in the table: %v, %v", ok, err)
	}
	if err := s.setClock(st.BlockedUntil - uint64(time.Second/2)); err != nil {
		t.Fatal(err)
	}
	mates := bucketMates(sourceBucketOf(v4Key(x).Addr), 4, netip.MustParseAddr("172.16.0.0"))
	for _, a := range mates[:3] {
		for range 5 { // a whole burst: its state reaches 1 s ahead
			passOnce(t, s, a)
		}
	}
	wantBlocked(t, s, x, true)
	passOnce(t, s, mates[3])
	if _, ok, err := s.sources.get(v4Key(x)); err != nil || ok {
		t.Errorf("X still in the table (%v, %v): its block, ending in 0.5 s, was not the oldest way", ok, err)
	}
	wantBlocked(t, s, x, false)
}

// TestSourceTableRace: packets of two innocent sources run on both CPUs
// while userspace churns the other ways of their bucket (blocked states and
// full buckets of other sources, written and freed through the protocol):
// no packet of an innocent source is ever dropped, which a torn way or a
// write that strayed into another source's way would show.
func TestSourceTableRace(t *testing.T) {
	st := autoBlockSettings()
	st.UDP = Bucket{PPS: 1_000_000, Burst: 1_000_000} // the clock is frozen: 1e6 packets of room
	s := newTestShield(t, st)
	if s.sources.mem == nil {
		t.Log("the kernel cannot mmap arrays: userspace writes through system calls")
	}
	bucket := sourceBucketOf(v4Key(netip.MustParseAddr("10.0.0.0")).Addr)
	innocents := bucketMates(bucket, 2, netip.MustParseAddr("10.0.0.0"))
	attackers := bucketMates(bucket, 6, netip.MustParseAddr("10.1.0.0"))

	before, err := s.Counters()
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var writes atomic.Int64
	wg.Add(1)
	go func() { // the userspace writer
		defer wg.Done()
		rng := rand.New(rand.NewPCG(1, 2))
		for {
			select {
			case <-stop:
				return
			default:
			}
			k := v4Key(attackers[rng.IntN(len(attackers))])
			var err error
			if rng.IntN(3) == 0 {
				err = s.sources.remove(k)
			} else {
				var bad shieldSourceState
				bad.BlockedUntil = testNow + uint64(time.Hour)
				for c := range bad.Cls {
					bad.Cls[c].Tat = testNow + uint64(time.Hour)
					bad.Cls[c].WinStart = testNow
					bad.Cls[c].WinPkts = 1 << 40
				}
				err = s.sources.put(k, bad)
			}
			if err != nil {
				t.Error(err)
				return
			}
			writes.Add(1)
		}
	}()
	var runs atomic.Int64
	deadline := time.Now().Add(2 * time.Second)
	for cpu := range 2 {
		wg.Add(1)
		go func() { // packets of an innocent source pinned to a CPU
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			if !pinToCPU(t, cpu) {
				return
			}
			frame := netlab.UDP4(innocents[cpu].String(), dst4).Bytes()
			for time.Now().Before(deadline) {
				ret, err := s.Program().Run(&ebpf.RunOptions{Data: frame, Repeat: 100})
				if err != nil {
					t.Error(err)
					return
				}
				if ret != xdpPass {
					t.Errorf("innocent %s on CPU %d: verdict %d", innocents[cpu], cpu, ret)
					return
				}
				runs.Add(100)
			}
		}()
	}
	time.Sleep(time.Until(deadline))
	close(stop)
	wg.Wait()
	c, err := s.Counters()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []Reason{ReasonAutoBlocked, ReasonRateUDP} {
		if n := c.Verdicts[r].Packets - before.Verdicts[r].Packets; n != 0 {
			t.Errorf("%d innocent packets dropped as %s", n, r)
		}
	}
	if n := c.Verdicts[ReasonPassed].Packets - before.Verdicts[ReasonPassed].Packets; n < uint64(runs.Load()) {
		// More is fine: a run a signal interrupts is started over.
		t.Errorf("%d packets passed of %d run", n, runs.Load())
	}
	t.Logf("%d packets on 2 CPUs, %d userspace writes to their bucket", runs.Load(), writes.Load())
	if writes.Load() == 0 || runs.Load() == 0 {
		t.Error("the race did not run")
	}
}

// oldSourcesLRU pins in pin's maps directory a sources LRU as a version
// before the table left it: a blocked source and an idle one. It returns
// their keys and states.
func oldSourcesLRU(t *testing.T, pin string) (keys []shieldAddr6, states []shieldSourceState) {
	t.Helper()
	dir := filepath.Join(pin, "maps")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	old, err := ebpf.NewMap(&ebpf.MapSpec{
		Type: ebpf.LRUHash, KeySize: 16, ValueSize: uint32(binary.Size(shieldSourceState{})), MaxEntries: 1 << 16,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	blocked := v4Key(netip.MustParseAddr("192.0.2.77"))
	idle := v4Key(netip.MustParseAddr("192.0.2.78"))
	farFuture := uint64(1) << 62 // boot time never gets there
	var idleState shieldSourceState
	idleState.Cls[ClassUDP].Tat = 12345
	keys = []shieldAddr6{blocked, idle}
	states = []shieldSourceState{{BlockedUntil: farFuture}, idleState}
	for i := range keys {
		if err := old.Put(&keys[i], &states[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := old.Pin(filepath.Join(dir, "sources")); err != nil {
		t.Fatal(err)
	}
	return keys, states
}

// TestSourcesCarriedOver: a sources LRU pinned by a version before the
// table is read into the table at load, its blocks kept, and its pin
// replaced by the table's.
func TestSourcesCarriedOver(t *testing.T) {
	tu.RequireRoot(t)
	pin := tu.PinPath(t)
	keys, states := oldSourcesLRU(t, pin)

	s := loadCarryingSources(t, pin, keys, states)
	blocks, err := s.AutoBlocks()
	if err != nil || len(blocks) != 1 || blocks[0].Source != netip.MustParsePrefix("192.0.2.77/32") {
		t.Errorf("AutoBlocks after carrying over: %v, %v", blocks, err)
	}
	m, err := ebpf.LoadPinnedMap(filepath.Join(pin, "maps", "sources"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Type() != ebpf.Array {
		t.Errorf("pinned sources is a %s, want the table", m.Type())
	}
	if _, err := os.Stat(filepath.Join(pin, "maps", "sources-next")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the table's pin beside the old one is left: %v", err)
	}
}

// TestSourcesCarryOverKeepsThePinUntilLoaded: a load that fails after it
// has read the old sources LRU (here: its load or pin record cannot be
// audited; the load record is written after the maps are created, the
// table included) leaves the LRU pinned with its entries, and a retry
// carries it over.
func TestSourcesCarryOverKeepsThePinUntilLoaded(t *testing.T) {
	tu.RequireRoot(t)
	pin := tu.PinPath(t)
	keys, states := oldSourcesLRU(t, pin)
	rec := recorder{fail: func(ev audit.Event) bool { return ev.Op == audit.OpLoad && ev.Err == nil }}
	if s, err := Load(Options{PinPath: pin, Audit: rec.record}); err == nil {
		s.Close()
		t.Fatal("Load succeeded although its audit record could not be written")
	}
	m, err := ebpf.LoadPinnedMap(filepath.Join(pin, "maps", "sources"), nil)
	if err != nil {
		t.Fatalf("the old sources pin is gone after a failed load: %v", err)
	}
	defer m.Close()
	if m.Type() != ebpf.LRUHash {
		t.Fatalf("pinned sources is a %s after a failed load, want the old LRU", m.Type())
	}
	for i, k := range keys {
		var got shieldSourceState
		if err := m.Lookup(&k, &got); err != nil || got != states[i] {
			t.Errorf("old LRU holds %+v (%v) for %v after a failed load, want %+v", got, err, k, states[i])
		}
	}

	loadCarryingSources(t, pin, keys, states)
	m2, err := ebpf.LoadPinnedMap(filepath.Join(pin, "maps", "sources"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if m2.Type() != ebpf.Array {
		t.Errorf("pinned sources is a %s after the retry, want the table", m2.Type())
	}
}

// TestSourceTableSameSourceFlood: one source flooding from both CPUs at
// once contends for its own way. A packet that finds the way held judges on
// what it holds (way_peek), so the flood is held to its bucket: what passes
// beyond the burst is only what found the way busy at every read and would
// have passed (measured: at most 0.07% of the flood on the host, 1.05% in
// the 6.12 QEMU guest of the kernel matrix; the first version, which passed
// every packet that found its way busy, let 42% through).
func TestSourceTableSameSourceFlood(t *testing.T) {
	st := autoBlockSettings()
	st.UDP = Bucket{PPS: 1000, Burst: 1000}
	st.AutoBlockFactor = 1000 // 1e6 packets in the window: never reached here
	s := newTestShield(t, st)
	before, err := s.Counters()
	if err != nil {
		t.Fatal(err)
	}
	frame := netlab.UDP4("10.9.9.9", dst4).Bytes()
	const rounds, repeat = 40, 10000
	var wg sync.WaitGroup
	for cpu := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			if !pinToCPU(t, cpu) {
				return
			}
			for range rounds {
				if _, err := s.Program().Run(&ebpf.RunOptions{Data: frame, Repeat: repeat}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	c, err := s.Counters()
	if err != nil {
		t.Fatal(err)
	}
	passed := c.Verdicts[ReasonPassed].Packets - before.Verdicts[ReasonPassed].Packets
	dropped := c.Verdicts[ReasonRateUDP].Packets - before.Verdicts[ReasonRateUDP].Packets
	// The test's clock is frozen: the bucket admits its burst, and what
	// found the way busy and would have passed. Those are not certain: a
	// guest whose second CPU the host did not run meanwhile has none (seen
	// in the 6.12 guest, where the bound burst + 1 failed).
	burst := uint64(st.UDP.Burst)
	t.Logf("passed %d (the burst allows %d), dropped %d", passed, burst, dropped)
	if passed < burst {
		t.Errorf("passed %d, less than the burst of %d", passed, burst)
	}
	// 5% of the flood: well above what was measured, well below 42%.
	if excess := passed - min(passed, burst); excess*20 > passed+dropped {
		t.Errorf("%d packets passed beyond the burst, of %d", excess, passed+dropped)
	}
}

// refLimiter is a Go model of the data path's limiter and source table
// (rate_limit in bpf/shield.c) for one CPU: the same buckets, ways, eviction
// by age and GCRA, for the differential test below.
type refLimiter struct {
	cfg  shieldShieldConfig
	ways map[uint32]*[sourceWays]struct {
		tag shieldAddr6
		st  shieldSourceState
	}
	marks map[uint32]bool
}

func (r *refLimiter) packet(key shieldAddr6, class Class, limited bool, now uint64) Reason {
	if !limited && !r.marks[markOf(key.Addr)] {
		return ReasonPassed
	}
	b := sourceBucketOf(key.Addr)
	bk := r.ways[b]
	if bk == nil {
		bk = new([sourceWays]struct {
			tag shieldAddr6
			st  shieldSourceState
		})
		r.ways[b] = bk
	}
	w := -1
	for i := range bk {
		if bk[i].tag == key {
			w = i
			break
		}
	}
	if w >= 0 && bk[w].st.BlockedUntil > now {
		r.marks[markOf(key.Addr)] = true
		return ReasonAutoBlocked
	}
	if !limited {
		return ReasonPassed
	}
	rate := r.cfg.Rate[class]
	if rate.IntervalNs == 0 {
		return ReasonPassed
	}
	if w < 0 {
		v := 0
		for i := 1; i < sourceWays; i++ {
			if sourceAge(&bk[i].st) < sourceAge(&bk[v].st) {
				v = i
			}
		}
		bk[v].tag, bk[v].st = key, shieldSourceState{}
		cs := &bk[v].st.Cls[class]
		cs.Tat, cs.WinStart, cs.WinPkts = now+rate.IntervalNs, now, 1
		return ReasonPassed
	}
	st := &bk[w].st
	cs := &st.Cls[class]
	if now-cs.WinStart >= uint64(time.Second) {
		cs.WinStart, cs.WinPkts = now, 0
	}
	cs.WinPkts++
	if rate.AutoblockPkts != 0 && cs.WinPkts > rate.AutoblockPkts {
		st.BlockedUntil = now + r.cfg.AutoblockTtlNs
		r.marks[markOf(key.Addr)] = true
		return ReasonAutoBlocked
	}
	tat := max(cs.Tat, now) + rate.IntervalNs
	if tat-now > rate.ToleranceNs {
		return ReasonRateSYN + Reason(class)
	}
	cs.Tat = tat
	return ReasonPassed
}

// TestLimiterReference: a seeded random run of packets of every class from
// IPv4 and IPv6 sources crowded into two buckets (eight sources for four
// ways each), with the clock stepping, gets the same verdict and reason from
// the program as from the Go model, and leaves the table holding exactly the
// model's ways.
func TestLimiterReference(t *testing.T) {
	st := noLimits()
	st.UDP = Bucket{PPS: 5, Burst: 5}
	st.SYN = Bucket{PPS: 3, Burst: 3}
	st.ICMP = Bucket{PPS: 2, Burst: 2}
	st.AutoBlockFactor = 4
	st.AutoBlockTTL = 2 * time.Second
	s := newTestShield(t, st)
	ref := &refLimiter{cfg: s.cfg, ways: map[uint32]*[sourceWays]struct {
		tag shieldAddr6
		st  shieldSourceState
	}{}, marks: map[uint32]bool{}}

	type source struct {
		addr string
		key  shieldAddr6
	}
	var sources []source
	for _, b := range []uint32{sourceBucketOf(v4Key(netip.MustParseAddr("10.0.0.1")).Addr), 77} {
		for _, a := range bucketMates(b, 6, netip.MustParseAddr("10.20.0.0")) {
			sources = append(sources, source{a.String(), v4Key(a)})
		}
		n := 0
		for i := uint64(0); n < 2; i++ {
			var raw [16]byte
			binary.BigEndian.PutUint64(raw[:8], 0x20010db8_00000000|i)
			a := netip.AddrFrom16(raw)
			k := shieldAddr6{Addr: addr6Words(a)}
			if sourceBucketOf(k.Addr) == b {
				sources = append(sources, source{a.String(), k})
				n++
			}
		}
	}
	rng := rand.New(rand.NewPCG(15, 1))
	now := testNow
	seen := map[Reason]int{}
	for i := range 3000 {
		if rng.IntN(10) == 0 {
			now += uint64(rng.IntN(200)) * uint64(time.Millisecond)
			if err := s.setClock(now); err != nil {
				t.Fatal(err)
			}
		}
		src := sources[rng.IntN(len(sources))]
		if rng.IntN(2) == 0 { // flooders: one source of each bucket and family
			src = sources[[]int{0, 6, 8, 14}[rng.IntN(4)]]
		}
		v6 := !netip.MustParseAddr(src.addr).Is4()
		var frame []byte
		class, limited := Class(0), true
		switch k := rng.IntN(4); {
		case k == 0 && v6:
			frame, class = netlab.UDP6(src.addr, dst6).Bytes(), ClassUDP
		case k == 0:
			frame, class = netlab.UDP4(src.addr, dst4).Bytes(), ClassUDP
		case k == 1 && v6:
			frame, class = netlab.TCPSyn6(src.addr, dst6).Bytes(), ClassSYN
		case k == 1:
			frame, class = netlab.TCPSyn4(src.addr, dst4).Bytes(), ClassSYN
		case k == 2 && v6:
			frame, class = netlab.ICMPEcho6(src.addr, dst6).Bytes(), ClassICMP
		case k == 2:
			frame, class = netlab.ICMPEcho4(src.addr, dst4).Bytes(), ClassICMP
		case v6:
			frame, limited = tcpAck6(src.addr), false
		default:
			frame, limited = tcpAck4(src.addr), false
		}
		want := ref.packet(src.key, class, limited, now)
		seen[want]++
		ret, got, _ := run(t, s, frame)
		if got != want || (ret == xdpDrop) != (want != ReasonPassed) {
			t.Fatalf("packet %d from %s (class %d, limited %v) at +%d ms: program %d %s, model %s",
				i, src.addr, class, limited, (now-testNow)/uint64(time.Millisecond), ret, got, want)
		}
	}
	for _, bk := range ref.ways {
		for _, w := range bk {
			if w.tag == (shieldAddr6{}) {
				continue
			}
			got, ok, err := s.sources.get(w.tag)
			if err != nil || !ok || got != w.st {
				t.Errorf("source %v: table %+v (%v, %v), model %+v", w.tag, got, ok, err, w.st)
			}
		}
	}
	// The run covers every verdict the limiter gives.
	for _, r := range []Reason{ReasonPassed, ReasonRateSYN, ReasonRateUDP, ReasonRateICMP, ReasonAutoBlocked} {
		if seen[r] == 0 {
			t.Errorf("no packet got %s: %v", r, seen)
		}
	}
	t.Logf("verdicts: %v", seen)
}

// pinToCPU keeps the calling goroutine's thread (locked by the caller) on
// one CPU, so that two goroutines run the program on two CPUs at once.
func pinToCPU(t *testing.T, cpu int) bool {
	var set unix.CPUSet
	set.Set(cpu % runtime.NumCPU())
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		t.Error(err)
		return false
	}
	return true
}

// loadCarryingSources loads a shield over pin, closed when t ends, and
// checks that every old LRU entry was carried into the table.
func loadCarryingSources(t *testing.T, pin string, keys []shieldAddr6, states []shieldSourceState) *Shield {
	t.Helper()
	s, err := Load(Options{PinPath: pin})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for i, k := range keys {
		if got, ok, err := s.sources.get(k); err != nil || !ok || got != states[i] {
			t.Errorf("source %v carried over as %+v, %v, %v; want %+v", k, got, ok, err, states[i])
		}
	}
	return s
}
