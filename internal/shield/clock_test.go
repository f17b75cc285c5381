//go:build linux

package shield

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/netlab"
	tu "github.com/aegis-edge/aegis/internal/testutil"
	"github.com/cilium/ebpf"
)

// loadRealClock loads a shield whose data path runs on its own clock (no
// injected time), with the given settings.
func loadRealClock(t *testing.T, opts Options, st Settings) *Shield {
	t.Helper()
	tu.RequireRoot(t)
	s, err := Load(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.SetSettings(st); err != nil {
		t.Fatal(err)
	}
	return s
}

// dataPathNow is the time the data path reads at this moment by its own
// formula, with the precise clock read in the same probe run.
func dataPathNow(t *testing.T, s *Shield) (est, precise uint64) {
	t.Helper()
	var zero uint32
	var c shieldClockSync
	if err := s.objs.Clock.Lookup(&zero, &c); err != nil {
		t.Fatal(err)
	}
	for {
		j, ns, err := s.probeClock()
		if err == errTickInProbe {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		return c.BaseNs + (j-c.BaseJiffies)*c.TickNs, ns
	}
}

// configHZ reads CONFIG_HZ from the running kernel's config, when present.
func configHZ() int {
	rel, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return 0
	}
	f, err := os.Open("/boot/config-" + strings.TrimSpace(string(rel)))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CONFIG_HZ="); ok {
			hz, _ := strconv.Atoi(v)
			return hz
		}
	}
	return 0
}

// TestJiffiesClockCalibration: the loader finds the kernel's tick rate and
// puts jiffies on the precise clock's line, so the data path's time trails
// the precise clock by less than a tick (plus what a loaded machine adds in
// late ticks; 250 ms of margin, scaled for slow machines, against errors of
// seconds or a wrong HZ).
func TestJiffiesClockCalibration(t *testing.T) {
	for _, mono := range []bool{false, true} {
		t.Run(fmt.Sprintf("monotonic=%v", mono), func(t *testing.T) {
			s := loadRealClock(t, Options{monotonicClock: mono}, noLimits())
			info := s.Clock()
			if info.Source != ClockJiffies || !slices.Contains(kernelHZ, info.HZ) || info.Fallback != "" {
				t.Fatalf("clock = %+v, want jiffies at a kernel HZ", info)
			}
			if want := configHZ(); want != 0 && info.HZ != want {
				t.Errorf("measured HZ %d, kernel config says %d", info.HZ, want)
			}
			if info.Resolution != time.Duration(tickNs(info.HZ)) {
				t.Errorf("resolution %v for HZ %d", info.Resolution, info.HZ)
			}
			// Late ticks are the machine's, not the calibration's: a QEMU
			// guest on a busy host trailed by 117 ms. The errors this
			// test is for are seconds, or a drift of a quarter and more.
			margin := uint64(tu.Scale(250 * time.Millisecond))
			tick := tickNs(info.HZ)
			for range 20 {
				est, precise := dataPathNow(t, s)
				if est > precise+margin || est+tick+margin < precise {
					t.Fatalf("data path time %d, precise %d: off by %v", est, precise, time.Duration(int64(est-precise)))
				}
				time.Sleep(3 * time.Millisecond)
			}
		})
	}
}

// TestClockSources: expiries written by userspace mean the same on every
// clock the data path can run on: jiffies on boot time (the default),
// jiffies on the monotonic clock (kernels before 5.8), and the precise
// helpers (kernels before 5.5).
func TestClockSources(t *testing.T) {
	for _, c := range []struct {
		name          string
		opts          Options
		source        string
		precise, mono bool
	}{
		{"jiffies", Options{}, ClockJiffies, false, false},
		{"jiffies-monotonic", Options{monotonicClock: true}, ClockJiffies, false, true},
		{"boottime", Options{preciseClock: true}, ClockBoottime, true, false},
		{"monotonic", Options{preciseClock: true, monotonicClock: true}, ClockMonotonic, true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := loadRealClock(t, c.opts, noLimits())
			if got := s.Clock().Source; got != c.source {
				t.Fatalf("clock source %q, want %q", got, c.source)
			}
			now := time.Now()
			put(t, s, Blocklist, now.Add(time.Hour), "192.0.2.1")
			put(t, s, Blocklist, now.Add(-time.Second), "192.0.2.2")
			if ret, reason, _ := run(t, s, netlab.UDP4("192.0.2.1", dst4).Bytes()); ret != xdpDrop {
				t.Errorf("entry expiring in an hour: %d %s, want a drop", ret, reason)
			}
			if ret, reason, _ := run(t, s, netlab.UDP4("192.0.2.2", dst4).Bytes()); ret != xdpPass {
				t.Errorf("entry expired a second ago: %d %s, want a pass", ret, reason)
			}
		})
	}
}

// TestClockAdoption: a new daemon adopting the pinned maps keeps the line
// the running program uses (same jiffy and tick; base_ns moves, if at all,
// by a measurement's error, not a jump); a daemon on the precise clock
// clears the line rather than read it as a frozen clock.
func TestClockAdoption(t *testing.T) {
	tu.RequireRoot(t)
	pin := tu.PinPath(t)
	var lines [2]shieldClockSync
	for i := range lines {
		s, err := Load(Options{PinPath: pin})
		if err != nil {
			t.Fatal(err)
		}
		var zero uint32
		err = s.objs.Clock.Lookup(&zero, &lines[i])
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	d := int64(lines[1].BaseNs - lines[0].BaseNs)
	if lines[1].BaseJiffies != lines[0].BaseJiffies || lines[1].TickNs != lines[0].TickNs ||
		d > int64(50*time.Millisecond) || d < -int64(50*time.Millisecond) {
		t.Errorf("adopting moved the clock line: %+v, then %+v", lines[0], lines[1])
	}

	s, err := Load(Options{PinPath: pin, preciseClock: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.SetSettings(noLimits()); err != nil {
		t.Fatal(err)
	}
	put(t, s, Blocklist, time.Now().Add(-time.Second), "192.0.2.1")
	if ret, reason, _ := run(t, s, netlab.UDP4("192.0.2.1", dst4).Bytes()); ret != xdpPass {
		t.Errorf("precise clock over an adopted line: an entry expired a second ago gives %d %s", ret, reason)
	}
}

// TestSyncClockFollowsSuspend: after a suspend boot time is ahead of
// jiffies by the time slept; SyncClock moves the line by as much, so an
// entry that expired during the sleep stops matching.
func TestSyncClockFollowsSuspend(t *testing.T) {
	s := loadRealClock(t, Options{}, noLimits())
	put(t, s, Blocklist, time.Now().Add(5*time.Second), "192.0.2.1")
	frame := netlab.UDP4("192.0.2.1", dst4).Bytes()
	if ret, reason, _ := run(t, s, frame); ret != xdpDrop {
		t.Fatalf("before the suspend: %d %s, want a drop", ret, reason)
	}
	slept := int64(time.Minute)
	orig := readBootOffsetFunc
	t.Cleanup(func() { readBootOffsetFunc = orig })
	readBootOffsetFunc = func() int64 { return orig() + slept }
	before, _ := dataPathNow(t, s)
	if err := s.SyncClock(); err != nil {
		t.Fatal(err)
	}
	after, _ := dataPathNow(t, s)
	if d := int64(after - before); d < slept-int64(time.Millisecond) || d > slept+int64(time.Second) {
		t.Errorf("the line moved by %v, want the minute slept", time.Duration(d))
	}
	if ret, reason, _ := run(t, s, frame); ret != xdpPass {
		t.Errorf("after a minute's suspend the 5 s entry still matches: %d %s", ret, reason)
	}
	// Nothing more happened: a second sync changes nothing.
	if err := s.SyncClock(); err != nil {
		t.Fatal(err)
	}
	if again, _ := dataPathNow(t, s); again-after > uint64(time.Second) {
		t.Errorf("a sync without a suspend moved the line by %v", time.Duration(again-after))
	}
}

// TestLimiterTickSlack: with the jiffies clock a bucket holds one tick's
// packets on top of its burst (the clock may trail by a tick, which would
// otherwise withhold a tick's refill); with the precise clock it holds the
// burst. Back-to-back packets show it. A run is repeated, with a fresh
// source, when it might have earned a refill: when a tick fell inside it
// (jiffies) or it lasted an interval (precise; slow under emulation).
func TestLimiterTickSlack(t *testing.T) {
	const pps = 1000
	for _, c := range []struct {
		name string
		opts Options
	}{{"jiffies", Options{}}, {"precise", Options{preciseClock: true}}} {
		t.Run(c.name, func(t *testing.T) {
			st := noLimits()
			st.UDP = Bucket{PPS: pps, Burst: 1}
			st.AutoBlockFactor = 1000
			s := loadRealClock(t, c.opts, st)
			info := s.Clock()
			want := 1
			if info.Source == ClockJiffies {
				want += int(info.Resolution / (time.Second / pps))
			}
			packets := want + 5
			for try := 0; ; try++ {
				if try == 50 {
					t.Fatal("every run might have earned a refill")
				}
				j0, ns0, err0 := s.probeClock()
				frame := netlab.UDP4(fmt.Sprintf("192.0.%d.%d", 2+try/200, 1+try%200), dst4).Bytes()
				passed := 0
				for range packets {
					ret, err := s.Program().Run(&ebpf.RunOptions{Data: frame})
					if err != nil {
						t.Fatal(err)
					}
					if ret == xdpPass {
						passed++
					}
				}
				j1, ns1, err1 := s.probeClock()
				if err0 != nil || err1 != nil || j0 != j1 {
					continue
				}
				if info.Source != ClockJiffies && ns1-ns0 >= uint64(time.Second/pps) {
					continue
				}
				if passed != want {
					t.Errorf("%d of %d back-to-back packets passed, want %d", passed, packets, want)
				}
				return
			}
		})
	}
}
