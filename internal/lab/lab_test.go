//go:build linux

package lab

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aegis-edge/aegis/internal/netlab"
	"github.com/aegis-edge/aegis/internal/testutil"
)

// TestRunTearsDownWhenTheNodeFails gives the lab a "node" that exits at
// once: Run reports it and removes the namespaces and the directory it had
// already made.
func TestRunTearsDownWhenTheNodeFails(t *testing.T) {
	testutil.RequireRoot(t)
	var out bytes.Buffer
	sum, err := Run(context.Background(), Options{Executable: "/bin/false", Duration: time.Second, Rates: DefaultRates(), Out: &out})
	if err == nil || !strings.Contains(err.Error(), "exited while starting") {
		t.Fatalf("Run with a failing node: %v", err)
	}
	if !ValidID(sum.ID) || !strings.Contains(out.String(), "aegis lab "+sum.ID) {
		t.Fatalf("summary ID %q, output %q", sum.ID, out.String())
	}
	n := NamesFor(sum.ID)
	t.Cleanup(func() { Clean(sum.ID) })
	for _, p := range []string{filepath.Join(netlab.RunDir, n.Edge), filepath.Join(netlab.RunDir, n.Attacker), filepath.Join(netlab.RunDir, n.Client), n.Dir, n.PinPath} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s remains (%v)", p, err)
		}
	}
}

// TestRunFleetTearsDownWhenTheHubFails: a fleet lab whose hub exits at
// once removes the namespaces, the directory (the operator key in it) and
// the pins it had made.
func TestRunFleetTearsDownWhenTheHubFails(t *testing.T) {
	testutil.RequireRoot(t)
	var out bytes.Buffer
	sum, err := Run(context.Background(), Options{Executable: "/bin/false", Duration: time.Second, Rates: DefaultRates(), Out: &out, Fleet: true})
	if err == nil || !strings.Contains(err.Error(), "hub exited while starting") {
		t.Fatalf("Run with a failing hub: %v", err)
	}
	n := NamesFor(sum.ID)
	t.Cleanup(func() { Clean(sum.ID) })
	for _, ns := range n.Namespaces() {
		if _, err := os.Stat(filepath.Join(netlab.RunDir, ns)); !os.IsNotExist(err) {
			t.Errorf("namespace %s remains (%v)", ns, err)
		}
	}
	for _, p := range []string{n.Dir, n.PinPath} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s remains (%v)", p, err)
		}
	}
}

func TestRunRefusesNoDuration(t *testing.T) {
	if _, err := Run(context.Background(), Options{Executable: "/bin/false", Out: &bytes.Buffer{}}); err == nil {
		t.Fatal("Run without a duration succeeded")
	}
}
