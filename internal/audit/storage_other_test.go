//go:build !linux

package audit

import "testing"

// setImmutable needs the Linux inode flags: tests that use it skip elsewhere.
func setImmutable(t *testing.T, _ string, _ bool) {
	t.Helper()
	t.Skip("immutable files need Linux")
}
