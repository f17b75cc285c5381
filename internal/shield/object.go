package shield

import (
	_ "embed"
	"strings"
)

//go:embed shield_bpfel.o.sha256
var recordedDigest string

// ObjectDigest returns the hex SHA-256 of the XDP object recorded by
// `make generate` when the object was built. Verification compares the
// embedded bytes against it, so a binary whose object was swapped or
// corrupted after generation refuses to load it.
func ObjectDigest() string { return strings.TrimSpace(recordedDigest) }
