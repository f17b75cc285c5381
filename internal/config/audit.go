package config

import "path/filepath"

// Audit configures the tamper-evident audit log.
type Audit struct {
	// Dir holds the audit log; absolute. Empty means "audit" under
	// StateDir; see [Config.AuditDir].
	Dir string `yaml:"dir"`
	// MaxFileBytes is the size at which the log continues in a new file.
	MaxFileBytes Size `yaml:"max_file_bytes"`
}

// Bounds on the audit log's file size. A file smaller than a few records
// would rotate on every write; one larger than 1GiB is slow to verify on
// every node start.
const (
	MinAuditFileBytes = 4 << 10
	MaxAuditFileBytes = 1 << 30
)

func defaultAudit() Audit { return Audit{MaxFileBytes: 16 << 20} }

// AuditDir returns the directory of the node's audit log: Audit.Dir when
// set, otherwise StateDir/audit.
func (c Config) AuditDir() string {
	if c.Audit.Dir != "" {
		return c.Audit.Dir
	}
	return filepath.Join(c.StateDir, "audit")
}

// AuditAnchor returns the file, in StateDir and so outside the audit
// log's directory, that keeps the sequence number and hash of the log's
// last record: emptying or replacing the log directory does not remove it.
func (c Config) AuditAnchor() string {
	return filepath.Join(c.StateDir, "audit.anchor")
}

func (v *validator) audit(a Audit, stateDir string) {
	if a.Dir != "" && v.absPath("audit.dir", a.Dir) {
		// The anchor lives in state_dir: the log's directory must not
		// hold it.
		if rel, err := filepath.Rel(filepath.Clean(a.Dir), filepath.Clean(stateDir)); err == nil && filepath.IsLocal(rel) {
			v.addf("audit.dir", "must not be state_dir or hold it (the audit anchor lives in state_dir), got %q", a.Dir)
		}
	}
	v.sizeRange("audit.max_file_bytes", a.MaxFileBytes, MinAuditFileBytes, MaxAuditFileBytes)
}
