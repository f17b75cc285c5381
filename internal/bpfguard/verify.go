package bpfguard

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/aegis-edge/aegis/internal/keyfile"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
)

// Checks, the stable ids of Violation.Check.
const (
	CheckPolicy       = "policy"        // the policy itself is invalid: nothing passes
	CheckSize         = "size"          // object larger than MaxObjectSize
	CheckTruncated    = "elf-truncated" // header or section table cut off
	CheckMagic        = "elf-magic"     // not an ELF file
	CheckClass        = "elf-class"     // not ELF64
	CheckEndian       = "elf-endian"    // not the host's byte order
	CheckHeader       = "elf-header"    // inconsistent header fields
	CheckType         = "elf-type"      // not a relocatable object
	CheckMachine      = "elf-machine"   // not EM_BPF
	CheckSections     = "elf-sections"  // section outside the file or overlapping another
	CheckParse        = "elf-parse"     // the BPF object parser refused it
	CheckPrograms     = "programs"      // no program at all
	CheckProgramType  = "program-type"
	CheckInstructions = "instructions"
	CheckHelper       = "helper" // helper or kfunc not allowed, or an unknown call kind
	CheckLicense      = "license"
	CheckMapType      = "map-type"
	CheckMaxEntries   = "max-entries"
	CheckMapMemory    = "map-memory"
	CheckIntegrity    = "integrity" // neither an allowed digest nor a valid signature
)

// How Report.Integrity was established.
const (
	IntegrityDigest    = "digest"
	IntegritySignature = "signature"
)

// maxReported bounds the violations of one kind a report lists, so that a
// crafted object cannot make the report itself large.
const maxReported = 16

// Report is what Verify found in an object.
type Report struct {
	Size     int       `json:"size"`
	Digest   string    `json:"sha256"`
	License  string    `json:"license"`
	Programs []Program `json:"programs"`
	Maps     []Map     `json:"maps"`
	// TotalMapBytes is the sum of the maps' EstimatedBytes.
	TotalMapBytes uint64 `json:"total_map_bytes"`
	// Integrity is IntegrityDigest or IntegritySignature once established,
	// empty otherwise; SignedBy is the signing key's keyfile.KeyID.
	Integrity  string      `json:"integrity,omitempty"`
	SignedBy   string      `json:"signed_by,omitempty"`
	Violations []Violation `json:"violations"`
}

// Program is one program of the object.
type Program struct {
	Name    string `json:"name"`
	Section string `json:"section"`
	Type    string `json:"type"`
	// Instructions counts 8-byte slots, subprograms included, as the
	// kernel counts the program's length.
	Instructions int      `json:"instructions"`
	Helpers      []string `json:"helpers"`
	Kfuncs       []string `json:"kfuncs,omitempty"`
}

// Map is one map the object declares.
type Map struct {
	Name           string `json:"name"`
	Type           string `json:"type"`
	KeySize        uint32 `json:"key_size"`
	ValueSize      uint32 `json:"value_size"`
	MaxEntries     uint32 `json:"max_entries"`
	Flags          uint32 `json:"flags"`
	EstimatedBytes uint64 `json:"estimated_bytes"`
}

// Violation is one reason to refuse the object.
type Violation struct {
	Check string `json:"check"`
	// Subject names the program or map concerned, if any.
	Subject string `json:"subject,omitempty"`
	Reason  string `json:"reason"`
}

func (v Violation) String() string {
	if v.Subject != "" {
		return fmt.Sprintf("%s: %s: %s", v.Check, v.Subject, v.Reason)
	}
	return fmt.Sprintf("%s: %s", v.Check, v.Reason)
}

// Passed reports whether the object may be handed to the kernel.
func (r *Report) Passed() bool { return len(r.Violations) == 0 }

// Err returns nil for a passed report and a *RejectedError otherwise.
func (r *Report) Err() error {
	if r.Passed() {
		return nil
	}
	return &RejectedError{Digest: r.Digest, Violations: r.Violations}
}

// RejectedError is the error of a report with violations.
type RejectedError struct {
	Digest     string
	Violations []Violation
}

func (e *RejectedError) Error() string {
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		parts[i] = v.String()
	}
	return fmt.Sprintf("eBPF object %.12s rejected: %s", e.Digest, strings.Join(parts, "; "))
}

// Checks returns the distinct checks that failed, in report order.
func (r *Report) Checks() []string {
	var cs []string
	for _, v := range r.Violations {
		if !slices.Contains(cs, v.Check) {
			cs = append(cs, v.Check)
		}
	}
	return cs
}

func (r *Report) add(check, subject, format string, a ...any) {
	r.Violations = append(r.Violations, Violation{Check: check, Subject: subject, Reason: fmt.Sprintf(format, a...)})
}

// Verify checks obj, the bytes of an eBPF ELF object, against the policy.
// sig is the detached signature (see Sign), or nil. Verify never panics
// and always returns a report; the object may be loaded only if the report
// Passed. Checks run cheapest first: size, then the raw ELF structure, then
// integrity, then, on a structurally sound object only, the parsed contents.
func Verify(obj []byte, p Policy, sig []byte) (r *Report) {
	r = &Report{Size: len(obj)}
	if err := p.Validate(); err != nil {
		r.add(CheckPolicy, "", "%v", err)
		return r
	}
	if len(obj) > p.MaxObjectSize {
		r.add(CheckSize, "", "the object is larger than the limit of %d bytes", p.MaxObjectSize)
		return r
	}
	sum := sha256.Sum256(obj)
	r.Digest = hex.EncodeToString(sum[:])
	r.checkIntegrity(sum, p, sig)

	if vs := checkStructure(obj); len(vs) > 0 {
		r.Violations = append(vs, r.Violations...)
		return r
	}
	defer func() {
		// The structural checks keep the parser on sane input, but a parser
		// bug must still refuse the object rather than take the caller down.
		if e := recover(); e != nil {
			r.add(CheckParse, "", "the parser failed on this object: %v", e)
		}
	}()
	spec, err := ebpf.LoadCollectionSpecFromReader(bytes.NewReader(obj))
	if err != nil {
		r.add(CheckParse, "", "%v", err)
		return r
	}
	r.checkPrograms(spec, p)
	r.checkMaps(spec, p)
	return r
}

func (r *Report) checkIntegrity(sum [sha256.Size]byte, p Policy, sig []byte) {
	if slices.Contains(p.AllowedDigests, r.Digest) {
		r.Integrity = IntegrityDigest
		return
	}
	if len(sig) == 0 {
		r.add(CheckIntegrity, "", "digest %s matches none of the %d allowed digests and the object has no signature",
			r.Digest, len(p.AllowedDigests))
		return
	}
	keys, _ := p.publicKeys() // Validate has checked them
	key, err := checkSignature(sum, sig, keys)
	if err != nil {
		r.add(CheckIntegrity, "", "digest %s is not allowed and %v", r.Digest, err)
		return
	}
	r.Integrity, r.SignedBy = IntegritySignature, keyfile.KeyID(key)
}

// gplCompatible are the license strings the kernel accepts as GPL-compatible
// (include/linux/license.h).
var gplCompatible = []string{
	"GPL", "GPL v2", "GPL and additional rights", "Dual BSD/GPL", "Dual MIT/GPL", "Dual MPL/GPL",
}

func (r *Report) checkPrograms(spec *ebpf.CollectionSpec, p Policy) {
	names := sortedKeys(spec.Programs)
	if len(names) == 0 {
		r.add(CheckPrograms, "", "the object contains no program")
	}
	for _, name := range names {
		ps := spec.Programs[name]
		prog := Program{
			Name:         name,
			Section:      ps.SectionName,
			Type:         programTypeName(ps.Type),
			Instructions: int(ps.Instructions.Size() / asm.InstructionSize),
		}
		if r.License == "" {
			r.License = ps.License
		}
		if !slices.Contains(p.ProgramTypes, prog.Type) {
			r.add(CheckProgramType, name, "program type %s (section %q) is not allowed", prog.Type, ps.SectionName)
		}
		if prog.Instructions > p.MaxInstructions {
			r.add(CheckInstructions, name, "%d instructions, the limit is %d", prog.Instructions, p.MaxInstructions)
		}
		r.scanCalls(&prog, ps.Instructions, p)
		r.Programs = append(r.Programs, prog)
	}
	switch {
	case len(names) == 0:
	case r.License == "":
		r.add(CheckLicense, "", "the object declares no license")
	case !slices.Contains(gplCompatible, r.License):
		r.add(CheckLicense, "", "license %q is not GPL-compatible", r.License)
	}
}

// scanCalls records every helper and kfunc a program calls and reports the
// ones the policy does not allow. Every call instruction is looked at, not
// only well-formed helper calls: a call with an unknown source register is
// refused outright.
func (r *Report) scanCalls(prog *Program, insns asm.Instructions, p Policy) {
	var forbidden int
	deny := func(kind, name string) {
		if forbidden < maxReported {
			r.add(CheckHelper, prog.Name, "calls %s %s, which is not allowed", kind, name)
		}
		forbidden++
	}
	for i := range insns {
		ins := &insns[i]
		if ins.OpCode.Class() != asm.JumpClass || ins.OpCode.JumpOp() != asm.Call {
			continue
		}
		switch ins.Src {
		case asm.R0: // helper
			name := helperName(ins.Constant)
			if slices.Contains(prog.Helpers, name) {
				continue
			}
			prog.Helpers = append(prog.Helpers, name)
			if !slices.Contains(p.Helpers, name) {
				deny("helper", name)
			}
		case asm.PseudoCall: // a function of the program itself
		case asm.PseudoKfuncCall:
			name := fmt.Sprintf("kfunc#%d", ins.Constant)
			if fn := btf.FuncMetadata(ins); fn != nil {
				name = fn.Name
			}
			if slices.Contains(prog.Kfuncs, name) {
				continue
			}
			prog.Kfuncs = append(prog.Kfuncs, name)
			if !slices.Contains(p.Kfuncs, name) {
				deny("kfunc", name)
			}
		default:
			deny("call kind", fmt.Sprintf("src=%d", ins.Src))
		}
	}
	slices.Sort(prog.Helpers)
	slices.Sort(prog.Kfuncs)
	if prog.Helpers == nil {
		prog.Helpers = []string{}
	}
}

func (r *Report) checkMaps(spec *ebpf.CollectionSpec, p Policy) {
	cpus := possibleCPUs()
	for _, name := range sortedKeys(spec.Maps) {
		ms := spec.Maps[name]
		m := Map{
			Name:           name,
			Type:           mapTypeName(ms.Type),
			KeySize:        ms.KeySize,
			ValueSize:      ms.ValueSize,
			MaxEntries:     effectiveEntries(ms, cpus),
			Flags:          ms.Flags,
			EstimatedBytes: EstimateMapBytes(ms, cpus),
		}
		if !slices.Contains(p.MapTypes, m.Type) {
			r.add(CheckMapType, name, "map type %s is not allowed", m.Type)
		}
		limit, named := p.MapCaps[name]
		if !named {
			limit = p.MaxEntries
		}
		// The declared size is capped: a perf event array declared without
		// one gets one slot per CPU from the loader, whatever the machine.
		if ms.MaxEntries > limit {
			r.add(CheckMaxEntries, name, "max_entries %d is over the cap of %d", ms.MaxEntries, limit)
		}
		r.TotalMapBytes = add(r.TotalMapBytes, m.EstimatedBytes)
		r.Maps = append(r.Maps, m)
	}
	if r.TotalMapBytes > p.MemoryBudget {
		r.add(CheckMapMemory, "", "maps need an estimated %d bytes, the budget is %d", r.TotalMapBytes, p.MemoryBudget)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
