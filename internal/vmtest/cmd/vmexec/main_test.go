//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/aegis-edge/aegis/internal/vmtest"
)

func TestBootUntilStarted(t *testing.T) {
	notStarted := fmt.Errorf("%w (%w)", vmtest.ErrNoStatus, vmtest.ErrNotStarted)
	crashed := fmt.Errorf("%w: qemu: exit status 1", vmtest.ErrNoStatus)
	tests := []struct {
		name    string
		results []error // what each boot returns, in order
		boots   int
		wantRun int
		wantErr error
	}{
		{"passes first", []error{nil}, 2, 1, nil},
		{"dies booting, then passes", []error{notStarted, nil}, 2, 2, nil},
		{"dies booting every time", []error{notStarted, notStarted, notStarted}, 2, 2, vmtest.ErrNotStarted},
		{"three boots allowed", []error{notStarted, notStarted, nil}, 3, 3, nil},
		// The test started and the guest died: the test's crash is reported,
		// never hidden by a second run.
		{"dies in the test", []error{crashed, nil}, 2, 1, vmtest.ErrNoStatus},
		{"one boot allowed", []error{notStarted, nil}, 1, 1, vmtest.ErrNotStarted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runs := 0
			var log strings.Builder
			status, err := bootUntilStarted(context.Background(), tt.boots, &log, func() (int, error) {
				err := tt.results[runs]
				runs++
				if err != nil {
					return 0, err
				}
				return 7, nil // the test's own status, passed through
			})
			if runs != tt.wantRun {
				t.Errorf("booted %d times, want %d", runs, tt.wantRun)
			}
			if tt.wantErr == nil && (err != nil || status != 7) {
				t.Errorf("got (%d, %v), want the test's status 7", status, err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
			if got := strings.Count(log.String(), "booting again"); got != tt.wantRun-1 {
				t.Errorf("told of %d boots again, want %d:\n%s", got, tt.wantRun-1, log.String())
			}
		})
	}
	// A run interrupted (SIGTERM to go test) is not booted again.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	runs := 0
	_, err := bootUntilStarted(ctx, 3, &strings.Builder{}, func() (int, error) { runs++; return 0, notStarted })
	if runs != 1 || !errors.Is(err, vmtest.ErrNotStarted) {
		t.Errorf("cancelled: booted %d times (err %v), want once", runs, err)
	}
}
