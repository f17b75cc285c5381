// Package timescale scales the wall-clock budgets of tests to the speed of
// the machine they run on, so that a test passes on a slow or busy machine
// (QEMU's TCG emulation is 10–100 times slower than the host, and its speed
// differs several-fold between hosts of one kind) and still fails on a hang.
//
// A budget is written for the reference machine: the CI machine class, idle,
// running the test natively, with the margin the test wants there. Scale
// multiplies it by Factor, the measured slowdown of this process against
// that machine. The factor comes from timing a fixed workload of plain Go
// code once per process, the first time it is needed; AEGIS_TEST_TIMESCALE
// fixes it instead, and AEGIS_TEST_TIMESCALE_MIN puts a floor under the
// measurement (the vmtest harness sets it in emulated guests).
//
// The package has no dependency on package testing, so that the harness
// (cmd/vmexec) can measure the host with the same workload.
package timescale

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Environment variables read by Factor.
const (
	// EnvFactor, when set to a number ≥ 1, is the factor: no calibration.
	EnvFactor = "AEGIS_TEST_TIMESCALE"
	// EnvMin is a floor under the calibrated factor (a number ≥ 1).
	EnvMin = "AEGIS_TEST_TIMESCALE_MIN"
)

// Reference is the duration of one round of the workload on the reference
// machine (the CI class: 2 vCPU AMD EPYC VM, natively, idle). The fastest of
// 900 rounds there, measured while the machine was shared, took 4.5 ms.
const Reference = 4500 * time.Microsecond

// MaxFactor bounds the factor, so that a scaled budget still ends: a test
// that needs more than a hundred times its reference budget is treated as
// hung.
const MaxFactor = 100

// rounds of the workload a calibration times, after one warm-up round
// (page faults of a fresh heap); the median is kept, which a burst of
// load during one round does not move.
const rounds = 7

// work is a fixed CPU and memory workload of plain Go code, with no
// instruction an emulator would treat specially (no SIMD, no crypto
// extensions): map updates, small allocations and a sort, the mix of a
// compiler or of a process start.
func work() uint64 {
	x := uint64(88172645463325252)
	m := make(map[uint64]uint64, 1024)
	var keep [][]byte
	s := make([]uint64, 0, 16384)
	for i := 0; i < 160_000; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		m[x%4096] += x
		if i%16 == 0 {
			b := make([]byte, 64+x%512)
			b[0] = byte(x)
			keep = append(keep, b)
			if len(keep) > 256 {
				keep = keep[:0]
			}
		}
		if len(s) < cap(s) {
			s = append(s, x)
		}
	}
	slices.Sort(s)
	return s[len(s)/2] + m[1] + uint64(len(keep))
}

// Measure times one warm-up round of the workload and then n rounds, and
// returns the n durations.
func Measure(n int) []time.Duration {
	runtime.KeepAlive(work()) // the result is used, so the work is done
	out := make([]time.Duration, n)
	for i := range out {
		start := time.Now()
		runtime.KeepAlive(work()) // the result is used, so the work is done
		out[i] = time.Since(start)
	}
	return out
}

// Calibrate measures the slowdown of this process against the reference
// machine: the median round over Reference, at least 1 and at most
// MaxFactor (not counting any floor or fixed factor from the environment).
func Calibrate() (factor float64, median time.Duration) {
	d := Measure(rounds)
	slices.Sort(d)
	median = d[len(d)/2]
	return clamp(float64(median) / float64(Reference)), median
}

func clamp(f float64) float64 {
	if math.IsNaN(f) || f < 1 {
		return 1
	}
	return min(f, MaxFactor)
}

var (
	once   = new(sync.Once)
	factor float64
	source string
)

// Factor is the process's factor, computed on the first call.
func Factor() float64 {
	once.Do(func() { factor, source = fromEnv(os.Getenv(EnvFactor), os.Getenv(EnvMin), Calibrate) })
	return factor
}

// Describe says what Factor is and where it came from, for test logs and
// failure messages.
func Describe() string {
	f := Factor()
	return fmt.Sprintf("time scale %.1f (%s)", f, source)
}

// fromEnv computes the factor from the environment's values, calling
// calibrate only when no fixed factor is given.
func fromEnv(fixed, floor string, calibrate func() (float64, time.Duration)) (float64, string) {
	if fixed != "" {
		if f, err := strconv.ParseFloat(fixed, 64); err == nil && f >= 1 {
			return min(f, MaxFactor), EnvFactor + "=" + fixed
		}
		// A bad value must not make budgets tighter than measured: calibrate.
	}
	f, median := calibrate()
	how := fmt.Sprintf("measured: %v a round, reference %v", median.Round(10*time.Microsecond), Reference)
	if fixed != "" {
		how += ", ignored " + EnvFactor + "=" + strconv.Quote(fixed)
	}
	if floor != "" {
		if m, err := strconv.ParseFloat(floor, 64); err == nil && m >= 1 {
			if m > f {
				f = min(m, MaxFactor)
				how += ", raised to " + EnvMin + "=" + floor
			}
		} else {
			how += ", ignored " + EnvMin + "=" + strconv.Quote(floor)
		}
	}
	return f, how
}

// Scale returns d times Factor.
func Scale(d time.Duration) time.Duration {
	return time.Duration(float64(d) * Factor())
}
