package bpfguard_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"

	"github.com/aegis-edge/aegis/internal/bpfguard"
)

// A loader verifies the object's bytes, and only then parses and loads them.
func ExampleVerify() {
	obj, err := os.ReadFile("testdata/trace_printk.o")
	if err != nil {
		panic(err)
	}
	sum := sha256.Sum256(obj)
	p := bpfguard.DefaultPolicy().WithDigests(hex.EncodeToString(sum[:]))
	r := bpfguard.Verify(obj, p, nil)
	fmt.Println("passed:", r.Passed(), "integrity:", r.Integrity)
	for _, v := range r.Violations {
		fmt.Println(v)
	}
	// Output:
	// passed: false integrity: digest
	// helper: chatty: calls helper bpf_trace_printk, which is not allowed
}
