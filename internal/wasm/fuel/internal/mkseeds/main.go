// Command mkseeds writes the seed corpus of FuzzInstrument: one file per
// small module in the testdata directory, in the go test fuzz format.
//
// Usage: mkseeds TESTDATA OUTDIR
package main

import (
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
)

// maxSeed leaves out modules too large to mutate usefully (the C and Go
// programs, whose bulk is opaque debug and data sections).
const maxSeed = 32 << 10

func main() {
	if len(os.Args) != 3 {
		log.Fatal("usage: mkseeds TESTDATA OUTDIR")
	}
	files, err := filepath.Glob(filepath.Join(os.Args[1], "*.wasm"))
	if err != nil {
		log.Fatal(err)
	}
	if err := os.MkdirAll(os.Args[2], 0o755); err != nil {
		log.Fatal(err)
	}
	for _, file := range files {
		bin, err := os.ReadFile(file)
		if err != nil {
			log.Fatal(err)
		}
		if len(bin) > maxSeed {
			continue
		}
		seed := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", bin)
		name := strings.TrimSuffix(filepath.Base(file), ".wasm")
		if err := os.WriteFile(filepath.Join(os.Args[2], name), []byte(seed), 0o644); err != nil {
			log.Fatal(err)
		}
	}
}
