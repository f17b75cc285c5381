package main

import (
	"encoding/json"
	"runtime"
	"strings"
	"testing"

	"github.com/aegis-edge/aegis/internal/shield"
)

func TestVersion(t *testing.T) {
	code, out, _ := cli("version", "--json")
	var v versionInfo
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil {
		t.Fatalf("version --json: exit %d %q", code, out)
	}
	if v.Go != runtime.Version() || v.ShieldObject != shield.ObjectDigest() || len(v.ShieldObject) != 64 {
		t.Errorf("version info %+v", v)
	}
	if code, out, _ := cli("version"); code != 0 || !strings.HasPrefix(out, "aegis ") || !strings.Contains(out, "sha256:"+shield.ObjectDigest()) {
		t.Errorf("version: exit %d %q", code, out)
	}
	if code, _, _ := cli("version", "extra"); code != 2 {
		t.Errorf("version with an argument: exit %d, want 2", code)
	}
}
