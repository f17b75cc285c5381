package bpfguard

import (
	"cmp"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"slices"
)

// Sizes fixed by the ELF64 format.
const (
	elf64HeaderSize  = 64
	elf64SectionSize = 64
)

// checkStructure inspects the raw bytes of what should be a relocatable
// little- or big-endian (whichever the host is) ELF64 object for BPF, before
// any parser sees them. It returns the violations found; the first failing
// header field ends the check, since later fields mean nothing without it.
func checkStructure(b []byte) []Violation {
	fail := func(check, format string, a ...any) []Violation {
		return []Violation{{Check: check, Reason: fmt.Sprintf(format, a...)}}
	}
	if len(b) < elf64HeaderSize {
		return fail(CheckTruncated, "%d bytes is shorter than an ELF64 header (%d bytes)", len(b), elf64HeaderSize)
	}
	if string(b[:4]) != elf.ELFMAG {
		return fail(CheckMagic, "the file does not start with the ELF magic \\x7fELF (found %q)", b[:4])
	}
	if c := elf.Class(b[elf.EI_CLASS]); c != elf.ELFCLASS64 {
		return fail(CheckClass, "ELF class is %s, BPF objects are 64-bit", c)
	}
	if d := elf.Data(b[elf.EI_DATA]); d != hostData() {
		return fail(CheckEndian, "byte order is %s, the host is %s", d, hostData())
	}
	if v := elf.Version(b[elf.EI_VERSION]); v != elf.EV_CURRENT {
		return fail(CheckHeader, "ELF version is %d, want %d", v, elf.EV_CURRENT)
	}
	bo := hostByteOrder
	if t := elf.Type(bo.Uint16(b[16:])); t != elf.ET_REL {
		return fail(CheckType, "ELF type is %s, BPF objects are relocatable (ET_REL)", t)
	}
	if m := elf.Machine(bo.Uint16(b[18:])); m != elf.EM_BPF {
		return fail(CheckMachine, "machine is %s, want EM_BPF", m)
	}
	var (
		phoff     = bo.Uint64(b[32:])
		shoff     = bo.Uint64(b[40:])
		ehsize    = bo.Uint16(b[52:])
		phnum     = bo.Uint16(b[56:])
		shentsize = bo.Uint16(b[58:])
		shnum     = bo.Uint16(b[60:])
		shstrndx  = bo.Uint16(b[62:])
	)
	switch {
	case ehsize != elf64HeaderSize:
		return fail(CheckHeader, "header size field is %d, want %d", ehsize, elf64HeaderSize)
	case phnum != 0 || phoff != 0:
		return fail(CheckHeader, "a relocatable object has no program headers, this one claims %d", phnum)
	case shnum == 0:
		// Either no sections, or more than 0xff00 in extended numbering:
		// neither is a BPF object.
		return fail(CheckHeader, "the object declares no section headers")
	case shentsize != elf64SectionSize:
		return fail(CheckHeader, "section header size is %d, want %d", shentsize, elf64SectionSize)
	case shstrndx >= shnum:
		return fail(CheckHeader, "section name table index %d is not below the section count %d", shstrndx, shnum)
	}
	size := uint64(len(b))
	tableEnd := shoff + uint64(shnum)*elf64SectionSize // shnum < 2^16: no overflow unless shoff is huge
	if shoff > size || tableEnd < shoff || tableEnd > size {
		return fail(CheckTruncated, "section header table (%d headers at offset %d) extends past the end of the %d-byte file", shnum, shoff, size)
	}
	if shoff < elf64HeaderSize {
		return fail(CheckSections, "section header table at offset %d overlaps the ELF header", shoff)
	}

	// Every section with contents must lie inside the file, and no two may
	// share bytes with each other, the ELF header or the section table.
	type extent struct {
		name       string
		start, end uint64
	}
	extents := []extent{{"ELF header", 0, elf64HeaderSize}, {"section header table", shoff, tableEnd}}
	var out []Violation
	for i := range uint64(shnum) {
		h := b[shoff+i*elf64SectionSize:]
		typ := elf.SectionType(bo.Uint32(h[4:]))
		off, sz := bo.Uint64(h[24:]), bo.Uint64(h[32:])
		if typ == elf.SHT_NOBITS || typ == elf.SHT_NULL || sz == 0 {
			continue
		}
		end := off + sz
		if end < off || end > size {
			out = append(out, Violation{Check: CheckSections, Reason: fmt.Sprintf(
				"section %d (%d bytes at offset %d) extends past the end of the %d-byte file", i, sz, off, size)})
			continue
		}
		extents = append(extents, extent{fmt.Sprintf("section %d", i), off, end})
	}
	if len(out) > 0 {
		return out[:min(len(out), maxReported)]
	}
	slices.SortFunc(extents, func(x, y extent) int { return cmp.Compare(x.start, y.start) })
	reach := extents[0] // the extent reaching furthest so far
	for _, cur := range extents[1:] {
		if cur.start < reach.end {
			out = append(out, Violation{Check: CheckSections, Reason: fmt.Sprintf(
				"%s [%d, %d) overlaps %s [%d, %d)", cur.name, cur.start, cur.end, reach.name, reach.start, reach.end)})
			if len(out) == maxReported {
				break
			}
		}
		if cur.end > reach.end {
			reach = cur
		}
	}
	return out
}

// hostByteOrder is the host's byte order; objects must match it, since the
// kernel takes instructions and map definitions in native order.
var hostByteOrder binary.ByteOrder = binary.NativeEndian

func hostData() elf.Data {
	if binary.NativeEndian.Uint16([]byte{1, 0}) == 1 {
		return elf.ELFDATA2LSB
	}
	return elf.ELFDATA2MSB
}
