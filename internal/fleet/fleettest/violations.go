package fleettest

import (
	"context"
	"log/slog"
	"strings"
	"sync"
)

// Violations is a slog handler for an embedded server's log
// (hub.Options.Logger) that keeps its permission violations: tests that
// run clients under bus accounts assert there were none.
type Violations struct {
	mu    sync.Mutex
	lines []string
}

// Enabled implements slog.Handler.
func (v *Violations) Enabled(context.Context, slog.Level) bool { return true }

// Handle implements slog.Handler.
func (v *Violations) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "Permissions Violation") {
		v.mu.Lock()
		v.lines = append(v.lines, r.Message)
		v.mu.Unlock()
	}
	return nil
}

// WithAttrs implements slog.Handler.
func (v *Violations) WithAttrs([]slog.Attr) slog.Handler { return v }

// WithGroup implements slog.Handler.
func (v *Violations) WithGroup(string) slog.Handler { return v }

// Lines returns the violations logged so far.
func (v *Violations) Lines() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]string(nil), v.lines...)
}
