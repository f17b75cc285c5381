package fuel

import "fmt"

// instrument assembles the output module: sections in input order with the
// fuel globals, the refuel function (and its type, if the module has no
// [] -> [] type) and their exports appended, creating those sections where
// absent; function bodies rewritten and offset-bearing custom sections
// dropped.
func (m *module) instrument() ([]byte, error) {
	w := &rewriter{m: m, fuelIndex: m.globals, reserveIndex: m.globals + 1, refuelIndex: uint32(len(m.funcTypes))}
	voidType := m.voidType
	added := map[byte][][]byte{
		secGlobal: {
			{typeI64, 0x01, 0x42, 0x00, 0x0b}, // mut i64, i64.const 0
			{typeI64, 0x01, 0x42, 0x00, 0x0b},
		},
		secExport: {
			exportEntry(GlobalName, 0x03, w.fuelIndex),
			exportEntry(ReserveName, 0x03, w.reserveIndex),
			exportEntry(RefuelName, 0x00, w.refuelIndex),
		},
		secCode: {codeEntry(w.refuelBody())},
	}
	if voidType < 0 {
		voidType = len(m.typeParams)
		added[secType] = [][]byte{{0x60, 0x00, 0x00}}
	}
	added[secFunction] = [][]byte{appendU32(nil, uint32(voidType))}

	size := len(header)
	for _, s := range m.sections {
		size += len(s.payload) + 6
	}
	out := make([]byte, 0, size+size/4+128)
	out = append(out, header...)
	// createBefore emits the added sections the input lacks and that rank
	// before rank.
	createBefore := func(rank int) {
		for _, id := range []byte{secType, secFunction, secGlobal, secExport, secCode} {
			if entries, ok := added[id]; ok && sectionRank[id] < rank {
				out = appendSection(out, id, appendEntries(nil, entries))
				delete(added, id)
			}
		}
	}
	for i, s := range m.sections {
		if s.id != secCustom {
			createBefore(sectionRank[s.id])
		}
		entries := added[s.id]
		delete(added, s.id)
		switch {
		case s.id == secCustom && droppedCustom(s.name):
		case i == m.code:
			code, err := w.instrumentCode(&reader{buf: s.payload, base: s.offset}, entries)
			if err != nil {
				return nil, fmt.Errorf("code section: %w", err)
			}
			out = appendSection(out, secCode, code)
		case entries != nil:
			out = appendSection(out, s.id, appendEntries(s.payload, entries))
		default:
			out = appendSection(out, s.id, s.payload)
		}
	}
	createBefore(len(sectionRank) + 1)
	return out, nil
}

func appendSection(out []byte, id byte, payload []byte) []byte {
	out = appendU32(append(out, id), uint32(len(payload)))
	return append(out, payload...)
}

// appendEntries returns a vector payload (nil: an empty vector) with
// entries added at its end. The payload was parsed already, so its count
// decodes.
func appendEntries(payload []byte, entries [][]byte) []byte {
	n, pos := uint32(0), 0
	if payload != nil {
		r := &reader{buf: payload}
		n, _ = r.u32()
		pos = r.pos
	}
	size := len(payload) + 5
	for _, e := range entries {
		size += len(e)
	}
	out := appendU32(make([]byte, 0, size), n+uint32(len(entries)))
	out = append(out, payload[pos:]...)
	for _, e := range entries {
		out = append(out, e...)
	}
	return out
}

func exportEntry(name string, kind byte, index uint32) []byte {
	e := appendU32(nil, uint32(len(name)))
	e = append(e, name...)
	return appendU32(append(e, kind), index)
}

func codeEntry(body []byte) []byte {
	return append(appendU32(nil, uint32(len(body))), body...)
}

// refuelBody is the code of the refuel function, called when the fuel in
// hand is negative:
//
//	take := min(reserve, Slice - fuel)  // back to Slice, or all there is
//	fuel, reserve = fuel + take, reserve - take
//	if fuel < 0 { unreachable }
//	drop(ref.func refuel)
//
// The last line is what the function is for: wazero compiles ref.func to
// a call into Go, and a Go call is where the runtime can stop this
// goroutine for a garbage collection or run the timer that interrupts it.
// Fuel is conserved, so a module calling refuel itself (it is exported)
// gains nothing.
func (w *rewriter) refuelBody() []byte {
	b := []byte{0x01, 0x02, typeI64}                        // two i64 locals: reserve, then want and take
	b = appendU32(append(b, 0x23), w.reserveIndex)          // global.get reserve
	b = append(b, 0x22, 0x00)                               // local.tee 0
	b = appendS64(append(b, 0x42), Slice)                   // i64.const Slice
	b = appendU32(append(b, 0x23), w.fuelIndex)             // global.get fuel
	b = append(b, 0x7d, 0x22, 0x01)                         // i64.sub; local.tee 1
	b = append(b, 0x20, 0x00, 0x20, 0x01, 0x53)             // local.get 0; local.get 1; i64.lt_s
	b = append(b, 0x1b, 0x22, 0x01)                         // select; local.tee 1
	b = appendU32(append(b, 0x23), w.fuelIndex)             // global.get fuel
	b = append(b, 0x7c)                                     // i64.add
	b = appendU32(append(b, 0x24), w.fuelIndex)             // global.set fuel
	b = append(b, 0x20, 0x00, 0x20, 0x01, 0x7d)             // local.get 0; local.get 1; i64.sub
	b = appendU32(append(b, 0x24), w.reserveIndex)          // global.set reserve
	b = appendU32(append(b, 0x23), w.fuelIndex)             // global.get fuel
	b = append(b, 0x42, 0x00, 0x53, 0x04, 0x40, 0x00, 0x0b) // i64.const 0; i64.lt_s; if; unreachable; end
	b = appendU32(append(b, 0xd2), w.refuelIndex)           // ref.func refuel
	return append(b, 0x1a, 0x0b)                            // drop; end
}

// instrumentCode rewrites every function body of the code section and
// appends the extra bodies.
func (w *rewriter) instrumentCode(r *reader, extra [][]byte) ([]byte, error) {
	payload := r.buf
	var out, body []byte
	err := w.m.eachBody(r, func(n uint32) {
		out = make([]byte, 0, len(payload)+len(payload)/3+64)
		out = appendU32(out, n+uint32(len(extra)))
	}, func(fn uint32, in *reader) error {
		var err error
		if body, err = w.instrumentBody(body[:0], fn, in); err != nil {
			return err
		}
		out = appendU32(out, uint32(len(body)))
		out = append(out, body...)
		return nil
	})
	for _, e := range extra {
		out = append(out, e...)
	}
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
