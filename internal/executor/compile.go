package executor

import (
	"context"
	"errors"
	"fmt"

	"github.com/aegis-edge/aegis/internal/sandbox"
	"github.com/aegis-edge/aegis/internal/wasm"
)

// HandlerCompile compiles modules: the payload of the executor's compile
// worker. The node never compiles or instantiates a tenant's module
// itself: this worker compiles each version once, under a deadline, runs
// the deploy checks (a trial instance included) and returns the compiled
// code, which the serving workers load instead of compiling.
const HandlerCompile = "wasm-compile"

// opCode is the serving workers' host call for a version's compiled code,
// in chunks: data is the digest and an offset, the reply the code's key,
// its total length and the chunk from offset (at most codeChunk bytes), so
// that no frame to a serving worker is larger than a module.
const opCode = "code"

const codeChunk = 4 << 20

// compileRequest is what the executor sends the compile worker. Code, if
// set, is the module's code from an earlier compile (kept in the code
// directory): the worker loads it rather than compile, to run the checks.
type compileRequest struct {
	Limits wasm.Limits
	Module []byte
	Code   wasm.CompiledCode
}

// compileResponse is the compile worker's answer: the code, or why the
// module was refused. Compiled says wazero compiled the module; a refusal
// without it came before or during compiling and does not depend on the
// function's limits. Code is empty when the worker loaded the code it was
// sent.
type compileResponse struct {
	Failed   bool
	Compiled bool
	Invalid  bool // the refusal wraps wasm.ErrInvalidModule
	Message  string
	Code     wasm.CompiledCode
}

func (r *compileRequest) encode() []byte {
	e := &encoder{b: make([]byte, 0, 128+len(r.Module))}
	e.uint(wireVersion)
	encodeLimits(e, r.Limits)
	e.bytes(r.Module)
	e.bytes(r.Code.Key[:])
	e.bytes(r.Code.Bytes)
	return e.b
}

func decodeCompileRequest(b []byte) (compileRequest, error) {
	d := &decoder{b: b}
	var r compileRequest
	if v := d.uint(); d.err == nil && v != wireVersion {
		d.fail(fmt.Sprintf("version %d", v))
	}
	r.Limits = decodeLimits(d)
	r.Module = d.bytes()
	r.Code = decodeCode(d)
	return r, d.end()
}

func boolFlag(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

func (r *compileResponse) encode() []byte {
	e := &encoder{b: make([]byte, 0, 64+len(r.Message)+len(r.Code.Bytes))}
	e.uint(wireVersion)
	e.uint(boolFlag(r.Failed))
	e.uint(boolFlag(r.Compiled))
	e.uint(boolFlag(r.Invalid))
	e.str(r.Message)
	e.bytes(r.Code.Key[:])
	e.bytes(r.Code.Bytes)
	return e.b
}

func decodeCompileResponse(b []byte) (compileResponse, error) {
	d := &decoder{b: b}
	var r compileResponse
	if v := d.uint(); d.err == nil && v != wireVersion {
		d.fail(fmt.Sprintf("version %d", v))
	}
	r.Failed, r.Compiled, r.Invalid = d.uint() == 1, d.uint() == 1, d.uint() == 1
	r.Message = d.str()
	r.Code = decodeCode(d)
	if d.err == nil && !r.Failed && r.Compiled && len(r.Code.Bytes) == 0 {
		d.fail("compiled, but no code")
	}
	return r, d.end()
}

func decodeCode(d *decoder) wasm.CompiledCode {
	var c wasm.CompiledCode
	if key := d.bytes(); d.err == nil && len(key) != len(c.Key) {
		d.fail("code key length")
	} else {
		copy(c.Key[:], key)
	}
	c.Bytes = d.bytes()
	return c
}

// compileHandler is the compile worker's side.
type compileHandler struct {
	engine *wasm.Engine
	code   *wasm.CodeCache
}

func newCompileHandler() *compileHandler { return &compileHandler{code: wasm.NewCodeCache()} }

// Handle compiles one module. Its refusal is part of the answer; an error
// return means the worker could not try.
func (h *compileHandler) Handle(ctx context.Context, req []byte, _ sandbox.HostCaller) ([]byte, error) {
	r, err := decodeCompileRequest(req)
	if err != nil {
		return nil, err
	}
	if h.engine == nil {
		if h.engine, err = wasm.NewEngine(ctx, wasm.EngineOptions{Code: h.code}); err != nil {
			return nil, fmt.Errorf("starting the wasm engine: %w", err)
		}
	}
	// The executor's deadline bounds the compile: it kills this worker.
	ctx = context.WithoutCancel(ctx)
	before := h.code.Compiled()
	if len(r.Code.Bytes) > 0 {
		h.code.Put(r.Code)
		defer h.code.Forget(r.Code.Key)
	}
	m, err := h.engine.Compile(ctx, r.Module, r.Limits)
	code := h.code.Take()
	out := compileResponse{Compiled: h.code.Compiled() > before}
	switch {
	case err != nil:
		out.Failed, out.Invalid, out.Message = true, errors.Is(err, wasm.ErrInvalidModule), err.Error()
	case !out.Compiled && len(r.Code.Bytes) > 0:
		// Loaded the code it was sent: the checks passed.
		m.Close()
	case len(code) != 1:
		m.Close()
		out.Failed, out.Message = true, fmt.Sprintf("compiling left %d pieces of code, want 1", len(code))
	default:
		// The compiled module only served the deploy checks; the serving
		// workers load the code.
		m.Close()
		out.Code = code[0]
	}
	return out.encode(), nil
}
