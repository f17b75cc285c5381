package bpfguard

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzVerify feeds arbitrary bytes to Verify, seeded with every corpus
// object: it must return a report, never panic or hang, and may pass only
// what the policy allows. The size limit bounds the memory one input can
// make the parser use.
func FuzzVerify(f *testing.F) {
	objs, err := filepath.Glob(filepath.Join("testdata", "*.o"))
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range objs {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		if len(b) <= 8<<10 { // large seeds slow every mutation down
			f.Add(b)
		}
	}
	pass, err := os.ReadFile(filepath.Join("testdata", "xdp_pass.o"))
	if err != nil {
		f.Fatal(err)
	}
	p := corpusPolicy().WithDigests(digestOf(pass))
	p.MaxObjectSize = 64 << 10
	f.Fuzz(func(t *testing.T, obj []byte) {
		r := Verify(obj, p, nil)
		if r == nil {
			t.Fatal("nil report")
		}
		if r.Passed() && digestOf(obj) != digestOf(pass) {
			t.Fatalf("an object other than the trusted one passed: %+v", r)
		}
		if len(obj) > p.MaxObjectSize && r.Passed() {
			t.Fatal("an oversized object passed")
		}
	})
}
