package bpfguard

import (
	"bufio"
	"crypto/ed25519"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/aegis-edge/aegis/internal/keyfile"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

func readCorpus(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func testKey(t testing.TB) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := keyfile.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

// corpusPolicy is DefaultPolicy with the shield's instruction limit.
func corpusPolicy() Policy {
	p := DefaultPolicy()
	p.MaxInstructions = 4096
	return p
}

// TestCorpus checks that every corpus object fails exactly the check it was
// built to fail. Objects that are not about integrity are signed with a
// trusted key, so that integrity does not mask or add to their reason.
func TestCorpus(t *testing.T) {
	pub, priv := testKey(t)
	tests := []struct {
		file string
		// sign: sign with the trusted key; otherwise FILE.sig is used if present.
		sign bool
		// recorded: a file whose digest the policy allows.
		recorded string
		want     []string // exactly these checks fail, none when empty
	}{
		{file: "xdp_pass.o", sign: true},
		{file: "xdp_pass.o", recorded: "xdp_pass.o"},
		{file: "truncated.o", sign: true, want: []string{CheckTruncated}},
		{file: "bad_magic.o", sign: true, want: []string{CheckMagic}},
		{file: "elf32.o", sign: true, want: []string{CheckClass}},
		{file: "big_endian.o", sign: true, want: []string{CheckEndian}},
		{file: "wrong_machine.o", sign: true, want: []string{CheckMachine}},
		{file: "section_past_end.o", sign: true, want: []string{CheckSections}},
		{file: "kprobe.o", sign: true, want: []string{CheckProgramType}},
		{file: "probe_write_user.o", sign: true, want: []string{CheckHelper}},
		{file: "trace_printk.o", sign: true, want: []string{CheckHelper}},
		{file: "too_many_insns.o", sign: true, want: []string{CheckInstructions}},
		{file: "prog_array.o", sign: true, want: []string{CheckMapType}},
		{file: "max_entries.o", sign: true, want: []string{CheckMaxEntries}},
		{file: "proprietary.o", sign: true, want: []string{CheckLicense}},
		{file: "digest_mismatch.o", recorded: "xdp_pass.o", want: []string{CheckIntegrity}},
		{file: "bad_signature.o", want: []string{CheckIntegrity}},
		// The kernel refuses this one; the static checks cannot tell.
		{file: "oob_read.o", sign: true},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			obj := readCorpus(t, tc.file)
			p := corpusPolicy().WithPublicKeys(pub)
			if tc.recorded != "" {
				p = p.WithDigests(digestOf(readCorpus(t, tc.recorded)))
			}
			var sig []byte
			if tc.sign {
				sig = Sign(obj, priv)
			} else if b, err := os.ReadFile(filepath.Join("testdata", tc.file+".sig")); err == nil {
				sig = b
			}
			r := Verify(obj, p, sig)
			if got := r.Checks(); !slices.Equal(got, tc.want) {
				t.Fatalf("failed checks %q, want %q; violations: %v", got, tc.want, r.Violations)
			}
			if r.Passed() != (len(tc.want) == 0) || (r.Err() == nil) != r.Passed() {
				t.Fatalf("Passed() = %v, Err() = %v with violations %v", r.Passed(), r.Err(), r.Violations)
			}
			if r.Digest != digestOf(obj) {
				t.Errorf("digest %s, want %s", r.Digest, digestOf(obj))
			}
		})
	}
}

func TestReportDescribesObject(t *testing.T) {
	pub, priv := testKey(t)
	obj := readCorpus(t, "xdp_pass.o")
	r := Verify(obj, corpusPolicy().WithPublicKeys(pub), Sign(obj, priv))
	if !r.Passed() {
		t.Fatal(r.Err())
	}
	if r.Integrity != IntegritySignature || r.SignedBy != keyfile.KeyID(pub) {
		t.Errorf("integrity %q by %q, want signature by %s", r.Integrity, r.SignedBy, keyfile.KeyID(pub))
	}
	if r.License != "GPL" || r.Size != len(obj) {
		t.Errorf("license %q size %d", r.License, r.Size)
	}
	if len(r.Programs) != 1 {
		t.Fatalf("programs %+v, want one", r.Programs)
	}
	prog := r.Programs[0]
	if prog.Name != "pass" || prog.Section != "xdp" || prog.Type != "xdp" ||
		!slices.Equal(prog.Helpers, []string{"bpf_map_lookup_elem"}) {
		t.Errorf("program %+v", prog)
	}
	if want := countSlots(t, obj, "xdp"); prog.Instructions != want {
		t.Errorf("%d instructions, the section holds %d slots", prog.Instructions, want)
	}
	want := Map{Name: "packets", Type: "hash", KeySize: 4, ValueSize: 8, MaxEntries: 1024,
		EstimatedBytes: 1024 * (48 + 8 + 8)}
	if len(r.Maps) != 1 || r.Maps[0] != want {
		t.Errorf("maps %+v, want %+v", r.Maps, want)
	}
	if r.TotalMapBytes != want.EstimatedBytes {
		t.Errorf("total %d, want %d", r.TotalMapBytes, want.EstimatedBytes)
	}
}

// countSlots is the size of an ELF section in 8-byte instruction slots,
// read independently of cilium/ebpf.
func countSlots(t *testing.T, obj []byte, section string) int {
	t.Helper()
	f, err := elf.NewFile(strings.NewReader(string(obj)))
	if err != nil {
		t.Fatal(err)
	}
	s := f.Section(section)
	if s == nil {
		t.Fatalf("no section %q", section)
	}
	return int(s.Size / 8)
}

// shieldObject reads the shield's generated object and its digest as
// computed now (the shield records its own at generation time).
func shieldObject(t testing.TB) ([]byte, string) {
	t.Helper()
	obj, err := os.ReadFile("../shield/shield_bpfel.o")
	if err != nil {
		t.Fatal(err)
	}
	return obj, digestOf(obj)
}

func TestShieldObjectPassesShieldPolicy(t *testing.T) {
	obj, digest := shieldObject(t)
	r := Verify(obj, ShieldPolicy(DefaultShieldCaps(), digest), nil)
	if !r.Passed() {
		t.Fatal(r.Err())
	}
	// The data path and its clock probe.
	if r.Integrity != IntegrityDigest || len(r.Programs) != 2 || r.Programs[0].Type != "xdp" || r.Programs[1].Type != "xdp" {
		t.Errorf("integrity %q, programs %+v", r.Integrity, r.Programs)
	}
	for _, m := range r.Maps {
		if m.Name == "block_v4" && m.MaxEntries != DefaultShieldCaps().BlockV4 {
			t.Errorf("block_v4 has %d entries, the cap is %d", m.MaxEntries, DefaultShieldCaps().BlockV4)
		}
	}

	// Lower ceilings than the object declares must refuse it.
	caps := DefaultShieldCaps()
	caps.BlockV6 /= 2
	r = Verify(obj, ShieldPolicy(caps, digest), nil)
	if !slices.Equal(r.Checks(), []string{CheckMaxEntries}) || len(r.Violations) != 2 {
		t.Errorf("halved IPv6 cap: violations %v, want max-entries for block_v6 and block_v6_lpm", r.Violations)
	}
	// The shield's policy is XDP only: a kprobe is refused even when signed.
	pub, priv := testKey(t)
	kp := readCorpus(t, "kprobe.o")
	r = Verify(kp, ShieldPolicy(DefaultShieldCaps(), digest).WithPublicKeys(pub), Sign(kp, priv))
	if !slices.Equal(r.Checks(), []string{CheckProgramType}) {
		t.Errorf("kprobe under the shield policy: %v", r.Violations)
	}
}

func TestSizeLimitComesFirst(t *testing.T) {
	obj := readCorpus(t, "xdp_pass.o")
	p := corpusPolicy()
	p.MaxObjectSize = len(obj) - 1
	r := Verify(obj, p, nil)
	if !slices.Equal(r.Checks(), []string{CheckSize}) || r.Digest != "" {
		t.Errorf("violations %v, digest %q: want only size, before hashing", r.Violations, r.Digest)
	}
	p.MaxObjectSize = len(obj)
	if r := Verify(obj, p.WithDigests(digestOf(obj)), nil); !r.Passed() {
		t.Errorf("object of exactly the limit: %v", r.Err())
	}
}

func TestMemoryBudget(t *testing.T) {
	obj := readCorpus(t, "xdp_pass.o")
	p := corpusPolicy().WithDigests(digestOf(obj))
	p.MemoryBudget = 1024 * 64
	if r := Verify(obj, p, nil); !r.Passed() {
		t.Fatalf("at the budget: %v", r.Err())
	}
	p.MemoryBudget--
	if r := Verify(obj, p, nil); !slices.Equal(r.Checks(), []string{CheckMapMemory}) {
		t.Errorf("one byte over the budget: %v", r.Violations)
	}
}

func TestPerMapCapOverridesDefault(t *testing.T) {
	obj := readCorpus(t, "max_entries.o")
	p := corpusPolicy().WithDigests(digestOf(obj))
	p.MapCaps = map[string]uint32{"big": 1 << 21}
	if r := Verify(obj, p, nil); !r.Passed() {
		t.Errorf("named cap allows 2^21: %v", r.Err())
	}
	p.MapCaps = map[string]uint32{"big": 1 << 10}
	p.MaxEntries = 1 << 30
	if r := Verify(obj, p, nil); !slices.Equal(r.Checks(), []string{CheckMaxEntries}) {
		t.Errorf("named cap 2^10 under a large default: %v", r.Violations)
	}
}

func TestSignatures(t *testing.T) {
	pub, priv := testKey(t)
	other, _ := testKey(t)
	obj := readCorpus(t, "xdp_pass.o")
	sig := Sign(obj, priv)
	tampered := readCorpus(t, "digest_mismatch.o")
	for _, tc := range []struct {
		name string
		obj  []byte
		keys []ed25519.PublicKey
		sig  []byte
		ok   bool
	}{
		{"valid", obj, []ed25519.PublicKey{pub}, sig, true},
		{"second key", obj, []ed25519.PublicKey{other, pub}, sig, true},
		{"untrusted key", obj, []ed25519.PublicKey{other}, sig, false},
		{"no keys", obj, nil, sig, false},
		{"tampered object", tampered, []ed25519.PublicKey{pub}, sig, false},
		{"garbage", obj, []ed25519.PublicKey{pub}, []byte("not base64!"), false},
		{"short", obj, []ed25519.PublicKey{pub}, []byte("AAAA"), false},
		{"flipped bit", obj, []ed25519.PublicKey{pub}, flipBase64(t, sig), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Verify(tc.obj, corpusPolicy().WithPublicKeys(tc.keys...), tc.sig)
			if r.Passed() != tc.ok {
				t.Fatalf("passed %v, want %v: %v", r.Passed(), tc.ok, r.Violations)
			}
			if !tc.ok && !slices.Equal(r.Checks(), []string{CheckIntegrity}) {
				t.Errorf("violations %v, want integrity only", r.Violations)
			}
		})
	}
}

func flipBase64(t *testing.T, sig []byte) []byte {
	t.Helper()
	b := slices.Clone(sig)
	// Change the first character to another valid base64 digit.
	if b[0] == 'A' {
		b[0] = 'B'
	} else {
		b[0] = 'A'
	}
	return b
}

func TestInvalidPolicyRefusesEverything(t *testing.T) {
	obj := readCorpus(t, "xdp_pass.o")
	for name, mutate := range map[string]func(*Policy){
		"unknown helper":   func(p *Policy) { p.Helpers = append(p.Helpers, "FnMapLookupElem") },
		"unknown map type": func(p *Policy) { p.MapTypes = append(p.MapTypes, "HASH") },
		"unknown prog":     func(p *Policy) { p.ProgramTypes = []string{"XDP"} },
		"bad digest":       func(p *Policy) { p.AllowedDigests = []string{"abc"} },
		"bad key":          func(p *Policy) { p.PublicKeys = []string{"AAAA"} },
		"zero size":        func(p *Policy) { p.MaxObjectSize = 0 },
		"zero insns":       func(p *Policy) { p.MaxInstructions = 0 },
	} {
		p := corpusPolicy().WithDigests(digestOf(obj))
		mutate(&p)
		if r := Verify(obj, p, nil); !slices.Equal(r.Checks(), []string{CheckPolicy}) {
			t.Errorf("%s: violations %v, want policy", name, r.Violations)
		}
	}
	var zero Policy
	if r := Verify(obj, zero, nil); r.Passed() {
		t.Error("the zero policy passed an object")
	}
}

func TestParsePolicy(t *testing.T) {
	dir := t.TempDir()
	pub, _ := testKey(t)
	pubPEM, _ := keyfile.MarshalPublicKey(pub)
	if err := os.WriteFile(filepath.Join(dir, "ops.pub"), pubPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "policy.yaml")
	doc := "program_types: [xdp]\nmax_instructions: 100\npublic_keys: [ops.pub]\n" +
		"map_caps: {packets: 10}\nallowed_digests: [" + strings.Repeat("AB", 32) + "]\n"
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := LoadPolicy(path)
	if err != nil {
		t.Fatal(err)
	}
	def := DefaultPolicy()
	if !slices.Equal(p.ProgramTypes, []string{"xdp"}) || p.MaxInstructions != 100 || p.MapCaps["packets"] != 10 {
		t.Errorf("file values not applied: %+v", p)
	}
	if !slices.Equal(p.Helpers, def.Helpers) || p.MaxObjectSize != def.MaxObjectSize {
		t.Errorf("omitted keys lost their defaults: %+v", p)
	}
	if keys, err := p.publicKeys(); err != nil || len(keys) != 1 || !keys[0].Equal(pub) {
		t.Errorf("key file not resolved: %v %v", keys, err)
	}
	if p.AllowedDigests[0] != strings.Repeat("ab", 32) {
		t.Errorf("digest not normalised: %q", p.AllowedDigests[0])
	}

	for _, bad := range []string{
		"helpers: [bpf_no_such_helper]\n",
		"max_instructons: 5\n", // typo: unknown key
		"public_keys: [missing.pub]\n",
		"map_types: [hash]\n---\nmap_types: [array]\n",
		"max_entries: -1\n",
	} {
		if _, err := parsePolicy([]byte(bad), "."); err == nil {
			t.Errorf("policy %q accepted", bad)
		}
	}
	if p, err := parsePolicy(nil, "."); err != nil || !slices.Equal(p.MapTypes, def.MapTypes) {
		t.Errorf("empty policy: %v, %+v", err, p)
	}
}

// TestHelperNamesMatchKernel checks the derived helper names against the
// kernel's UAPI header, which lists them in id order as FN(name, ...).
// Helpers newer than the installed header are not checked.
func TestHelperNamesMatchKernel(t *testing.T) {
	f, err := os.Open("/usr/include/linux/bpf.h")
	if err != nil {
		t.Skipf("kernel headers not installed: %v", err)
	}
	defer f.Close()
	var header []string
	fn := regexp.MustCompile(`^\s*FN\((\w+)`)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := fn.FindStringSubmatch(sc.Text()); m != nil {
			header = append(header, "bpf_"+m[1])
		}
	}
	if len(header) < 100 || header[0] != "bpf_unspec" {
		t.Fatalf("found only %d helpers in the header", len(header))
	}
	for id, name := range header[1:] {
		if got := helperName(int64(id + 1)); got != name {
			t.Errorf("helper %d: derived %q, the header says %q", id+1, got, name)
		}
	}
	known := helperByName()
	for _, name := range []string{"bpf_probe_write_user", "bpf_override_return", "bpf_send_signal", "bpf_sys_bpf", "bpf_trace_printk"} {
		if _, ok := known[name]; !ok {
			t.Errorf("helper %s unknown", name)
		}
		if slices.Contains(DefaultPolicy().Helpers, name) {
			t.Errorf("the default policy allows %s", name)
		}
	}
	if got := helperName(100000); got != "helper#100000" {
		t.Errorf("unknown helper named %q", got)
	}
}

// TestCallScan checks the call scan on hand-built instructions, including
// forms a compiler does not emit.
func TestCallScan(t *testing.T) {
	helper := asm.FnProbeWriteUser.Call()
	badDst := asm.FnMapLookupElem.Call()
	badDst.Dst = asm.R3 // the kernel refuses reserved fields; the scan still sees the helper
	oddSrc := asm.FnMapLookupElem.Call()
	oddSrc.Src = asm.R7
	insns := asm.Instructions{helper, badDst, oddSrc, asm.Return()}
	r := &Report{}
	prog := Program{Name: "p"}
	r.scanCalls(&prog, insns, DefaultPolicy())
	if !slices.Equal(prog.Helpers, []string{"bpf_map_lookup_elem", "bpf_probe_write_user"}) {
		t.Errorf("helpers %v", prog.Helpers)
	}
	if len(r.Violations) != 2 || !strings.Contains(r.Violations[0].Reason, "bpf_probe_write_user") ||
		!strings.Contains(r.Violations[1].Reason, "src=7") {
		t.Errorf("violations %v", r.Violations)
	}
}

func TestStructureOverlap(t *testing.T) {
	obj := readCorpus(t, "xdp_pass.o")
	f, err := elf.NewFile(strings.NewReader(string(obj)))
	if err != nil {
		t.Fatal(err)
	}
	shoff := binary.LittleEndian.Uint64(obj[40:])
	// Point the program section at the license section's bytes.
	var xdp, lic int
	for i, s := range f.Sections {
		switch s.Name {
		case "xdp":
			xdp = i
		case "license":
			lic = i
		}
	}
	b := slices.Clone(obj)
	binary.LittleEndian.PutUint64(b[shoff+uint64(xdp)*64+24:], f.Sections[lic].Offset)
	if vs := checkStructure(b); len(vs) == 0 || vs[0].Check != CheckSections || !strings.Contains(vs[0].Reason, "overlaps") {
		t.Errorf("overlapping sections: %v", vs)
	}
	// A section table that starts inside the header.
	b = slices.Clone(obj)
	binary.LittleEndian.PutUint64(b[40:], 8)
	if vs := checkStructure(b); len(vs) != 1 || vs[0].Check != CheckSections {
		t.Errorf("section table in the header: %v", vs)
	}
	// An offset that overflows when the size is added.
	b = slices.Clone(obj)
	binary.LittleEndian.PutUint64(b[shoff+uint64(xdp)*64+24:], ^uint64(0)-4)
	if vs := checkStructure(b); len(vs) != 1 || vs[0].Check != CheckSections {
		t.Errorf("wrapping offset: %v", vs)
	}
	if vs := checkStructure(obj); len(vs) != 0 {
		t.Errorf("the sound object: %v", vs)
	}
}

func TestEstimateMapBytes(t *testing.T) {
	const cpus = 4
	for _, tc := range []struct {
		m    ebpf.MapSpec
		want uint64
	}{
		{ebpf.MapSpec{Type: ebpf.Hash, KeySize: 4, ValueSize: 24, MaxEntries: 10}, 10 * (48 + 8 + 24)},
		{ebpf.MapSpec{Type: ebpf.LRUHash, KeySize: 16, ValueSize: 80, MaxEntries: 2}, 2 * (48 + 16 + 80)},
		{ebpf.MapSpec{Type: ebpf.PerCPUHash, KeySize: 4, ValueSize: 4, MaxEntries: 3}, 3 * (48 + 8 + 8 + cpus*8)},
		{ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 13, MaxEntries: 5}, 5 * 16},
		{ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 16, MaxEntries: 20}, 20 * 16 * cpus},
		{ebpf.MapSpec{Type: ebpf.LPMTrie, KeySize: 8, ValueSize: 24, MaxEntries: 3}, 3*(40+4+24) + 2*(40+4)},
		{ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: 1 << 18}, 1 << 18},
		{ebpf.MapSpec{Type: ebpf.PerfEventArray, KeySize: 4, ValueSize: 4}, cpus * 8},
		{ebpf.MapSpec{Type: ebpf.Queue, ValueSize: 8, MaxEntries: 9}, 10 * 8},
		{ebpf.MapSpec{Type: ebpf.DevMap, KeySize: 4, ValueSize: 4, MaxEntries: 2}, 2 * 16},
		// A hostile definition saturates instead of wrapping around.
		{ebpf.MapSpec{Type: ebpf.PerCPUArray, ValueSize: 1 << 31, MaxEntries: 1 << 31}, ^uint64(0)},
	} {
		if got := EstimateMapBytes(&tc.m, cpus); got != tc.want {
			t.Errorf("%v key %d value %d entries %d: %d bytes, want %d",
				tc.m.Type, tc.m.KeySize, tc.m.ValueSize, tc.m.MaxEntries, got, tc.want)
		}
	}
}

func TestPerfEventArraySizedByCPUsIsNotCapped(t *testing.T) {
	spec := &ebpf.CollectionSpec{Maps: map[string]*ebpf.MapSpec{
		"perf":  {Type: ebpf.PerfEventArray, KeySize: 4, ValueSize: 4},
		"fixed": {Type: ebpf.PerfEventArray, KeySize: 4, ValueSize: 4, MaxEntries: 2},
	}}
	p := DefaultPolicy()
	p.MaxEntries = 1
	r := &Report{}
	r.checkMaps(spec, p)
	if len(r.Violations) != 1 || r.Violations[0].Subject != "fixed" {
		t.Errorf("violations %v, want max-entries for fixed only", r.Violations)
	}
	if r.Maps[1].Name != "perf" || r.Maps[1].MaxEntries != uint32(possibleCPUs()) {
		t.Errorf("maps %+v: perf should report one entry per possible CPU", r.Maps)
	}
}
