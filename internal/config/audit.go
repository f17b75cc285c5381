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

func (v *validator) audit(a Audit) {
	if a.Dir != "" {
		v.absPath("audit.dir", a.Dir)
	}
	v.sizeRange("audit.max_file_bytes", a.MaxFileBytes, MinAuditFileBytes, MaxAuditFileBytes)
}
