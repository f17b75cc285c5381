// Command mkcorpus builds bpfguard's test corpus in testdata/: it compiles
// every testdata/src/*.c with clang into testdata/NAME.o, then derives the
// structurally broken objects (truncated, wrong magic, 32-bit, big-endian,
// wrong machine, section past the end) and the integrity cases (a tampered
// object, a signature from an untrusted key) from xdp_pass.o by patching
// bytes. Everything it writes is byte-reproducible: the compiler runs with
// relative paths and no ident string, DWARF is stripped (BTF stays), and the
// untrusted key comes from a fixed seed.
//
// Run it from the bpfguard package directory (go generate does).
package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"debug/elf"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

func main() {
	if err := run("testdata"); err != nil {
		fmt.Fprintf(os.Stderr, "mkcorpus: %v\n", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	sources, err := filepath.Glob(filepath.Join(dir, "src", "*.c"))
	if err != nil {
		return err
	}
	for _, src := range sources {
		name := strings.TrimSuffix(filepath.Base(src), ".c")
		if err := compile(filepath.Join(dir, "src"), name); err != nil {
			return err
		}
	}
	base, err := os.ReadFile(filepath.Join(dir, "xdp_pass.o"))
	if err != nil {
		return err
	}
	for name, patch := range derived {
		obj := bytes.Clone(base)
		if obj, err = patch(obj); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".o"), obj, 0o644); err != nil {
			return err
		}
	}
	// bad_signature.o is xdp_pass.o itself, signed by a key nobody trusts.
	if err := os.WriteFile(filepath.Join(dir, "bad_signature.o"), base, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "bad_signature.o.sig"), untrustedSignature(base), 0o644)
}

// compile builds src/NAME.c into NAME.o beside src/. It runs inside src/ so
// that no absolute path reaches the object.
func compile(srcDir, name string) error {
	out := filepath.Join("..", name+".o")
	clang := exec.Command("clang", "-target", "bpfel", "-O2", "-g", "-Wall", "-Werror",
		"-fno-ident", "-fdebug-compilation-dir", ".",
		"-I/usr/include/x86_64-linux-gnu", "-I/usr/include/aarch64-linux-gnu",
		"-c", name+".c", "-o", out)
	clang.Dir = srcDir
	if b, err := clang.CombinedOutput(); err != nil {
		return fmt.Errorf("compiling %s.c: %w\n%s", name, err, b)
	}
	strip := exec.Command("llvm-strip", "-g", out)
	strip.Dir = srcDir
	if b, err := strip.CombinedOutput(); err != nil {
		return fmt.Errorf("stripping %s.o: %w\n%s", name, err, b)
	}
	return nil
}

// Byte offsets in the ELF64 header.
const (
	offClass   = 4  // e_ident[EI_CLASS]
	offData    = 5  // e_ident[EI_DATA]
	offMachine = 18 // e_machine
	offShoff   = 40 // e_shoff
)

var derived = map[string]func([]byte) ([]byte, error){
	// truncated: the second half of the file, section headers included, is gone.
	"truncated": func(b []byte) ([]byte, error) { return b[:len(b)/2], nil },
	"bad_magic": func(b []byte) ([]byte, error) {
		copy(b, "\x7fELG")
		return b, nil
	},
	"elf32": func(b []byte) ([]byte, error) {
		b[offClass] = byte(elf.ELFCLASS32)
		return b, nil
	},
	"big_endian": func(b []byte) ([]byte, error) {
		b[offData] = byte(elf.ELFDATA2MSB)
		return b, nil
	},
	"wrong_machine": func(b []byte) ([]byte, error) {
		binary.LittleEndian.PutUint16(b[offMachine:], uint16(elf.EM_X86_64))
		return b, nil
	},
	// section_past_end: the program section's contents start beyond the end
	// of the file, while the section header table itself is intact.
	"section_past_end": func(b []byte) ([]byte, error) {
		hdr, err := sectionHeader(b, "xdp")
		if err != nil {
			return nil, err
		}
		binary.LittleEndian.PutUint64(b[hdr+24:], uint64(len(b))+4096) // sh_offset
		return b, nil
	},
	// digest_mismatch: the program's "return XDP_PASS" turned into
	// "return XDP_DROP", the tampering a recorded digest exists to catch.
	"digest_mismatch": func(b []byte) ([]byte, error) {
		f, err := elf.NewFile(bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		sec := f.Section("xdp")
		if sec == nil {
			return nil, fmt.Errorf("no xdp section")
		}
		movR0Pass := []byte{0xb7, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00} // r0 = 2 (XDP_PASS)
		code := b[sec.Offset : sec.Offset+sec.Size]
		at := bytes.Index(code, movR0Pass)
		if at < 0 || at%8 != 0 {
			return nil, fmt.Errorf("no aligned \"r0 = XDP_PASS\" in the xdp section")
		}
		code[at+4] = 0x01 // XDP_DROP
		return b, nil
	},
}

// sectionHeader returns the file offset of the named section's header.
func sectionHeader(b []byte, name string) (int, error) {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return 0, err
	}
	shoff := int(binary.LittleEndian.Uint64(b[offShoff:]))
	for i, s := range f.Sections {
		if s.Name == name {
			return shoff + i*64, nil
		}
	}
	return 0, fmt.Errorf("no section %q", name)
}

// untrustedSignature signs obj in bpfguard's signature format (see
// bpfguard.Sign) with a key derived from a fixed seed, which no test trusts.
// The format is restated here rather than imported so that the generator
// never depends on the package it produces test data for.
func untrustedSignature(obj []byte) []byte {
	seed := sha256.Sum256([]byte("aegis bpfguard corpus: untrusted key"))
	key := ed25519.NewKeyFromSeed(seed[:])
	digest := sha256.Sum256(obj)
	msg := append([]byte("aegis-ebpf-object-v1\x00"), digest[:]...)
	return []byte(base64.StdEncoding.EncodeToString(ed25519.Sign(key, msg)) + "\n")
}
