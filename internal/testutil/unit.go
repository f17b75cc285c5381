package testutil

import (
	"os"
	"strings"
	"testing"
)

// UnitSettings reads a systemd unit file into its settings, key to every
// value it is given (comments and section headers skipped), for the tests
// that bind deploy/*.service to what the daemons need.
func UnitSettings(t testing.TB, path string) map[string][]string {
	t.Helper()
	unit, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string][]string{}
	for line := range strings.Lines(string(unit)) {
		line = strings.TrimSpace(line)
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			settings[k] = append(settings[k], v)
		}
	}
	return settings
}
