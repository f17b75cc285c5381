package wasm

import (
	"bytes"
	"context"
	"slices"
	"sync"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// environ is a request's environment as WASI's environ_get copies it:
// every "NAME=value" followed by a NUL, back to back, and where each
// starts. appendCGIEnviron builds it; its buffers are reused from one
// request to the next (environPool).
type environ struct {
	buf     []byte
	offsets []uint32
	// scratch holds the variables in the order they were added, spans
	// where each is; finish sorts them into buf.
	scratch []byte
	spans   []span
}

type span struct{ start, end int }

// environPool keeps environments for the next requests; one over
// maxPooledEnviron bytes (a request with large headers) is left to the GC.
var environPool = sync.Pool{New: func() any { return new(environ) }}

const maxPooledEnviron = 64 << 10

func putEnviron(e *environ) {
	if cap(e.buf)+cap(e.scratch) <= maxPooledEnviron {
		environPool.Put(e)
	}
}

func (e *environ) reset() {
	e.buf, e.offsets, e.scratch, e.spans = e.buf[:0], e.offsets[:0], e.scratch[:0], e.spans[:0]
}

// add adds name=value unless value holds a NUL.
func (e *environ) add(name, value string) {
	if hasNUL(value) {
		return
	}
	e.open(name)
	e.scratch = append(e.scratch, value...)
	e.close()
}

// open starts the variable name; the caller appends its value to scratch
// and calls close.
func (e *environ) open(name string) {
	e.spans = append(e.spans, span{start: len(e.scratch)})
	e.scratch = append(e.scratch, name...)
	e.scratch = append(e.scratch, '=')
}

func (e *environ) close() { e.spans[len(e.spans)-1].end = len(e.scratch) }

func (e *environ) text(s span) []byte { return e.scratch[s.start:s.end] }

// finish sorts the variables by their bytes into buf, keeping the first
// of two with the same name.
func (e *environ) finish() {
	slices.SortFunc(e.spans, func(a, b span) int { return bytes.Compare(e.text(a), e.text(b)) })
	var last []byte
	for _, s := range e.spans {
		kv := e.text(s)
		name := kv[:bytes.IndexByte(kv, '=')+1]
		if last != nil && bytes.Equal(name, last) {
			continue
		}
		last = name
		e.offsets = append(e.offsets, uint32(len(e.buf)))
		e.buf = append(e.buf, kv...)
		e.buf = append(e.buf, 0)
	}
}

// WASI errno values the environment functions return.
const (
	errnoSuccess = 0
	errnoFault   = 21
)

// wasiBuilder is wazero's WASI module with the environment served from the
// request's instanceState instead of the module configuration: wazero's
// WithEnv copies the whole configuration for every variable, which made
// building a request's environment a fifth of serving a hello module.
func wasiBuilder(rt wazero.Runtime) wazero.HostModuleBuilder {
	b := rt.NewHostModuleBuilder(wasi_snapshot_preview1.ModuleName)
	wasi_snapshot_preview1.NewFunctionExporter().ExportFunctions(b)
	i32 := api.ValueTypeI32
	b.NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(environSizesGet), []api.ValueType{i32, i32}, []api.ValueType{i32}).
		WithParameterNames("result.environc", "result.environv_len").
		WithResultNames("errno").
		Export("environ_sizes_get")
	b.NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(environGet), []api.ValueType{i32, i32}, []api.ValueType{i32}).
		WithParameterNames("environ", "environ_buf").
		WithResultNames("errno").
		Export("environ_get")
	return b
}

// requestEnviron is the environment of the request running in ctx; none
// outside a request.
func requestEnviron(ctx context.Context) *environ {
	if st, ok := ctx.Value(stateKey{}).(*instanceState); ok && st.environ != nil {
		return st.environ
	}
	return &environ{}
}

// environSizesGet writes the number of variables and the bytes environ_get
// copies.
func environSizesGet(ctx context.Context, mod api.Module, stack []uint64) {
	e := requestEnviron(ctx)
	mem := mod.Memory()
	if mem == nil || !mem.WriteUint32Le(api.DecodeU32(stack[0]), uint32(len(e.offsets))) ||
		!mem.WriteUint32Le(api.DecodeU32(stack[1]), uint32(len(e.buf))) {
		stack[0] = errnoFault
		return
	}
	stack[0] = errnoSuccess
}

// environGet writes a pointer to each variable at environ and the
// variables themselves at environ_buf. Nothing is written unless all of
// it fits.
func environGet(ctx context.Context, mod api.Module, stack []uint64) {
	e := requestEnviron(ctx)
	ptrs, bufAt := api.DecodeU32(stack[0]), api.DecodeU32(stack[1])
	mem := mod.Memory()
	if mem == nil {
		stack[0] = errnoFault
		return
	}
	size := uint64(mem.Size())
	if uint64(ptrs)+4*uint64(len(e.offsets)) > size || uint64(bufAt)+uint64(len(e.buf)) > size {
		stack[0] = errnoFault
		return
	}
	for i, off := range e.offsets {
		if !mem.WriteUint32Le(ptrs+4*uint32(i), bufAt+off) {
			stack[0] = errnoFault
			return
		}
	}
	if !mem.Write(bufAt, e.buf) {
		stack[0] = errnoFault
		return
	}
	stack[0] = errnoSuccess
}
