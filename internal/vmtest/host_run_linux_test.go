package vmtest

import (
	"slices"
	"strings"
	"testing"
)

func TestCopyUntilMarker(t *testing.T) {
	const token = "0123abcd"
	tests := []struct {
		name   string
		in     string
		out    string
		status int
		found  bool
	}{
		{"pass", "=== RUN x\nok\n" + marker(token, 0) + "\n", "=== RUN x\nok\n", 0, true},
		{"fail", "FAIL\n" + marker(token, 1) + "\n", "FAIL\n", 1, true},
		{"trailing output dropped", "x\n" + marker(token, 2) + "\nkernel noise\n", "x\n", 2, true},
		{"another token is output", marker("ffff", 0) + "\n", marker("ffff", 0) + "\n", 0, false},
		{"crash", "partial line", "partial line", 0, false},
		{"carriage return", "a\r\n" + marker(token, 0) + "\r\n", "a\r\n", 0, true},
		{"bad status", markerPrefix + token + " x\n", markerPrefix + token + " x\n", 0, false},
	}
	for _, tt := range tests {
		var out strings.Builder
		status, found, err := copyUntilMarker(&out, strings.NewReader(tt.in), token)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
		}
		if out.String() != tt.out || status != tt.status || found != tt.found {
			t.Errorf("%s: got (%q, %d, %v), want (%q, %d, %v)", tt.name, out.String(), status, found, tt.out, tt.status, tt.found)
		}
	}
}

func TestGuestEnv(t *testing.T) {
	got := guestEnv([]string{"CI=false", "X=1"})
	want := []string{"CI=false", "X=1", "PATH=/bin", "HOME=/root", "TMPDIR=/tmp", "AEGIS_TEST_TIMESCALE_MIN=10"}
	if !slices.Equal(got, want) {
		t.Errorf("guestEnv: %v, want %v (an explicit CI wins)", got, want)
	}
	// A floor given by the caller wins over the emulation's.
	got = guestEnv([]string{"AEGIS_TEST_TIMESCALE_MIN=3"})
	if slices.Contains(got, "AEGIS_TEST_TIMESCALE_MIN=10") || !slices.Contains(got, "AEGIS_TEST_TIMESCALE_MIN=3") {
		t.Errorf("guestEnv with a floor: %v", got)
	}
	if got := guestEnv(nil); !slices.Contains(got, "CI=true") {
		t.Errorf("guestEnv(nil) = %v lacks CI=true", got)
	}
}
