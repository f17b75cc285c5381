package fuel

import "fmt"

// instrument assembles the output module: sections in input order with the
// fuel global and its export appended (creating those sections where
// absent), function bodies rewritten and offset-bearing custom sections
// dropped.
func (m *module) instrument() ([]byte, error) {
	fuelIndex := m.globals
	size := len(header)
	for _, s := range m.sections {
		size += len(s.payload) + 6
	}
	out := make([]byte, 0, size+size/4+64)
	out = append(out, header...)

	global := []byte{typeI64, 0x01, 0x42, 0x00, 0x0b} // mut i64, i64.const 0
	export := appendU32(nil, uint32(len(GlobalName)))
	export = append(export, GlobalName...)
	export = appendU32(append(export, 0x03), fuelIndex)

	globalDone, exportDone := false, false
	for i, s := range m.sections {
		if s.id != secCustom {
			rank := sectionRank[s.id]
			if !globalDone && rank > sectionRank[secGlobal] {
				out = appendSection(out, secGlobal, append([]byte{1}, global...))
				globalDone = true
			}
			if !exportDone && rank > sectionRank[secExport] {
				out = appendSection(out, secExport, append([]byte{1}, export...))
				exportDone = true
			}
		}
		switch {
		case s.id == secCustom && droppedCustom(s.name):
		case i == m.definedGlobal:
			out = appendSection(out, secGlobal, appendEntry(s.payload, global))
			globalDone = true
		case i == m.export:
			out = appendSection(out, secExport, appendEntry(s.payload, export))
			exportDone = true
		case i == m.code:
			code, err := m.instrumentCode(&reader{buf: s.payload, base: s.offset}, fuelIndex)
			if err != nil {
				return nil, fmt.Errorf("code section: %w", err)
			}
			out = appendSection(out, secCode, code)
		default:
			out = appendSection(out, s.id, s.payload)
		}
	}
	if !globalDone {
		out = appendSection(out, secGlobal, append([]byte{1}, global...))
	}
	if !exportDone {
		out = appendSection(out, secExport, append([]byte{1}, export...))
	}
	return out, nil
}

func appendSection(out []byte, id byte, payload []byte) []byte {
	out = appendU32(append(out, id), uint32(len(payload)))
	return append(out, payload...)
}

// appendEntry returns a vector payload with one more entry at its end. The
// payload was parsed already, so its count decodes.
func appendEntry(payload, entry []byte) []byte {
	r := &reader{buf: payload}
	n, _ := r.u32()
	out := make([]byte, 0, len(payload)+len(entry)+5)
	out = appendU32(out, n+1)
	out = append(out, payload[r.pos:]...)
	return append(out, entry...)
}

// instrumentCode rewrites every function body of the code section.
func (m *module) instrumentCode(r *reader, fuelIndex uint32) ([]byte, error) {
	payload := r.buf
	var out, body []byte
	w := &rewriter{m: m, fuelIndex: fuelIndex}
	err := m.eachBody(r, func(n uint32) {
		out = make([]byte, 0, len(payload)+len(payload)/3+16)
		out = appendU32(out, n)
	}, func(fn uint32, in *reader) error {
		var err error
		if body, err = w.instrumentBody(body[:0], fn, in); err != nil {
			return err
		}
		out = appendU32(out, uint32(len(body)))
		out = append(out, body...)
		return nil
	})
	return out, err
}

// eachBody reads the code section: start gets the count of bodies, then
// f each function's index and body.
func (m *module) eachBody(r *reader, start func(n uint32), f func(fn uint32, body *reader) error) error {
	n, err := r.count(1)
	if err != nil {
		return err
	}
	start(n)
	for i := uint32(0); i < n; i++ {
		fn := m.importedFuncs + i
		size, err := r.u32()
		if err != nil {
			return fmt.Errorf("function %d: %w", fn, err)
		}
		in, err := r.bytes(size)
		if err != nil {
			return fmt.Errorf("function %d: %w", fn, err)
		}
		if err := f(fn, r.sub(in)); err != nil {
			return fmt.Errorf("function %d: %w", fn, err)
		}
	}
	if !r.done() {
		return r.errorf("section size mismatch")
	}
	return nil
}
