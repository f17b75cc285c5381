package timescale

import (
	"strings"
	"sync"
	"testing"
	"time"
)

func TestFromEnv(t *testing.T) {
	measured := func(f float64) func() (float64, time.Duration) {
		return func() (float64, time.Duration) { return f, time.Duration(f * float64(Reference)) }
	}
	noCalibration := func() (float64, time.Duration) {
		t.Error("calibrated although the factor was fixed")
		return 1, Reference
	}
	tests := []struct {
		name, fixed, floor string
		calibrate          func() (float64, time.Duration)
		want               float64
		source             string
	}{
		{"measured", "", "", measured(3.5), 3.5, "measured"},
		{"fixed", "7", "", noCalibration, 7, EnvFactor + "=7"},
		{"fixed over the bound", "1000", "", noCalibration, MaxFactor, EnvFactor},
		{"fixed below 1 is ignored", "0.5", "", measured(2), 2, "ignored " + EnvFactor},
		{"fixed garbage is ignored", "fast", "", measured(2), 2, "ignored " + EnvFactor},
		{"floor raises", "", "10", measured(2), 10, "raised to " + EnvMin},
		{"floor below the measurement", "", "10", measured(40), 40, "measured"},
		{"floor over the bound", "", "500", measured(2), MaxFactor, EnvMin},
		{"floor garbage is ignored", "", "x", measured(2), 2, "ignored " + EnvMin},
		{"fixed wins over the floor", "3", "10", noCalibration, 3, EnvFactor},
	}
	for _, tt := range tests {
		got, source := fromEnv(tt.fixed, tt.floor, tt.calibrate)
		if got != tt.want || !strings.Contains(source, tt.source) {
			t.Errorf("%s: factor %v (%s), want %v (%q)", tt.name, got, source, tt.want, tt.source)
		}
	}
}

func TestClamp(t *testing.T) {
	for in, want := range map[float64]float64{0: 1, 0.3: 1, 1: 1, 2.5: 2.5, MaxFactor: MaxFactor, 1e9: MaxFactor} {
		if got := clamp(in); got != want {
			t.Errorf("clamp(%v) = %v, want %v", in, got, want)
		}
	}
}

// TestCalibrate: the factor is the median round over the reference, within
// [1, MaxFactor].
func TestCalibrate(t *testing.T) {
	f, median := Calibrate()
	if f < 1 || f > MaxFactor {
		t.Fatalf("factor %v out of [1, %d]", f, MaxFactor)
	}
	if want := clamp(float64(median) / float64(Reference)); f != want {
		t.Errorf("factor %v for a median round of %v, want %v", f, median, want)
	}
	if median <= 0 {
		t.Errorf("median round %v", median)
	}
	t.Logf("factor %.2f, median round %v", f, median)
}

func TestScale(t *testing.T) {
	reset := func() { once, factor, source = new(sync.Once), 0, "" }
	reset()
	t.Cleanup(reset)
	t.Setenv(EnvFactor, "4")
	if got := Scale(250 * time.Millisecond); got != time.Second {
		t.Errorf("Scale(250ms) with factor 4 = %v", got)
	}
	if d := Describe(); !strings.Contains(d, "4.0") || !strings.Contains(d, EnvFactor) {
		t.Errorf("Describe() = %q", d)
	}
}
