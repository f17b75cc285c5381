package wasm

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

const (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
)

// hostModuleBuilder defines the "aegis" module (docs/ABI.md). Every
// function reads the request's state from the call's context; pointers are
// bounds-checked against the caller's memory and a bad one traps.
func hostModuleBuilder(rt wazero.Runtime) wazero.HostModuleBuilder {
	b := rt.NewHostModuleBuilder(HostModule)
	def := func(name string, fn api.GoModuleFunc, params, results []api.ValueType, paramNames ...string) {
		b.NewFunctionBuilder().WithGoModuleFunction(fn, params, results).WithParameterNames(paramNames...).Export(name)
	}
	def("kv_get", kvGet, []api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32}, "key_ptr", "key_len", "buf_ptr", "buf_cap")
	def("kv_set", kvSet, []api.ValueType{i32, i32, i32, i32, i64}, []api.ValueType{i32}, "key_ptr", "key_len", "val_ptr", "val_len", "ttl_ms")
	def("kv_delete", kvDelete, []api.ValueType{i32, i32}, []api.ValueType{i32}, "key_ptr", "key_len")
	def("http_fetch", httpFetch, []api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32}, "req_ptr", "req_len", "resp_ptr", "resp_cap")
	def("http_fetch_result", httpFetchResult, []api.ValueType{i32, i32}, []api.ValueType{i32}, "buf_ptr", "buf_cap")
	def("log", logCall, []api.ValueType{i32, i32, i32, i32, i32}, []api.ValueType{i32}, "level", "msg_ptr", "msg_len", "attrs_ptr", "attrs_len")
	return b
}

// trapError is what a host function panics with on a bad argument; wazero
// turns the panic into the call's error, a trap.
type trapError struct{ msg string }

func (e trapError) Error() string { return e.msg }

func state(ctx context.Context, fn string) *instanceState {
	st, ok := ctx.Value(stateKey{}).(*instanceState)
	if !ok {
		panic(trapError{HostModule + "." + fn + ": called outside a request"})
	}
	return st
}

// read copies guest memory [ptr, ptr+n).
func read(mod api.Module, fn, what string, ptr, n uint32) []byte {
	mem := mod.Memory()
	if mem == nil {
		panic(trapError{fmt.Sprintf("%s.%s: the module has no memory", HostModule, fn)})
	}
	b, ok := mem.Read(ptr, n)
	if !ok {
		panic(trapError{fmt.Sprintf("%s.%s: %s [%d, +%d) is outside memory of %d bytes", HostModule, fn, what, ptr, n, mem.Size())})
	}
	return append([]byte(nil), b...)
}

// writeResult copies b into the guest's buffer if it fits and returns its
// length either way: a length over cap tells the guest to call again with
// a larger buffer.
func writeResult(mod api.Module, fn string, ptr, capacity uint32, b []byte) uint64 {
	if uint64(len(b)) <= uint64(capacity) {
		if !mod.Memory().Write(ptr, b) {
			panic(trapError{fmt.Sprintf("%s.%s: buffer [%d, +%d) is outside memory", HostModule, fn, ptr, len(b))})
		}
	} else if _, ok := mod.Memory().Read(ptr, capacity); !ok {
		panic(trapError{fmt.Sprintf("%s.%s: buffer [%d, +%d) is outside memory", HostModule, fn, ptr, capacity)})
	}
	return uint64(uint32(int32(len(b))))
}

func code(c Code) uint64 { return uint64(uint32(int32(c))) }

func kvGet(ctx context.Context, mod api.Module, stack []uint64) {
	st := state(ctx, "kv_get")
	key := read(mod, "kv_get", "key", api.DecodeU32(stack[0]), api.DecodeU32(stack[1]))
	value, ok, err := st.guard.KVGet(ctx, key)
	chargeHost(ctx, "kv_get", len(key)+len(value))
	switch {
	case err != nil:
		stack[0] = code(codeOf(err))
	case !ok:
		stack[0] = code(CodeNotFound)
	default:
		stack[0] = writeResult(mod, "kv_get", api.DecodeU32(stack[2]), api.DecodeU32(stack[3]), value)
	}
}

func kvSet(ctx context.Context, mod api.Module, stack []uint64) {
	st := state(ctx, "kv_set")
	key := read(mod, "kv_set", "key", api.DecodeU32(stack[0]), api.DecodeU32(stack[1]))
	value := read(mod, "kv_set", "value", api.DecodeU32(stack[2]), api.DecodeU32(stack[3]))
	chargeHost(ctx, "kv_set", len(key)+len(value))
	ttlMS := int64(stack[4])
	if ttlMS < 0 || ttlMS > int64(time.Duration(1<<62)/time.Millisecond) {
		stack[0] = code(CodeInvalid)
		return
	}
	stack[0] = code(codeOf(st.guard.KVSet(ctx, key, value, time.Duration(ttlMS)*time.Millisecond)))
}

func kvDelete(ctx context.Context, mod api.Module, stack []uint64) {
	st := state(ctx, "kv_delete")
	key := read(mod, "kv_delete", "key", api.DecodeU32(stack[0]), api.DecodeU32(stack[1]))
	chargeHost(ctx, "kv_delete", len(key))
	stack[0] = code(codeOf(st.guard.KVDelete(ctx, key)))
}

func httpFetch(ctx context.Context, mod api.Module, stack []uint64) {
	st := state(ctx, "http_fetch")
	st.lastFetch = nil
	raw := read(mod, "http_fetch", "request", api.DecodeU32(stack[0]), api.DecodeU32(stack[1]))
	chargeHost(ctx, "http_fetch", len(raw))
	req, err := DecodeFetchRequest(raw)
	if err != nil {
		stack[0] = code(CodeInvalid)
		return
	}
	resp, err := st.guard.Fetch(ctx, req)
	if err != nil {
		stack[0] = code(codeOf(err))
		return
	}
	st.lastFetch = EncodeFetchResponse(resp)
	st.charge(HostModule+".http_fetch", bytesUnits(uint64(len(st.lastFetch))))
	stack[0] = writeResult(mod, "http_fetch", api.DecodeU32(stack[2]), api.DecodeU32(stack[3]), st.lastFetch)
}

func httpFetchResult(ctx context.Context, mod api.Module, stack []uint64) {
	st := state(ctx, "http_fetch_result")
	if st.lastFetch == nil {
		chargeHost(ctx, "http_fetch_result", 0)
		stack[0] = code(CodeNotFound)
		return
	}
	chargeHost(ctx, "http_fetch_result", len(st.lastFetch))
	stack[0] = writeResult(mod, "http_fetch_result", api.DecodeU32(stack[0]), api.DecodeU32(stack[1]), st.lastFetch)
}

// Log levels of the log call, as slog names them.
var logLevels = map[uint32]slog.Level{0: slog.LevelDebug, 1: slog.LevelInfo, 2: slog.LevelWarn, 3: slog.LevelError}

func logCall(ctx context.Context, mod api.Module, stack []uint64) {
	st := state(ctx, "log")
	level, ok := logLevels[api.DecodeU32(stack[0])]
	msg := read(mod, "log", "message", api.DecodeU32(stack[1]), min(api.DecodeU32(stack[2]), maxLogLineBytes+1))
	attrsRaw := read(mod, "log", "attributes", api.DecodeU32(stack[3]), min(api.DecodeU32(stack[4]), maxLogLineBytes+1))
	chargeHost(ctx, "log", len(msg)+len(attrsRaw))
	attrs, err := DecodeLogAttrs(attrsRaw)
	if !ok || err != nil {
		stack[0] = code(CodeInvalid)
		return
	}
	st.logs.emit(StreamLog, levelName(level), string(msg), attrs, false)
	stack[0] = code(CodeOK)
}

func levelName(l slog.Level) string {
	switch l {
	case slog.LevelDebug:
		return "debug"
	case slog.LevelWarn:
		return "warn"
	case slog.LevelError:
		return "error"
	}
	return "info"
}

// unavailableHost answers every call when an Invocation has no Host.
type unavailableHost struct{}

var errNoHost = fmt.Errorf("no host services for this request")

func (unavailableHost) KVGet(context.Context, string, []byte) ([]byte, bool, error) {
	return nil, false, errNoHost
}
func (unavailableHost) KVSet(context.Context, string, []byte, []byte, time.Duration, int64) error {
	return errNoHost
}
func (unavailableHost) KVDelete(context.Context, string, []byte) error { return errNoHost }
func (unavailableHost) Fetch(context.Context, string, FetchRequest) (FetchResponse, error) {
	return FetchResponse{}, errNoHost
}
