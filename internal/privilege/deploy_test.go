package privilege

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/aegis-edge/aegis/internal/testutil"
)

// The unit and the security document must grant and list exactly what
// Required asks for on the kernels the unit targets (5.8 and later, bpffs
// mounted by systemd).
func TestServiceUnitGrantsTheDocumentedSet(t *testing.T) {
	var want []string
	for _, n := range append((Kernel{LastCap: CapBPF, BPFFSMounted: true}).Required(), WorkerNeeds()...) {
		want = append(want, n.Cap.String())
	}
	slices.Sort(want)

	settings := testutil.UnitSettings(t, "../../deploy/aegis.service")
	for _, key := range []string{"CapabilityBoundingSet", "AmbientCapabilities"} {
		vals := settings[key]
		if len(vals) != 1 {
			t.Errorf("%s set %d times, want once", key, len(vals))
			continue
		}
		got := strings.Fields(vals[0])
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s=%s, want exactly %v", key, vals[0], want)
		}
	}
	for _, key := range []string{"NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp", "SystemCallArchitectures", "LockPersonality"} {
		if len(settings[key]) == 0 {
			t.Errorf("unit does not set %s", key)
		}
	}
	if mdwe := settings["MemoryDenyWriteExecute"]; len(mdwe) > 0 && mdwe[0] == "yes" {
		t.Error("MemoryDenyWriteExecute=yes stops wazero's compiler")
	}
	// The hard memlock limit is the ceiling RaiseMemlock works within.
	lim := settings["LimitMEMLOCK"]
	if len(lim) != 1 {
		t.Fatalf("LimitMEMLOCK set %d times, want once", len(lim))
	}
	_, hard, ok := strings.Cut(lim[0], ":")
	mib, err := strconv.ParseUint(strings.TrimSuffix(hard, "M"), 10, 64)
	if !ok || err != nil || mib<<20 != MemlockCeiling {
		t.Errorf("LimitMEMLOCK=%s, want a hard limit of %s", lim[0], formatBytes(MemlockCeiling))
	}

	doc, err := os.ReadFile("../../docs/SECURITY.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, _ := strings.Cut(string(doc), "## Required capabilities")
	section, _, _ = strings.Cut(section, "\n## ")
	for _, c := range want {
		if !strings.Contains(section, "| `"+c+"` |") {
			t.Errorf("docs/SECURITY.md has no table row for %s under Required capabilities", c)
		}
	}
}
