package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aegis-edge/aegis/internal/bpfguard"
	"github.com/aegis-edge/aegis/internal/testutil"
)

const corpusDir = "../../internal/bpfguard/testdata"

// corpusCopy copies a bpfguard corpus object into a fresh directory, so
// that signatures written beside it stay out of the source tree.
func corpusCopy(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(corpusDir, name))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// keygen makes a key pair through the CLI and returns its path prefix.
func keygen(t *testing.T) string {
	t.Helper()
	name := filepath.Join(t.TempDir(), "ops")
	if code, _, stderr := cli("ebpf", "keygen", name); code != 0 {
		t.Fatalf("keygen: exit %d: %s", code, stderr)
	}
	return name
}

func TestEBPFSignThenVerify(t *testing.T) {
	key := keygen(t)
	if fi, err := os.Stat(key + ".key"); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("private key file: %v %v", fi, err)
	}
	obj := corpusCopy(t, "xdp_pass.o")

	// Unsigned: no digest allowed and no signature.
	code, out, _ := cli("ebpf", "verify", "--key", key+".pub", obj)
	if code != 1 || !strings.Contains(out, "violation: integrity") {
		t.Fatalf("unsigned object: exit %d\n%s", code, out)
	}

	if code, out, stderr := cli("ebpf", "sign", obj, "--key", key+".key"); code != 0 || !strings.Contains(out, obj+".sig") {
		t.Fatalf("sign: exit %d: %s %s", code, out, stderr)
	}
	// FILE.o.sig is picked up by default.
	code, out, stderr := cli("ebpf", "verify", "--key", key+".pub", obj)
	if code != 0 || !strings.Contains(out, "result: pass") {
		t.Fatalf("signed object: exit %d\n%s%s", code, out, stderr)
	}
	for _, want := range []string{"pass", "bpf_map_lookup_elem", "packets", "hash", "GPL", "signature by key"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	// Another key does not vouch for it.
	other := keygen(t)
	if code, _, _ := cli("ebpf", "verify", "--key", other+".pub", obj); code != 1 {
		t.Errorf("verified with an untrusted key: exit %d", code)
	}
	// An explicit signature that does not exist is an error, not "unsigned".
	if code, _, stderr := cli("ebpf", "verify", "--key", key+".pub", "--sig", obj+".nope", obj); code != 1 || !strings.Contains(stderr, "signature") {
		t.Errorf("missing --sig: exit %d: %s", code, stderr)
	}
	// Keys are never overwritten.
	if code, _, _ := cli("ebpf", "keygen", key); code != 1 {
		t.Errorf("keygen over an existing key: exit %d", code)
	}
}

func TestEBPFVerifyJSON(t *testing.T) {
	obj := corpusCopy(t, "probe_write_user.o")
	code, out, _ := cli("ebpf", "verify", "--json", "--digest", fileDigest(t, obj), obj)
	if code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, out)
	}
	var got struct {
		Passed     bool                 `json:"passed"`
		Digest     string               `json:"sha256"`
		Integrity  string               `json:"integrity"`
		Programs   []bpfguard.Program   `json:"programs"`
		Violations []bpfguard.Violation `json:"violations"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if got.Passed || got.Integrity != bpfguard.IntegrityDigest || got.Digest != fileDigest(t, obj) {
		t.Errorf("passed %v integrity %q digest %s", got.Passed, got.Integrity, got.Digest)
	}
	if len(got.Violations) != 1 || got.Violations[0].Check != bpfguard.CheckHelper ||
		!strings.Contains(got.Violations[0].Reason, "bpf_probe_write_user") {
		t.Errorf("violations %+v", got.Violations)
	}
	if len(got.Programs) != 1 || got.Programs[0].Helpers[0] != "bpf_probe_write_user" {
		t.Errorf("programs %+v", got.Programs)
	}
}

func fileDigest(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// TestEBPFVerifyShieldWithPolicyFile checks the shield's object against a
// policy file equivalent to the shield's policy.
func TestEBPFVerifyShieldWithPolicyFile(t *testing.T) {
	obj := "../../internal/shield/shield_bpfel.o"
	p := bpfguard.ShieldPolicy(bpfguard.DefaultShieldCaps(), fileDigest(t, obj))
	b, err := json.Marshal(p) // JSON is YAML
	if err != nil {
		t.Fatal(err)
	}
	policy := filepath.Join(t.TempDir(), "shield-policy.yaml")
	if err := os.WriteFile(policy, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, stderr := cli("ebpf", "verify", "--policy", policy, obj); code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, stderr)
	}
	// The generic default budget is smaller than the shield's maps.
	code, out, _ := cli("ebpf", "verify", "--digest", fileDigest(t, obj), obj)
	if code != 1 || !strings.Contains(out, "violation: map-memory") {
		t.Errorf("default policy: exit %d\n%s", code, out)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("helpers: [bpf_nonsense]\n"), 0o644)
	if code, _, stderr := cli("ebpf", "verify", "--policy", bad, obj); code != 1 || !strings.Contains(stderr, "bpf_nonsense") {
		t.Errorf("invalid policy: exit %d: %s", code, stderr)
	}
}

func TestEBPFVerifyKernelRejection(t *testing.T) {
	testutil.RequireRoot(t)
	obj := corpusCopy(t, "oob_read.o")
	code, out, stderr := cli("ebpf", "verify", "--kernel", "--digest", fileDigest(t, obj), obj)
	if code != 1 || !strings.Contains(out, "invalid access to packet") || !strings.Contains(stderr, "kernel verifier") {
		t.Errorf("exit %d\n%s%s", code, out, stderr)
	}
	pass := corpusCopy(t, "xdp_pass.o")
	code, out, stderr = cli("ebpf", "verify", "--kernel", "--digest", fileDigest(t, pass), pass)
	if code != 0 || !strings.Contains(out, "kernel verifier: accepted") {
		t.Errorf("exit %d\n%s%s", code, out, stderr)
	}
}

// TestEBPFExitStatus runs the real binary: 0 pass, 1 reject, 2 usage.
func TestEBPFExitStatus(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	pass := corpusCopy(t, "xdp_pass.o")
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"ebpf", "verify", "--digest", fileDigest(t, pass), pass}, 0},
		{[]string{"ebpf", "verify", filepath.Join(corpusDir, "bad_magic.o")}, 1},
		{[]string{"ebpf", "verify", filepath.Join(corpusDir, "no_such.o")}, 1},
		{[]string{"ebpf", "verify"}, 2},
		{[]string{"ebpf", "verify", pass, pass}, 2},
		{[]string{"ebpf", "verify", "--no-such-flag", pass}, 2},
		{[]string{"ebpf", "sign", pass}, 2},
		{[]string{"ebpf", "keygen"}, 2},
		{[]string{"ebpf"}, 2},
	} {
		cmd := exec.Command(self, tc.args...)
		cmd.Env = append(os.Environ(), "AEGIS_TEST_MAIN=1")
		out, err := cmd.CombinedOutput()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.want {
			t.Errorf("aegis %s: exit %d, want %d\n%s", strings.Join(tc.args, " "), code, tc.want, out)
		}
	}
}

func TestEBPFVerifyShieldFlag(t *testing.T) {
	obj := filepath.Join("..", "..", "internal", "shield", "shield_bpfel.o")
	if code, out, stderr := cli("ebpf", "verify", "--shield", obj); code != 0 || !strings.Contains(out, "result: pass") {
		t.Fatalf("verify --shield of the shield's object: exit %d\n%s%s", code, out, stderr)
	}
	// The generic default policy rejects it (its maps exceed the default budget).
	if code, _, _ := cli("ebpf", "verify", obj); code != 1 {
		t.Fatalf("verify under the default policy: exit %d, want 1", code)
	}
	if code, _, _ := cli("ebpf", "verify", "--shield", "--policy", "x.yaml", obj); code != 2 {
		t.Fatalf("--shield with --policy: exit %d, want 2", code)
	}
	tampered := filepath.Join(t.TempDir(), "tampered.o")
	raw, err := os.ReadFile(obj)
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)/2] ^= 1
	os.WriteFile(tampered, raw, 0o644)
	if code, out, _ := cli("ebpf", "verify", "--shield", tampered); code != 1 || !strings.Contains(out, "integrity") {
		t.Fatalf("tampered object under --shield: exit %d\n%s", code, out)
	}
}
