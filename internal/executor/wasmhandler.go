package executor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/aegis-edge/aegis/internal/sandbox"
	"github.com/aegis-edge/aegis/internal/wasm"
)

// HandlerWasm runs edge functions: the payload of the workers an Executor
// starts.
const HandlerWasm = "wasm"

// Host call operations of the wasm handler. The supervisor answers
// opModule with the module of the invocation in flight and the others
// through a wasm.Guard holding that function's policy.
const (
	opModule   = "module"    // data: digest; reply: the module's bytes
	opKVGet    = "kv-get"    // data: key; reply: status, value
	opKVSet    = "kv-set"    // data: ttl, key, value; reply: status
	opKVDelete = "kv-delete" // data: key; reply: status
	opFetch    = "fetch"     // data: wasm.EncodeFetchRequest; reply: status, wasm.EncodeFetchResponse
)

// hostStatus leads the reply to a key-value or fetch call: what the
// supervisor's Guard or Host said, so that the guest sees the same code as
// in-process (wasm maps these errors to its Codes).
type hostStatus byte

const (
	hostOK hostStatus = iota
	hostNotFound
	hostInvalid
	hostTooLarge
	hostQuota
	hostDenied
	hostLimit
	hostTimeout
	hostUnavailable
)

// statusOf classifies a Host or Guard error, in the order wasm does.
func statusOf(err error) hostStatus {
	switch {
	case err == nil:
		return hostOK
	case errors.Is(err, wasm.ErrInvalidArgument):
		return hostInvalid
	case errors.Is(err, wasm.ErrTooLarge), errors.Is(err, wasm.ErrFetchTooLarge):
		return hostTooLarge
	case errors.Is(err, wasm.ErrKVQuota):
		return hostQuota
	case errors.Is(err, wasm.ErrHostNotAllowed):
		return hostDenied
	case errors.Is(err, wasm.ErrFetchLimit):
		return hostLimit
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return hostTimeout
	default:
		return hostUnavailable
	}
}

// errorOf is the inverse of statusOf, in the worker.
func errorOf(s hostStatus, msg string) error {
	sentinel := errHostUnavailable
	switch s {
	case hostOK, hostNotFound:
		return nil
	case hostInvalid:
		sentinel = wasm.ErrInvalidArgument
	case hostTooLarge:
		sentinel = wasm.ErrTooLarge
	case hostQuota:
		sentinel = wasm.ErrKVQuota
	case hostDenied:
		sentinel = wasm.ErrHostNotAllowed
	case hostLimit:
		sentinel = wasm.ErrFetchLimit
	case hostTimeout:
		sentinel = context.DeadlineExceeded
	}
	return fmt.Errorf("supervisor: %s: %w", msg, sentinel)
}

var errHostUnavailable = errors.New("host service unavailable")

// Bounds of what a worker keeps of one request's log. The engine already
// limits a request's log; these only keep the response frame small.
const (
	maxLogLines = 1024
	maxLogBytes = 96 << 10
)

// maxCachedModules bounds the compiled modules a worker keeps.
const maxCachedModules = 16

// wasmHandler is the worker side: it loads the modules it is sent (their
// bytes and the code the compile worker made of them, fetched from the
// supervisor once per digest), runs invocations and proxies their host
// calls. A worker serves one request at a time, so it needs no locking.
type wasmHandler struct {
	engine  *wasm.Engine
	code    *wasm.CodeCache
	modules map[moduleKey]*cachedModule
	uses    uint64
}

// moduleKey names a compilation: the same bytes compiled with another
// memory or size limit is another module.
type moduleKey struct {
	digest   string
	pages    uint32
	maxBytes int64
}

type cachedModule struct {
	module  *wasm.Module
	lastUse uint64
}

func newWasmHandler() *wasmHandler {
	return &wasmHandler{code: wasm.NewCodeCache(), modules: map[moduleKey]*cachedModule{}}
}

// Handle runs one invocation. Failures of the function are part of the
// answer (a *wasm.Error survives the trip); an error return means the
// worker could not run it at all.
func (h *wasmHandler) Handle(ctx context.Context, req []byte, host sandbox.HostCaller) ([]byte, error) {
	r, err := decodeWasmRequest(req)
	if err != nil {
		return nil, err
	}
	// The invocation's timeout starts once the module is loaded; the
	// supervisor gave the worker time for that when it sent the module.
	ctx = context.WithoutCancel(ctx)
	compiled := h.code.Compiled()
	m, err := h.module(ctx, r, host)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, r.Timeout)
	defer cancel()
	out := wasmResponse{Compiled: h.code.Compiled() > compiled}
	logs := logCollector{lines: &out.Logs}
	resp, err := m.Serve(ctx, wasm.Invocation{
		Function: r.Function, Version: r.Version, Limits: r.Limits, AllowedHosts: r.AllowedHosts,
		Request: r.Request, Host: proxyHost{host}, Log: logs.add,
	})
	if resp != nil {
		out.FuelUsed = resp.FuelUsed
	}
	var we *wasm.Error
	switch {
	case errors.As(err, &we):
		out.Failed, out.Kind, out.ErrStatus, out.ErrorID = true, string(we.Kind), we.Status, we.ErrorID
		if we.Err != nil {
			out.Message = we.Err.Error()
		}
	case err != nil:
		return nil, err
	default:
		out.Status, out.Header, out.Body = resp.Status, resp.Header, resp.Body
	}
	return out.encode(), nil
}

// module returns the compiled module for r, loading it on first use.
func (h *wasmHandler) module(ctx context.Context, r wasmRequest, host sandbox.HostCaller) (*wasm.Module, error) {
	if h.engine == nil {
		e, err := wasm.NewEngine(ctx, wasm.EngineOptions{Code: h.code})
		if err != nil {
			return nil, fmt.Errorf("starting the wasm engine: %w", err)
		}
		h.engine = e
	}
	h.uses++
	key := moduleKey{r.Digest, r.Limits.MemoryPages, r.Limits.MaxModuleBytes}
	if c, ok := h.modules[key]; ok {
		c.lastUse = h.uses
		return c.module, nil
	}
	b, err := host.Call(ctx, opModule, []byte(r.Digest))
	if err != nil {
		return nil, fmt.Errorf("fetching module %s: %w", r.Digest, err)
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != r.Digest {
		return nil, fmt.Errorf("module %s: the supervisor sent other bytes", r.Digest)
	}
	code, err := fetchCode(ctx, r.Digest, host)
	if err != nil {
		return nil, err
	}
	// Compile finds the code and loads it; the engine keeps its own copy.
	h.code.Put(code)
	m, err := h.engine.Compile(ctx, b, r.Limits)
	h.code.Forget(code.Key)
	if err != nil {
		return nil, fmt.Errorf("loading module %s: %w", r.Digest, err)
	}
	if len(h.modules) >= maxCachedModules {
		h.evict()
	}
	h.modules[key] = &cachedModule{module: m, lastUse: h.uses}
	return m, nil
}

// fetchCode gets a version's compiled code from the supervisor, in chunks.
func fetchCode(ctx context.Context, digest string, host sandbox.HostCaller) (wasm.CompiledCode, error) {
	var code wasm.CompiledCode
	for {
		e := &encoder{}
		e.str(digest)
		e.uint(uint64(len(code.Bytes)))
		b, err := host.Call(ctx, opCode, e.b)
		if err != nil {
			return code, fmt.Errorf("fetching the code of module %s: %w", digest, err)
		}
		d := &decoder{b: b}
		key, total, chunk := d.bytes(), d.uint(), d.bytes()
		if err := d.end(); err != nil || len(key) != len(code.Key) || len(chunk) == 0 && uint64(len(code.Bytes)) < total {
			return code, fmt.Errorf("fetching the code of module %s: malformed reply (%v)", digest, err)
		}
		if code.Bytes == nil {
			copy(code.Key[:], key)
			code.Bytes = make([]byte, 0, total)
		}
		code.Bytes = append(code.Bytes, chunk...)
		if uint64(len(code.Bytes)) >= total {
			return code, nil
		}
	}
}

// evict closes the least recently used module.
func (h *wasmHandler) evict() {
	var oldest moduleKey
	first := true
	for k, c := range h.modules {
		if first || c.lastUse < h.modules[oldest].lastUse {
			oldest, first = k, false
		}
	}
	h.modules[oldest].module.Close()
	delete(h.modules, oldest)
}

// logCollector keeps a request's log lines for the response, within
// maxLogLines and maxLogBytes.
type logCollector struct {
	lines *[]logLine
	bytes int
}

func (c *logCollector) add(stream, level, msg string, attrs map[string]string) {
	n := len(msg)
	for k, v := range attrs {
		n += len(k) + len(v)
	}
	if len(*c.lines) >= maxLogLines || c.bytes+n > maxLogBytes {
		return
	}
	c.bytes += n
	*c.lines = append(*c.lines, logLine{Stream: stream, Level: level, Msg: msg, Attrs: attrs})
}

// proxyHost is the worker's wasm.Host: every call goes to the supervisor,
// which applies the function's policy again with its own Guard.
type proxyHost struct{ caller sandbox.HostCaller }

var _ wasm.Host = proxyHost{}

// call makes a host call whose reply leads with a hostStatus.
func (p proxyHost) call(ctx context.Context, op string, data []byte) (hostStatus, []byte, error) {
	reply, err := p.caller.Call(ctx, op, data)
	if err != nil {
		return 0, nil, fmt.Errorf("%s: %w: %w", op, errHostUnavailable, err)
	}
	if len(reply) == 0 || hostStatus(reply[0]) > hostUnavailable {
		return 0, nil, fmt.Errorf("%s: malformed reply: %w", op, errHostUnavailable)
	}
	s, rest := hostStatus(reply[0]), reply[1:]
	return s, rest, errorOf(s, string(rest))
}

// KVGet implements wasm.Host.
func (p proxyHost) KVGet(ctx context.Context, _ string, key []byte) ([]byte, bool, error) {
	s, v, err := p.call(ctx, opKVGet, key)
	if err != nil || s == hostNotFound {
		return nil, false, err
	}
	return v, true, nil
}

// KVSet implements wasm.Host. The quota is the supervisor's to apply.
func (p proxyHost) KVSet(ctx context.Context, _ string, key, value []byte, ttl time.Duration, _ int64) error {
	e := &encoder{b: make([]byte, 0, 16+len(key)+len(value))}
	e.int(int64(ttl))
	e.bytes(key)
	e.bytes(value)
	_, _, err := p.call(ctx, opKVSet, e.b)
	return err
}

// KVDelete implements wasm.Host.
func (p proxyHost) KVDelete(ctx context.Context, _ string, key []byte) error {
	_, _, err := p.call(ctx, opKVDelete, key)
	return err
}

// Fetch implements wasm.Host.
func (p proxyHost) Fetch(ctx context.Context, _ string, req wasm.FetchRequest) (wasm.FetchResponse, error) {
	_, b, err := p.call(ctx, opFetch, wasm.EncodeFetchRequest(req))
	if err != nil {
		return wasm.FetchResponse{}, err
	}
	resp, err := wasm.DecodeFetchResponse(b)
	if err != nil {
		return wasm.FetchResponse{}, fmt.Errorf("fetch: %w: %w", errHostUnavailable, err)
	}
	return resp, nil
}
