package wasm

import (
	"context"
	"encoding/binary"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// environ is a request's environment as WASI's environ_get copies it:
// every "NAME=value" followed by a NUL, back to back, and where each
// starts.
type environ struct {
	buf     []byte
	offsets []uint32
}

func newEnviron(vars []string) environ {
	n := 0
	for _, kv := range vars {
		n += len(kv) + 1
	}
	e := environ{buf: make([]byte, 0, n), offsets: make([]uint32, 0, len(vars))}
	for _, kv := range vars {
		e.offsets = append(e.offsets, uint32(len(e.buf)))
		e.buf = append(e.buf, kv...)
		e.buf = append(e.buf, 0)
	}
	return e
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
func requestEnviron(ctx context.Context) environ {
	if st, ok := ctx.Value(stateKey{}).(*instanceState); ok {
		return st.environ
	}
	return environ{}
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
	table := make([]byte, 4*len(e.offsets))
	for i, off := range e.offsets {
		binary.LittleEndian.PutUint32(table[4*i:], bufAt+off)
	}
	if !mem.Write(ptrs, table) || !mem.Write(bufAt, e.buf) {
		stack[0] = errnoFault
		return
	}
	stack[0] = errnoSuccess
}
