package testutil

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"strconv"
	"testing"
)

// InCI reports whether the tests run under continuous integration, that is
// whether the environment variable CI is set to a true value ("true", "1", ...).
// In CI a privileged test must not be skipped silently.
func InCI() bool {
	v, err := strconv.ParseBool(os.Getenv("CI"))
	return err == nil && v
}

// RequireRoot stops the test unless the process runs with effective user id 0.
// Outside CI the test is skipped; under CI (see InCI) it fails instead, so that
// a CI run without privileges cannot pass by skipping everything.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if InCI() {
		t.Fatalf("privileged test requires root (CI=true forbids skipping)")
	}
	t.Skipf("privileged test requires root (euid is %d); run as root, or set CI=true to make this a failure", os.Geteuid())
}

// PinPath returns a fresh bpffs directory name for a test's pins and removes
// whatever is pinned there when the test ends (unpinning a link detaches it).
func PinPath(t testing.TB) string {
	t.Helper()
	p := "/sys/fs/bpf/aegis-test-" + randHex(4)
	t.Cleanup(func() { os.RemoveAll(p) })
	return p
}

// randHex returns 2n random hexadecimal digits, for unique names.
func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
