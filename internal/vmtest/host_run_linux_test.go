package vmtest

import (
	"slices"
	"strings"
	"testing"
)

func TestCopyUntilMarker(t *testing.T) {
	const token = "0123abcd"
	start := startLine(token) + "\n"
	tests := []struct {
		name    string
		in      string
		out     string
		status  int
		started bool
		found   bool
	}{
		{"pass", start + "=== RUN x\nok\n" + marker(token, 0) + "\n", "=== RUN x\nok\n", 0, true, true},
		{"fail", start + "FAIL\n" + marker(token, 1) + "\n", "FAIL\n", 1, true, true},
		{"trailing output dropped", start + "x\n" + marker(token, 2) + "\nkernel noise\n", "x\n", 2, true, true},
		{"another token is output", startLine("ffff") + "\n" + marker("ffff", 0) + "\n", startLine("ffff") + "\n" + marker("ffff", 0) + "\n", 0, false, false},
		{"crash in the test", start + "partial line", "partial line", 0, true, false},
		{"crash before the test", "vmtest guest: loading veth\n", "vmtest guest: loading veth\n", 0, false, false},
		{"setup failed", "vmtest guest: no plan\n" + marker(token, 125) + "\n", "vmtest guest: no plan\n", 125, false, true},
		// The test printing the start line again is its own output.
		{"start line twice", start + start + "ok\n" + marker(token, 0) + "\n", start + "ok\n", 0, true, true},
		{"carriage return", startLine(token) + "\r\na\r\n" + marker(token, 0) + "\r\n", "a\r\n", 0, true, true},
		{"bad status", start + markerPrefix + token + " x\n", markerPrefix + token + " x\n", 0, true, false},
	}
	for _, tt := range tests {
		var out strings.Builder
		end, err := copyUntilMarker(&out, strings.NewReader(tt.in), token)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
		}
		want := guestEnd{started: tt.started, found: tt.found, status: tt.status}
		if out.String() != tt.out || end != want {
			t.Errorf("%s: got (%q, %+v), want (%q, %+v)", tt.name, out.String(), end, tt.out, want)
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
