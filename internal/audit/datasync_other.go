//go:build !linux

package audit

import "os"

// datasync flushes f: other systems have no fdatasync, so a full sync.
func datasync(f *os.File) error { return f.Sync() }
