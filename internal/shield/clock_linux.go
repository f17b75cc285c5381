package shield

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// The data path tells time by jiffies scaled onto the precise clock (see
// clock_sync in bpf/shield.c): the precise helper costs about 45 ns a packet
// on a 2-vCPU VM, the inlined jiffies load about 1 ns. Userspace calibrates
// the line: it times the starts of two ticks some tens of milliseconds apart
// with the aegis_clock_probe program, which reads jiffies and the precise
// clock in one run, and derives the kernel's HZ and the precise time at which
// a known jiffy began.

// kernelHZ are the tick rates Linux can be built with (CONFIG_HZ).
var kernelHZ = []int{100, 250, 300, 1000}

// tickNs is the kernel's TICK_NSEC for hz.
func tickNs(hz int) uint64 { return (uint64(time.Second) + uint64(hz)/2) / uint64(hz) }

// snapHZ returns the kernel tick rate whose tick is within 5% of perTick.
func snapHZ(perTick float64) (int, bool) {
	for _, hz := range kernelHZ {
		t := float64(tickNs(hz))
		if math.Abs(perTick-t) <= 0.05*t {
			return hz, true
		}
	}
	return 0, false
}

// errTickInProbe means jiffies advanced during one probe run.
var errTickInProbe = errors.New("jiffies advanced during the probe")

// probeClock runs aegis_clock_probe once: jiffies and the precise clock read
// together.
func (s *Shield) probeClock() (jiffies, ns uint64, err error) {
	var in, out [64]byte
	ret, err := s.objs.AegisClockProbe.Run(&ebpf.RunOptions{Data: in[:], DataOut: out[:]})
	if err != nil {
		return 0, 0, fmt.Errorf("running the clock probe: %w", err)
	}
	if ret != 2 { // XDP_PASS
		return 0, 0, fmt.Errorf("clock probe returned %d", ret)
	}
	j0 := binary.NativeEndian.Uint64(out[0:])
	ns = binary.NativeEndian.Uint64(out[8:])
	if j0 != binary.NativeEndian.Uint64(out[16:]) {
		return 0, 0, errTickInProbe
	}
	return j0, ns, nil
}

// tickEdge is the start of a tick as userspace saw it: the first probe run
// that read jiffy j, the precise time of that run, and how long before it
// the previous run still read j-1 (the uncertainty of ns).
type tickEdge struct {
	j, ns, gap uint64
}

// findEdge probes until jiffies advance and returns the edge with the
// smallest gap out of a few tries: a run that was preempted or delayed
// around the edge leaves a wide gap.
func (s *Shield) findEdge() (tickEdge, error) {
	const goodGap = 200 * uint64(time.Microsecond)
	best := tickEdge{gap: math.MaxUint64}
	for try := 0; try < 5 && best.gap > goodGap; try++ {
		e, err := s.nextEdge()
		if err != nil {
			return tickEdge{}, err
		}
		if e.gap < best.gap {
			best = e
		}
	}
	return best, nil
}

func (s *Shield) nextEdge() (tickEdge, error) {
	// Ticks are at most 10 ms apart; the margin is for a starved process.
	deadline := time.Now().Add(5 * time.Second)
	var lastJ, lastNs uint64
	for first := true; time.Now().Before(deadline); {
		j, ns, err := s.probeClock()
		if errors.Is(err, errTickInProbe) {
			first = true // the edge fell inside the run: no clean pair
			continue
		}
		if err != nil {
			return tickEdge{}, err
		}
		if !first && j != lastJ {
			return tickEdge{j: j, ns: ns, gap: ns - lastNs}, nil
		}
		first = false
		lastJ, lastNs = j, ns
	}
	return tickEdge{}, errors.New("saw no tick edge in 5 s (jiffies did not advance, or this process did not run)")
}

// calibrateClock measures the tick and writes clock_sync. A line calibrated
// earlier (a previous daemon's, in the pinned map) with the same tick is
// kept when it still agrees within a millisecond, so adopting never moves
// the data path's clock; otherwise only base_ns is rewritten, one aligned
// word, so the running program never reads a half-written line.
func (s *Shield) calibrateClock() error {
	span := 50 * time.Millisecond
	var (
		e1, e2 tickEdge
		hz     int
		err    error
	)
	for ; ; span *= 4 {
		if e1, err = s.findEdge(); err != nil {
			return err
		}
		time.Sleep(span)
		if e2, err = s.findEdge(); err != nil {
			return err
		}
		perTick := float64(e2.ns-e1.ns) / float64(e2.j-e1.j)
		var ok bool
		if hz, ok = snapHZ(perTick); ok {
			break
		}
		if span >= 800*time.Millisecond {
			return fmt.Errorf("cannot tell the kernel's tick rate: %.0f ns per jiffy is not 1/HZ for HZ in %v", perTick, kernelHZ)
		}
	}
	tick := tickNs(hz)
	var zero uint32
	var cur shieldClockSync
	if err := s.objs.Clock.Lookup(&zero, &cur); err != nil {
		return fmt.Errorf("reading clock_sync: %w", err)
	}
	next := shieldClockSync{BaseNs: e2.ns, BaseJiffies: e2.j, TickNs: tick}
	if cur.TickNs == tick && cur.BaseJiffies <= e2.j {
		next.BaseJiffies = cur.BaseJiffies
		next.BaseNs = e2.ns - (e2.j-cur.BaseJiffies)*tick
		if d := int64(next.BaseNs - cur.BaseNs); d < int64(time.Millisecond) && d > -int64(time.Millisecond) {
			next.BaseNs = cur.BaseNs
		}
	}
	if next != cur {
		// A line that changes more than base_ns is written in two steps,
		// so a program reading it meanwhile sees either the old line, or
		// base_ns = 0 (the precise helper), or the new one — never a new
		// base_ns on an old base_jiffies.
		if next.BaseJiffies != cur.BaseJiffies || next.TickNs != cur.TickNs {
			if err := s.writeLine(shieldClockSync{BaseJiffies: next.BaseJiffies, TickNs: next.TickNs}); err != nil {
				return err
			}
		}
		if err := s.writeLine(next); err != nil {
			return err
		}
	}
	s.line = next
	s.clockHZ = hz
	s.bootOffset = s.readBootOffset()
	return nil
}

// writeLine writes the clock_sync entry the data path reads.
func (s *Shield) writeLine(l shieldClockSync) error {
	var zero uint32
	if err := s.objs.Clock.Update(&zero, &l, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("writing clock_sync: %w", err)
	}
	return nil
}

// readBootOffsetFunc is CLOCK_BOOTTIME - CLOCK_MONOTONIC: the time spent
// in suspend, which jiffies (on the monotonic clock) do not count. Tests
// replace it to stand for a suspend.
// The offset is read between two monotonic readings, and the tightest of a
// few tries is kept, so a preemption between the calls does not pass for a
// suspend.
var readBootOffsetFunc = func() int64 {
	best, bestSpan := int64(0), int64(-1)
	for range 5 {
		var m0, boot, m1 unix.Timespec
		unix.ClockGettime(unix.CLOCK_MONOTONIC, &m0)
		unix.ClockGettime(unix.CLOCK_BOOTTIME, &boot)
		unix.ClockGettime(unix.CLOCK_MONOTONIC, &m1)
		span := m1.Nano() - m0.Nano()
		if bestSpan < 0 || span < bestSpan {
			best, bestSpan = boot.Nano()-(m0.Nano()+span/2), span
		}
	}
	return best
}

func (s *Shield) readBootOffset() int64 {
	if s.mono {
		return 0 // the line is on CLOCK_MONOTONIC already
	}
	return readBootOffsetFunc()
}

// SyncClock keeps the data path's jiffies clock on CLOCK_BOOTTIME across a
// suspend: jiffies stop while the machine sleeps and boot time does not, so
// the line moves by the time slept. The node calls it on every sweep; it
// reads two clocks and writes nothing unless the machine slept.
func (s *Shield) SyncClock() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.clockHZ == 0 || s.mono || s.frozen != 0 {
		return nil
	}
	// Boot time only ever gains on the monotonic clock; a smaller or
	// tiny difference is reading noise, not a suspend.
	off := s.readBootOffset()
	d := off - s.bootOffset
	if d < int64(time.Millisecond) {
		return nil
	}
	c := s.line
	c.BaseNs = uint64(int64(c.BaseNs) + d)
	if err := s.writeLine(c); err != nil {
		return err
	}
	s.line = c
	s.bootOffset = off
	return nil
}

// Clock reports how the data path tells time.
func (s *Shield) Clock() ClockInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.clockHZ != 0 {
		return ClockInfo{Source: ClockJiffies, HZ: s.clockHZ, Resolution: time.Duration(tickNs(s.clockHZ))}
	}
	info := ClockInfo{Source: ClockBoottime, Resolution: time.Nanosecond, Fallback: s.clockFallback}
	if s.mono {
		info.Source = ClockMonotonic
	}
	return info
}
