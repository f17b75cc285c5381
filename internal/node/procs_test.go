package node

import (
	"runtime"
	"testing"

	"github.com/aegis-edge/aegis/internal/config"
)

func TestProcs(t *testing.T) {
	tests := []struct {
		name                 string
		procs, workers, want int
	}{
		{"2 CPUs, a worker each", 2, 2, 1},
		{"1 CPU", 1, 1, 1},
		{"one worker keeps every P", 2, 1, 2},
		{"16 CPUs, a worker each", 16, 16, 8},
		{"more workers than CPUs", 2, 8, 1},
		{"4 CPUs, 2 workers", 4, 2, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Procs(tt.procs, tt.workers); got != tt.want {
				t.Fatalf("Procs(%d, %d) = %d, want %d", tt.procs, tt.workers, got, tt.want)
			}
		})
	}
}

func TestWorkers(t *testing.T) {
	if got := Workers(config.Functions{}); got != runtime.NumCPU() {
		t.Fatalf("default workers %d, want one per CPU (%d)", got, runtime.NumCPU())
	}
	if got := Workers(config.Functions{Workers: 3}); got != 3 {
		t.Fatalf("configured 3 workers, got %d", got)
	}
}
