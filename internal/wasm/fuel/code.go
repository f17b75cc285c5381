package fuel

import "fmt"

// Instruction costs: one unit per executed instruction, except the
// structural markers block, loop, else and end, which compile to nothing.
// Bulk operations add a dynamic charge for their length (the shifts below).
const instructionCost = 1

// Dynamic charges of bulk operations, as shifts of the length operand:
// memory.fill, memory.copy and memory.init cost one unit per 16 bytes,
// table.fill, table.copy and table.init one per element, table.grow four
// per element (wazero allocates about 43 bytes per element over a growth,
// TableGrowUnitsPerElement), and memory.grow one per 16 bytes of the pages
// it adds.
const (
	memoryBytesShift = 4       // length >> 4
	tableShift       = 0       // length
	tableGrowShift   = -2      // length << 2
	memoryPagesShift = -16 + 4 // pages << 12: 65536 bytes a page, 16 per unit
)

// TableGrowUnitsPerElement is what table.grow costs per element added.
const TableGrowUnitsPerElement = 1 << -tableGrowShift

type frameKind uint8

const (
	kindFunction frameKind = iota
	kindBlock
	kindLoop
	kindIf
	kindElse // an if whose else arm has begun
)

// frame is an open control construct.
type frame struct {
	kind           frameKind
	entryReachable bool   // the construct was entered by reachable code
	thenReachable  bool   // kindElse: the then arm fell through to else
	targeted       bool   // a reachable branch targets the label
	fanIn          uint64 // branches that target the label
}

type insertKind uint8

const (
	insCharge      insertKind = iota // subtract the segment's static cost
	insChargeCheck                   // the same, then trap if negative
	insCheck                         // trap if negative
	insBulk                          // subtract the shifted length on the stack, then trap if negative
)

// insertion is code added at offset at of the function body.
type insertion struct {
	at    int
	kind  insertKind
	cost  int64 // static cost of the segment (insCharge, insChargeCheck)
	shift int   // insBulk: right shift of the length, negative for left
}

// rewriter instruments function bodies. It is reused across the functions
// of a module so its slices are allocated once.
type rewriter struct {
	m            *module
	fuelIndex    uint32 // the fuel in hand
	reserveIndex uint32 // the rest of the budget
	refuelIndex  uint32 // the function the checks call

	inserts     []insertion
	frames      []frame
	reachable   bool
	segment     int  // index in inserts of the open segment's charge
	checked     bool // no charge since the last check on this path
	needScratch bool
	scratch     uint32 // index of the added i32 local holding a bulk length

	fn FunctionShape // the current function's sizes
}

// open starts a basic block at offset at: its static cost accumulates in
// a charge emitted there.
func (w *rewriter) open(at int, kind insertKind) {
	w.segment = len(w.inserts)
	w.inserts = append(w.inserts, insertion{at: at, kind: kind})
	w.checked = kind == insChargeCheck
}

// check traps at offset at if the fuel is negative, unless nothing was
// charged since the last check.
func (w *rewriter) check(at int) {
	if w.reachable && !w.checked {
		w.inserts = append(w.inserts, insertion{at: at, kind: insCheck})
		w.checked = true
	}
}

func (w *rewriter) target(r *reader, depth uint32) error {
	if uint64(depth) >= uint64(len(w.frames)) {
		return r.errorf("branch depth %d out of range", depth)
	}
	f := &w.frames[len(w.frames)-1-int(depth)]
	f.fanIn++
	if w.reachable {
		f.targeted = true
	}
	return nil
}

func (w *rewriter) bulk(at int, shift int) {
	if w.reachable {
		w.inserts = append(w.inserts, insertion{at: at, kind: insBulk, shift: shift})
		w.needScratch = true
		w.checked = true // the bulk charge ends with a check
	}
}

func (w *rewriter) blockType(r *reader) error {
	b, err := r.peek()
	if err != nil {
		return err
	}
	if b == 0x40 || isValueType(b) {
		r.pos++
		return nil
	}
	idx, err := r.s33()
	if err != nil {
		return err
	}
	if idx < 0 || idx >= int64(len(w.m.typeParams)) {
		return r.errorf("invalid block type %d", idx)
	}
	return nil
}

// memarg reads alignment (with the multi-memory flag) and offset.
func memarg(r *reader) error {
	align, err := r.u32()
	if err != nil {
		return err
	}
	if align&0x40 != 0 {
		if _, err := r.u32(); err != nil {
			return err
		}
	}
	_, err = r.u32()
	return err
}

func u32s(r *reader, n int) error {
	for i := 0; i < n; i++ {
		if _, err := r.u32(); err != nil {
			return err
		}
	}
	return nil
}

// instrumentBody appends the instrumented body of function fn (without
// its size prefix) to out.
func (w *rewriter) instrumentBody(out []byte, fn uint32, r *reader) ([]byte, error) {
	body := r.buf
	groups, groupsStart, codeStart, err := w.analyzeBody(fn, r)
	if err != nil {
		return nil, err
	}
	if w.needScratch {
		out = appendU32(out, groups+1)
		out = append(out, body[groupsStart:codeStart]...)
		out = append(out, 1, typeI32)
	} else {
		out = append(out, body[:codeStart]...)
	}
	last := codeStart
	for _, ins := range w.inserts {
		out = append(out, body[last:ins.at]...)
		out = w.emit(out, ins)
		last = ins.at
	}
	return append(out, body[last:]...), nil
}

// analyzeBody reads the locals and walks the code of function fn,
// recording insertions and the function's shape. It returns the count of
// local groups and the offsets where they and the code start.
func (w *rewriter) analyzeBody(fn uint32, r *reader) (groups uint32, groupsStart, codeStart int, err error) {
	groups, err = r.count(2)
	if err != nil {
		return 0, 0, 0, err
	}
	groupsStart = r.pos
	locals := uint64(w.m.typeParams[w.m.funcTypes[fn]])
	for i := uint32(0); i < groups; i++ {
		n, err := r.u32()
		if err != nil {
			return 0, 0, 0, err
		}
		if err := parseValueType(r); err != nil {
			return 0, 0, 0, err
		}
		if locals += uint64(n); locals >= maxLocals {
			return 0, 0, 0, fmt.Errorf("%w: more than %d params and locals", ErrUnsupported, maxLocals-1)
		}
	}
	codeStart = r.pos
	w.fn = FunctionShape{Index: fn, Locals: uint32(locals), BodyBytes: uint32(len(r.buf))}
	w.scratch = uint32(locals)
	w.needScratch = false
	w.inserts = w.inserts[:0]
	w.frames = append(w.frames[:0], frame{kind: kindFunction, entryReachable: true})
	w.reachable = true
	w.open(codeStart, insChargeCheck)
	if err := w.walk(r); err != nil {
		return 0, 0, 0, err
	}
	return groups, groupsStart, codeStart, nil
}

// walk reads instructions up to the function's final end, tracking
// control frames and reachability and recording insertions.
func (w *rewriter) walk(r *reader) error {
	for {
		start := r.pos
		op, err := r.byte()
		if err != nil {
			return err
		}
		cost := int64(instructionCost)
		switch op {
		case 0x00, 0x01, 0x0f, 0x1a, 0x1b: // unreachable nop return drop select
		case 0x02, 0x03, 0x04: // block loop if
			if err := w.blockType(r); err != nil {
				return err
			}
			if op != 0x04 {
				cost = 0
			}
		case 0x05, 0x0b: // else end
			cost = 0
		case 0x0c, 0x0d: // br br_if
			w.fn.BranchTargets++
			depth, err := r.u32()
			if err != nil {
				return err
			}
			if err := w.target(r, depth); err != nil {
				return err
			}
		case 0x0e: // br_table
			n, err := r.count(1)
			if err != nil {
				return err
			}
			w.fn.BranchTargets += n + 1
			for i := uint32(0); i <= n; i++ { // the targets, then the default
				depth, err := r.u32()
				if err != nil {
					return err
				}
				if err := w.target(r, depth); err != nil {
					return err
				}
			}
		case 0x10: // call
			f, err := w.m.funcIndex(r)
			if err != nil {
				return err
			}
			// A defined callee checks at its entry; a host function
			// must not run once the fuel is gone.
			if f < w.m.importedFuncs {
				w.check(start)
			}
		case 0x11: // call_indirect typeidx tableidx
			t, err := r.u32()
			if err != nil {
				return err
			}
			if int64(t) >= int64(len(w.m.typeParams)) {
				return r.errorf("call_indirect type %d out of range", t)
			}
			if _, err := r.u32(); err != nil {
				return err
			}
			w.check(start) // the callee may be an import
		case 0x1c: // select t*
			if _, err := parseValueTypes(r); err != nil {
				return err
			}
		case 0x20, 0x21, 0x22: // local.get, local.set, local.tee
			l, err := r.u32()
			if err != nil {
				return err
			}
			// The pass adds a local after these, so an index one past
			// them would become valid.
			if l >= w.fn.Locals {
				return r.errorf("local %d out of range", l)
			}
		case 0x23, 0x24: // global.get, global.set
			if _, err := w.m.globalIndex(r); err != nil {
				return err
			}
		case 0x25, 0x26: // table.get, table.set
			if _, err := r.u32(); err != nil {
				return err
			}
		case 0x3f: // memory.size
			if _, err := r.u32(); err != nil {
				return err
			}
		case 0x40: // memory.grow
			if _, err := r.u32(); err != nil {
				return err
			}
			w.bulk(start, memoryPagesShift)
		case 0x41:
			_, err = r.s32()
		case 0x42:
			_, err = r.s64()
		case 0x43:
			err = r.skip(4)
		case 0x44:
			err = r.skip(8)
		case 0xd0: // ref.null
			err = parseRefType(r)
		case 0xd1: // ref.is_null
		case 0xd2: // ref.func
			_, err = w.m.funcIndex(r)
		case 0xfc:
			err = w.miscOp(r, start)
		case 0xfd:
			err = simdOp(r)
		case 0x06, 0x07, 0x08, 0x09, 0x0a, 0x18, 0x19, 0x1f:
			return fmt.Errorf("%w: opcode 0x%x (exception handling) at offset %d", ErrUnsupported, op, r.base+start)
		case 0x12, 0x13, 0x14, 0x15:
			return fmt.Errorf("%w: opcode 0x%x (tail calls or typed function references) at offset %d", ErrUnsupported, op, r.base+start)
		case 0xfe:
			return fmt.Errorf("%w: opcode 0xfe (threads) at offset %d", ErrUnsupported, r.base+start)
		default:
			switch {
			case op >= 0x28 && op <= 0x3e: // loads and stores
				err = memarg(r)
			case op >= 0x45 && op <= 0xc4: // numeric and sign extension
			default:
				r.pos = start
				return r.errorf("unknown opcode 0x%x", op)
			}
		}
		if err != nil {
			return err
		}
		if w.reachable {
			w.inserts[w.segment].cost += cost
		}
		if done, err := w.control(r, op); done || err != nil {
			return err
		}
	}
}

// control applies the effect of a control instruction on frames,
// reachability and basic blocks. It reports done at the function's end.
func (w *rewriter) control(r *reader, op byte) (done bool, err error) {
	switch op {
	case 0x00, 0x0c, 0x0e, 0x0f: // unreachable br br_table return
		w.reachable = false
	case 0x0d: // br_if: the fall-through is a new block
		if w.reachable {
			w.open(r.pos, insCharge)
		}
	case 0x02:
		w.frames = append(w.frames, frame{kind: kindBlock, entryReachable: w.reachable})
		w.fn.Depth = max(w.fn.Depth, uint32(len(w.frames)-1))
	case 0x03:
		w.frames = append(w.frames, frame{kind: kindLoop, entryReachable: w.reachable})
		w.fn.Depth = max(w.fn.Depth, uint32(len(w.frames)-1))
		if w.reachable { // the back edge's target: charge and check
			w.open(r.pos, insChargeCheck)
		}
	case 0x04: // its false edge targets its own else or end
		w.frames = append(w.frames, frame{kind: kindIf, entryReachable: w.reachable, fanIn: 1})
		w.fn.Depth = max(w.fn.Depth, uint32(len(w.frames)-1))
		w.fn.BranchTargets++
		if w.reachable {
			w.open(r.pos, insCharge)
		}
	case 0x05:
		f := &w.frames[len(w.frames)-1]
		if f.kind != kindIf {
			return false, r.errorf("else without if")
		}
		f.kind = kindElse
		f.thenReachable = w.reachable
		w.reachable = f.entryReachable
		if w.reachable {
			w.open(r.pos, insCharge)
		}
	case 0x0b:
		f := w.frames[len(w.frames)-1]
		w.frames = w.frames[:len(w.frames)-1]
		w.fn.FanInSquares += f.fanIn * f.fanIn
		join := false // whether more than fall-through reaches past end
		switch f.kind {
		case kindFunction:
			if !r.done() {
				return false, r.errorf("code after the function's end")
			}
			return true, nil
		case kindBlock:
			join = f.targeted
		case kindIf:
			join = f.entryReachable // the false edge
		case kindElse:
			join = f.thenReachable || f.targeted
		}
		if join {
			w.reachable = true
			w.open(r.pos, insCharge)
		}
	}
	return false, nil
}

// miscOp reads the immediates of a 0xfc instruction.
func (w *rewriter) miscOp(r *reader, start int) error {
	sub, err := r.u32()
	if err != nil {
		return err
	}
	switch {
	case sub <= 7: // saturating truncation
		return nil
	case sub == 8: // memory.init data mem
		err = u32s(r, 2)
		w.bulk(start, memoryBytesShift)
	case sub == 9, sub == 13, sub == 16: // data.drop elem.drop table.size
		err = u32s(r, 1)
	case sub == 10: // memory.copy mem mem
		err = u32s(r, 2)
		w.bulk(start, memoryBytesShift)
	case sub == 11: // memory.fill mem
		err = u32s(r, 1)
		w.bulk(start, memoryBytesShift)
	case sub == 12, sub == 14: // table.init elem table, table.copy table table
		err = u32s(r, 2)
		w.bulk(start, tableShift)
	case sub == 15: // table.grow table
		var t uint32
		if t, err = r.u32(); err == nil {
			if int(t) >= len(w.m.shape.Tables) {
				return r.errorf("table.grow of table %d out of range", t)
			}
			w.m.shape.Tables[t].Grown = true
		}
		w.bulk(start, tableGrowShift)
	case sub == 17: // table.fill table
		err = u32s(r, 1)
		w.bulk(start, tableShift)
	default:
		return r.errorf("unknown opcode 0xfc %d", sub)
	}
	return err
}

// simdReserved marks the unassigned opcodes of 0xfd 94..255.
var simdReserved = func() (m [256]bool) {
	for _, op := range []byte{0x9a, 0xa2, 0xa5, 0xa6, 0xaf, 0xb0, 0xb2, 0xb3, 0xb4,
		0xbb, 0xc2, 0xc5, 0xc6, 0xcf, 0xd0, 0xd2, 0xd3, 0xd4, 0xe2, 0xee} {
		m[op] = true
	}
	return m
}()

// simdOp reads the immediates of a 0xfd instruction.
func simdOp(r *reader) error {
	at := r.pos
	sub, err := r.u32()
	if err != nil {
		return err
	}
	// wazero reads the opcode as one byte, not as the LEB128 the spec
	// says: right for the minimal encoding (below 128 one byte; from 128 a
	// second byte 0x01, which it then runs as a nop), but any longer one
	// leaves it reading different instructions from the pass's, such as a
	// global.set of the fuel hidden in what the pass takes for a memarg.
	if n := r.pos - at; !(sub < 0x80 && n == 1) && !(sub < 0x100 && n == 2 && r.buf[at+1] == 0x01) && sub < 0x100 {
		return fmt.Errorf("%w: opcode 0xfd %d in a %d-byte encoding (only the minimal one is read alike by the runtime) at offset %d", ErrUnsupported, sub, n, r.base+at)
	}
	switch {
	case sub <= 11, sub == 92, sub == 93: // loads and stores
		return memarg(r)
	case sub == 12, sub == 13: // v128.const, i8x16.shuffle
		return r.skip(16)
	case sub <= 20: // swizzle, splats
		return nil
	case sub <= 34: // extract and replace lane
		return r.skip(1)
	case sub <= 83: // comparisons and bitwise
		return nil
	case sub <= 91: // load and store lane
		if err := memarg(r); err != nil {
			return err
		}
		return r.skip(1)
	case sub <= 255 && !simdReserved[sub]:
		return nil
	case sub >= 0x100 && sub <= 0x113:
		return fmt.Errorf("%w: opcode 0xfd %d (relaxed SIMD)", ErrUnsupported, sub)
	}
	return r.errorf("unknown opcode 0xfd %d", sub)
}

// emit appends the code of one insertion.
func (w *rewriter) emit(out []byte, ins insertion) []byte {
	switch ins.kind {
	case insCharge, insChargeCheck:
		if ins.cost > 0 {
			out = appendU32(append(out, 0x23), w.fuelIndex) // global.get
			out = appendS64(append(out, 0x42), ins.cost)    // i64.const
			out = append(out, 0x7d)                         // i64.sub
			out = appendU32(append(out, 0x24), w.fuelIndex) // global.set
		}
		if ins.kind == insChargeCheck {
			out = w.emitCheck(out)
		}
	case insCheck:
		out = w.emitCheck(out)
	case insBulk:
		out = appendU32(append(out, 0x22), w.scratch)   // local.tee
		out = appendU32(append(out, 0x23), w.fuelIndex) // global.get
		out = appendU32(append(out, 0x20), w.scratch)   // local.get
		out = append(out, 0xad)                         // i64.extend_i32_u
		switch {
		case ins.shift > 0:
			out = append(out, 0x42, byte(ins.shift), 0x88) // i64.const; i64.shr_u
		case ins.shift < 0:
			out = append(out, 0x42, byte(-ins.shift), 0x86) // i64.const; i64.shl
		}
		out = append(out, 0x7d)                         // i64.sub
		out = appendU32(append(out, 0x24), w.fuelIndex) // global.set
		out = w.emitCheck(out)
	}
	return out
}

// emitCheck appends: if fuel < 0 then refuel (which traps if the reserve
// cannot cover it).
func (w *rewriter) emitCheck(out []byte) []byte {
	out = appendU32(append(out, 0x23), w.fuelIndex)   // global.get
	out = append(out, 0x42, 0x00, 0x53, 0x04, 0x40)   // i64.const 0; i64.lt_s; if
	out = appendU32(append(out, 0x10), w.refuelIndex) // call refuel
	return append(out, 0x0b)                          // end
}
