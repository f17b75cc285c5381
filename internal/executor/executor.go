package executor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aegis-edge/aegis/internal/functions"
	"github.com/aegis-edge/aegis/internal/sandbox"
	"github.com/aegis-edge/aegis/internal/wasm"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures an Executor. Zero fields take the defaults noted.
type Config struct {
	// Pool configures the workers. The executor sets Handler and Host;
	// MaxFrame defaults to what MaxModuleBytes and MaxResponseBytes need.
	Pool sandbox.Config
	// MaxModuleBytes and MaxResponseBytes are the largest module and
	// function response any Program will have (default: wasm.DefaultLimits).
	// Load refuses a Program whose limits need larger frames.
	MaxModuleBytes   int64
	MaxResponseBytes int64
	// Grace is how long past a request's deadline a worker has to report
	// the timeout itself before it is killed (default 250ms).
	Grace time.Duration
	// CompileTimeout bounds compiling one version in the compile worker at
	// Load, which is killed when it expires (functions.compile_timeout,
	// default DefaultCompileTimeout). It is also the extra time a serving
	// worker has, on the first request for a version, to load its code;
	// the request's own timeout starts after.
	CompileTimeout time.Duration
	// CodeDir keeps each version's compiled code across restarts, by the
	// module's SHA-256, so that a restarting node loads it rather than
	// compile every function again; empty keeps it in memory only.
	CodeDir string
}

// DefaultCompileTimeout is functions.compile_timeout's default: three
// times the slowest real module measured (the 2.8 MB hello-go example
// compiled in 10.8 s on a busy 2-core machine), so that real programs
// deploy on a slow host, while a compile bomb holds only the compile
// worker, and only that long (docs/RATIONALE.md).
const DefaultCompileTimeout = 30 * time.Second

// Executor is the functions.Executor the node uses: it runs every
// invocation in a sandboxed worker of its Pool. The supervisor keeps each
// version's bytes and serves the workers' host calls itself, through a
// wasm.Guard built from the invocation it sent, never from what a worker
// says.
type Executor struct {
	pool     *sandbox.Pool
	compiler *sandbox.Pool // one worker: HandlerCompile
	compSem  chan struct{} // one compile at a time, waited for with the caller's context
	grace    time.Duration
	compile  time.Duration
	maxFrame int
	maxCode  int64
	codeDir  string
	// compilations counts modules compiled, by worker kind ("compile",
	// "serve": a serving worker that compiled instead of loading) and
	// result.
	compilations *prometheus.CounterVec
}

var _ functions.Executor = (*Executor)(nil)

// frameSlack is what a frame needs beyond a module or response body:
// headers, log lines, the request's fields.
const frameSlack = 1 << 20

// New starts the compile worker and the pool of serving workers.
func New(ctx context.Context, cfg Config) (*Executor, error) {
	def := wasm.DefaultLimits()
	if cfg.MaxModuleBytes <= 0 {
		cfg.MaxModuleBytes = def.MaxModuleBytes
	}
	if cfg.MaxResponseBytes <= 0 {
		cfg.MaxResponseBytes = def.MaxResponseBytes
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 250 * time.Millisecond
	}
	if cfg.CompileTimeout <= 0 {
		cfg.CompileTimeout = DefaultCompileTimeout
	}
	if cfg.Pool.MaxFrame <= 0 {
		cfg.Pool.MaxFrame = int(max(sandbox.DefaultMaxFrame, cfg.MaxModuleBytes+frameSlack, cfg.MaxResponseBytes+maxLogBytes+frameSlack))
	}
	x := &Executor{
		grace: cfg.Grace, compile: cfg.CompileTimeout, maxFrame: cfg.Pool.MaxFrame, codeDir: cfg.CodeDir,
		maxCode: max(minMaxCode, codePerModuleByte*cfg.MaxModuleBytes), compSem: make(chan struct{}, 1),
		compilations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aegis_functions_compilations_total",
			Help: "Function modules compiled, by worker (compile: at deploy or restore; serve: a serving worker that compiled instead of loading the code) and result.",
		}, []string{"worker", "result"}),
	}
	cc := cfg.Pool
	cc.Size, cc.Handler, cc.Host, cc.Pipeline = 1, HandlerCompile, nil, false
	cc.MaxFrame = int(max(int64(cc.MaxFrame), cfg.MaxModuleBytes+x.maxCode+frameSlack))
	if x.codeDir != "" {
		if err := os.MkdirAll(x.codeDir, 0o700); err != nil {
			return nil, fmt.Errorf("creating the compiled code directory: %w", err)
		}
	}
	comp, err := sandbox.NewPool(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("starting the compile worker: %w", err)
	}
	x.compiler = comp
	cfg.Pool.Handler = HandlerWasm
	cfg.Pool.Host = sandbox.HostServerFunc(x.serveHost)
	p, err := sandbox.NewPool(ctx, cfg.Pool)
	if err != nil {
		x.Close()
		return nil, err
	}
	x.pool = p
	return x, nil
}

// Bounds of a version's compiled code, which the supervisor keeps and
// which the compile worker sends in one frame: the hello-go example's code
// is 3.6 times its module.
const (
	codePerModuleByte = 8
	minMaxCode        = 64 << 20
)

// Pool returns the executor's pool of serving workers, for its Stats and
// Reports.
func (x *Executor) Pool() *sandbox.Pool { return x.pool }

// CompilePool returns the pool of the one compile worker.
func (x *Executor) CompilePool() *sandbox.Pool { return x.compiler }

// Collectors returns the executor's metrics for registration.
func (x *Executor) Collectors() []prometheus.Collector {
	return []prometheus.Collector{x.compilations}
}

// Close stops the workers.
func (x *Executor) Close() error {
	var errs []error
	if x.pool != nil {
		errs = append(errs, x.pool.Close())
	}
	if x.compiler != nil {
		errs = append(errs, x.compiler.Close())
	}
	return errors.Join(errs...)
}

// Load checks what the module's bytes alone show, has the compile worker
// compile it and run the deploy checks that need the compiled module (a
// trial instance included) within CompileTimeout, and keeps its bytes and
// compiled code for the serving workers, which load the code and never
// compile. Compiles run one at a time, in their own worker: a module that
// compiles slowly holds that worker, not the serving ones, and not the
// caller's locks. A refusal for the module itself (it does not compile, or
// not in time, or kills the worker) wraps functions.ErrUncompilable.
func (x *Executor) Load(ctx context.Context, p functions.Program) (functions.Loaded, error) {
	if n := len(p.Module) + frameSlack; n > x.maxFrame {
		return nil, fmt.Errorf("module of %d bytes: over what the sandbox carries (%d): %w", len(p.Module), x.maxFrame-frameSlack, wasm.ErrInvalidModule)
	}
	if n := p.Limits.MaxResponseBytes + maxLogBytes + frameSlack; n > int64(x.maxFrame) {
		return nil, fmt.Errorf("response limit of %d bytes: over what the sandbox carries", p.Limits.MaxResponseBytes)
	}
	if err := wasm.Precheck(p.Module, p.Limits); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(p.Module)
	digest := hex.EncodeToString(sum[:])
	kept, ok := x.readCode(digest)
	code, err := x.compileModule(ctx, p, kept)
	if err != nil && ok {
		// The kept code may be what failed (another wazero, a damaged
		// file): compile from scratch once.
		x.removeCode(digest)
		kept, ok = wasm.CompiledCode{}, false
		code, err = x.compileModule(ctx, p, kept)
	}
	if err != nil {
		return nil, err
	}
	onDisk := ok
	if len(code.Bytes) == 0 {
		code = kept
	} else {
		onDisk = x.writeCode(digest, code)
	}
	prog := &program{x: x, prog: p, digest: digest, codeKey: code.Key, codeLen: int64(len(code.Bytes)), code: code.Bytes}
	if onDisk {
		// Served from the file: the node does not hold every version's
		// code (several times its module) in memory.
		prog.code, prog.codeFile = nil, x.codePath(digest)
	}
	return prog, nil
}

// compileModule runs one compile in the compile worker: it returns the
// new code, or no code when the worker loaded kept.
func (x *Executor) compileModule(ctx context.Context, p functions.Program, kept wasm.CompiledCode) (wasm.CompiledCode, error) {
	select {
	case x.compSem <- struct{}{}:
	case <-ctx.Done():
		return wasm.CompiledCode{}, fmt.Errorf("waiting for the compile worker: %w", ctx.Err())
	}
	defer func() { <-x.compSem }()
	req := compileRequest{Limits: p.Limits, Module: p.Module, Code: kept}
	var out compileResponse
	// The deadline is the compile's own: a caller that goes away does not
	// stop it, so that its verdict is the module's.
	// Each compile gets a fresh worker: whatever a module did to the one
	// that compiled it (its heap, or worse) cannot reach the code made for
	// the next tenant's module.
	_, err := x.compiler.DoExchange(context.WithoutCancel(ctx), p.Name, req.encode(), sandbox.Exchange{
		Timeout: x.compile,
		Once:    true,
		Accept: func(b []byte) error {
			var err error
			out, err = decodeCompileResponse(b)
			if err == nil && int64(len(out.Code.Bytes)) > x.maxCode {
				err = fmt.Errorf("%w: %d bytes of code, over %d", sandbox.ErrProtocol, len(out.Code.Bytes), x.maxCode)
			}
			return err
		},
	})
	count := func(result string) { x.compilations.WithLabelValues("compile", result).Inc() }
	switch {
	case errors.Is(err, sandbox.ErrDeadline):
		count("timeout")
		return wasm.CompiledCode{}, fmt.Errorf("%w: not compiled within %s (functions.compile_timeout); the worker compiling it was stopped",
			functions.ErrCompileTimeout, x.compile)
	case errors.Is(err, sandbox.ErrWorkerCrashed):
		count("crashed")
		return wasm.CompiledCode{}, fmt.Errorf("%w: the sandboxed worker compiling it died (over its memory cap?): %w", functions.ErrUncompilable, err)
	case err != nil:
		count("error")
		return wasm.CompiledCode{}, fmt.Errorf("compiling in the sandbox: %w", err)
	case out.Failed && !out.Compiled:
		count("refused")
		if out.Invalid {
			return wasm.CompiledCode{}, fmt.Errorf("%w: %w: %s", functions.ErrUncompilable, wasm.ErrInvalidModule, invalidReason(out.Message))
		}
		return wasm.CompiledCode{}, fmt.Errorf("%w: %s", functions.ErrUncompilable, out.Message)
	case out.Failed:
		// Compiled, then refused by a check that may depend on the
		// function's limits (its memory): not the module's for good.
		count("refused")
		if out.Invalid {
			return wasm.CompiledCode{}, fmt.Errorf("%w: %s", wasm.ErrInvalidModule, invalidReason(out.Message))
		}
		return wasm.CompiledCode{}, errors.New(out.Message)
	}
	if out.Compiled {
		count("ok")
	}
	return out.Code, nil
}

// codePath is where a module's code is kept.
func (x *Executor) codePath(digest string) string { return filepath.Join(x.codeDir, digest+".code") }

// readCode returns a module's kept code: its key, then the code.
func (x *Executor) readCode(digest string) (wasm.CompiledCode, bool) {
	var c wasm.CompiledCode
	if x.codeDir == "" {
		return c, false
	}
	b, err := os.ReadFile(x.codePath(digest))
	if err != nil || len(b) <= len(c.Key) || int64(len(b)) > x.maxCode+int64(len(c.Key)) {
		return c, false
	}
	copy(c.Key[:], b)
	c.Bytes = b[len(c.Key):]
	return c, true
}

// writeCode keeps a module's code, whole or not at all (a damaged file
// would only cost a compile). Failing to keep it costs a compile at the
// next start, nothing more.
func (x *Executor) writeCode(digest string, c wasm.CompiledCode) bool {
	if x.codeDir == "" {
		return false
	}
	f, err := os.CreateTemp(x.codeDir, digest+".*.tmp")
	if err != nil {
		return false
	}
	_, err = f.Write(c.Key[:])
	if err == nil {
		_, err = f.Write(c.Bytes)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), x.codePath(digest))
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err == nil
}

func (x *Executor) removeCode(digest string) {
	if x.codeDir != "" {
		os.Remove(x.codePath(digest))
	}
}

// PruneCode removes the kept code of every module but keep's (the
// digests of the deployed functions) and any partial file.
func (x *Executor) PruneCode(keep []string) error {
	if x.codeDir == "" {
		return nil
	}
	entries, err := os.ReadDir(x.codeDir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if digest, ok := strings.CutSuffix(name, ".code"); ok && slices.Contains(keep, digest) {
			continue
		}
		if err := os.Remove(filepath.Join(x.codeDir, name)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// invalidReason is the compile worker's refusal without the prefix of
// wasm.ErrInvalidModule, which the executor wraps again.
func invalidReason(msg string) string {
	return strings.TrimPrefix(msg, wasm.ErrInvalidModule.Error()+": ")
}

// program is one loaded version.
type program struct {
	x      *Executor
	prog   functions.Program
	digest string
	// The compiled code: in memory, or in codeFile after its key.
	codeKey  wasm.CodeKey
	codeLen  int64
	code     []byte
	codeFile string
	closed   atomic.Bool
}

// Close implements functions.Loaded. Workers drop the compiled code when
// their cache needs the room.
func (p *program) Close() error {
	p.closed.Store(true)
	return nil
}

// invocation is the supervisor's state for one request in flight, which
// the workers' host calls are served from.
type invocation struct {
	program  *program
	guard    *wasm.Guard // nil: no host services
	deadline time.Time
	// moduleSent: a worker gets the module, and time to load it, once
	// per request.
	moduleSent atomic.Bool
}

type invocationKey struct{}

// Serve runs one request in a worker. Failures of the function come back
// as the same *wasm.Error as in-process; failures of the worker (killed at
// the deadline, crashed, broke the protocol) as a *wasm.Error whose Kind
// is sandbox.ErrorStatus's cause.
func (p *program) Serve(ctx context.Context, inv wasm.Invocation) (*wasm.Response, error) {
	if p.closed.Load() {
		return nil, fmt.Errorf("serving %s: module %w", p.prog.Name, wasm.ErrClosed)
	}
	start := time.Now()
	lim := p.prog.Limits
	if inv.Limits != (wasm.Limits{}) {
		lim = inv.Limits
		lim.MemoryPages, lim.MaxModuleBytes = p.prog.Limits.MemoryPages, p.prog.Limits.MaxModuleBytes
	}
	if n := int64(len(inv.Request.Body)); n > lim.MaxRequestBytes {
		return nil, &wasm.Error{Kind: wasm.KindRequestSize, Status: http.StatusRequestEntityTooLarge,
			Err: fmt.Errorf("request body of %d bytes, over the %d byte limit", n, lim.MaxRequestBytes)}
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = start.Add(lim.Timeout)
	}
	call := &invocation{program: p, deadline: deadline}
	if inv.Host != nil {
		call.guard = wasm.NewGuard(inv.Host, wasm.Policy{Function: p.prog.Name, Limits: lim, AllowedHosts: inv.AllowedHosts})
	}
	req := wasmRequest{
		Function: inv.Function, Version: inv.Version, Digest: p.digest, Timeout: time.Until(deadline),
		Limits: lim, AllowedHosts: inv.AllowedHosts, Request: inv.Request,
	}
	// The worker stops the function at its deadline and reports it; the
	// pool kills it only a grace period later, or later still if it had
	// to load the module first (its timeout starts after). A caller
	// that goes away does not kill the worker: the request ends by its
	// deadline anyway.
	var out wasmResponse
	_, err := p.x.pool.DoExchange(context.WithValue(context.WithoutCancel(ctx), invocationKey{}, call), p.prog.Name, req.encode(), sandbox.Exchange{
		Deadline: deadline.Add(p.x.grace),
		Accept: func(b []byte) error {
			var err error
			out, err = decodeWasmResponse(b)
			if err == nil {
				err = checkResponse(&out, lim)
			}
			return err
		},
		Extend: func(op string) time.Duration {
			if op == opModule {
				return p.x.compile
			}
			return 0
		},
	})
	if err != nil {
		status, cause := sandbox.ErrorStatus(err)
		return nil, &wasm.Error{Kind: wasm.Kind(cause), Status: status, Err: err}
	}
	if out.Compiled {
		// The worker did not find the code it was given: it should never.
		p.x.compilations.WithLabelValues("serve", "ok").Inc()
	}
	forwardLogs(inv.Log, out.Logs)
	resp := &wasm.Response{FuelUsed: min(max(out.FuelUsed, 0), lim.Fuel), Duration: time.Since(start)}
	if out.Failed {
		return resp, &wasm.Error{Kind: wasm.Kind(out.Kind), Status: out.ErrStatus, ErrorID: out.ErrorID, Err: errors.New(out.Message)}
	}
	resp.Status, resp.Header, resp.Body = out.Status, out.Header, out.Body
	return resp, nil
}

// functionErrors are the kinds a worker may report, with their statuses:
// a worker cannot pick the status or put anything else in aegis-error.
var functionErrors = map[wasm.Kind]int{
	wasm.KindFuel: http.StatusServiceUnavailable, wasm.KindTimeout: http.StatusServiceUnavailable,
	wasm.KindMemory: http.StatusServiceUnavailable, wasm.KindResponseSize: http.StatusServiceUnavailable,
	wasm.KindRequestSize: http.StatusRequestEntityTooLarge,
	wasm.KindTrap:        http.StatusBadGateway, wasm.KindCGI: http.StatusBadGateway,
}

// maxErrorMessage bounds the error text a worker reports.
const maxErrorMessage = 4 << 10

// checkResponse holds a worker's answer to what the function may send:
// a known error kind with its status and a hex error id, or a response
// within the size limit whose status and header pass the CGI parser again.
// It replaces the header with the parser's copy.
func checkResponse(r *wasmResponse, lim wasm.Limits) error {
	if r.Failed {
		status, ok := functionErrors[wasm.Kind(r.Kind)]
		if !ok || status != r.ErrStatus {
			return fmt.Errorf("%w: error kind %.32q with status %d", sandbox.ErrProtocol, r.Kind, r.ErrStatus)
		}
		if _, err := hex.DecodeString(r.ErrorID); err != nil || len(r.ErrorID) > 32 {
			return fmt.Errorf("%w: error id %.40q", sandbox.ErrProtocol, r.ErrorID)
		}
		if len(r.Message) > maxErrorMessage {
			r.Message = r.Message[:maxErrorMessage] + "…"
		}
		return nil
	}
	if int64(len(r.Body)) > lim.MaxResponseBytes {
		return fmt.Errorf("%w: body of %d bytes over the %d byte limit", sandbox.ErrProtocol, len(r.Body), lim.MaxResponseBytes)
	}
	var b strings.Builder
	b.WriteString("Status: " + strconv.Itoa(r.Status) + "\n")
	for k, vs := range r.Header {
		for _, v := range vs {
			// A line break would let one value pose as more lines.
			if strings.ContainsAny(k, "\r\n") || strings.ContainsAny(v, "\r\n") {
				return fmt.Errorf("%w: header %.64q has a line break", sandbox.ErrProtocol, k)
			}
			b.WriteString(k + ": " + v + "\n")
		}
	}
	b.WriteString("\n")
	status, header, _, err := wasm.ParseCGIResponse([]byte(b.String()))
	if err != nil {
		return fmt.Errorf("%w: response: %w", sandbox.ErrProtocol, err)
	}
	r.Status, r.Header = status, header
	return nil
}

// Bounds of what the supervisor forwards of a worker's log lines, which
// it does not trust to have kept the engine's budget.
const (
	maxForwardedLine  = 4 << 10
	maxForwardedAttrs = 16
)

var logStreams = map[string]bool{wasm.StreamStderr: true, wasm.StreamLog: true, wasm.StreamError: true}
var logLevels = map[string]bool{"debug": true, "info": true, "warn": true, "error": true}

func forwardLogs(log wasm.LogFunc, lines []logLine) {
	if log == nil {
		return
	}
	budget := maxLogBytes
	for i, l := range lines {
		if i >= maxLogLines || budget <= 0 {
			return
		}
		if !logStreams[l.Stream] {
			continue
		}
		if !logLevels[l.Level] {
			l.Level = "info"
		}
		if len(l.Msg) > maxForwardedLine {
			l.Msg = l.Msg[:maxForwardedLine] + "…"
		}
		if len(l.Attrs) > maxForwardedAttrs {
			l.Attrs = nil
		}
		budget -= len(l.Msg)
		for k, v := range l.Attrs {
			budget -= len(k) + len(v)
		}
		log(l.Stream, l.Level, l.Msg, l.Attrs)
	}
}

// codeChunk answers opCode: data is the digest and an offset.
func (p *program) codeChunk(data []byte) ([]byte, error) {
	d := &decoder{b: data}
	digest, off := d.str(), d.uint()
	if err := d.end(); err != nil {
		return nil, err
	}
	if digest != p.digest {
		return nil, fmt.Errorf("code of %.64q is not the one in flight", digest)
	}
	if off > uint64(p.codeLen) {
		return nil, fmt.Errorf("code offset %d past its %d bytes", off, p.codeLen)
	}
	n := min(uint64(p.codeLen)-off, codeChunk)
	e := &encoder{b: make([]byte, 0, 64+n)}
	e.bytes(p.codeKey[:])
	e.uint(uint64(p.codeLen))
	if p.codeFile == "" {
		e.bytes(p.code[off : off+n])
		return e.b, nil
	}
	f, err := os.Open(p.codeFile)
	if err != nil {
		return nil, fmt.Errorf("reading the compiled code: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || st.Size() != int64(len(p.codeKey))+p.codeLen {
		return nil, fmt.Errorf("the compiled code file %s changed", p.codeFile)
	}
	e.uint(n)
	start := len(e.b)
	e.b = e.b[:start+int(n)]
	if _, err := f.ReadAt(e.b[start:], int64(len(p.codeKey))+int64(off)); err != nil {
		return nil, fmt.Errorf("reading the compiled code: %w", err)
	}
	return e.b, nil
}

// serveHost answers a worker's host call from the invocation in flight,
// whose policy its Guard holds.
func (x *Executor) serveHost(ctx context.Context, _ string, op string, data []byte) ([]byte, error) {
	call, _ := ctx.Value(invocationKey{}).(*invocation)
	if call == nil {
		return nil, errors.New("no invocation in flight")
	}
	switch op {
	case opModule:
		if string(data) != call.program.digest {
			return nil, fmt.Errorf("module %.64q is not the one in flight", data)
		}
		if call.moduleSent.Swap(true) {
			return nil, errors.New("module already sent for this request")
		}
		return call.program.prog.Module, nil
	case opCode:
		return call.program.codeChunk(data)
	}
	ctx, cancel := context.WithDeadline(ctx, call.deadline)
	defer cancel()
	if call.guard == nil {
		return reply(hostUnavailable, []byte("no host services for this request")), nil
	}
	g := call.guard
	switch op {
	case opKVGet:
		v, ok, err := g.KVGet(ctx, data)
		if err == nil && !ok {
			return reply(hostNotFound, nil), nil
		}
		return replyErr(err, v), nil
	case opKVSet:
		d := &decoder{b: data}
		ttl, key, value := time.Duration(d.int()), d.bytes(), d.bytes()
		if err := d.end(); err != nil {
			return nil, err
		}
		return replyErr(g.KVSet(ctx, key, value, ttl), nil), nil
	case opKVDelete:
		return replyErr(g.KVDelete(ctx, data), nil), nil
	case opFetch:
		req, err := wasm.DecodeFetchRequest(data)
		if err != nil {
			return replyErr(err, nil), nil
		}
		resp, err := g.Fetch(ctx, req)
		if err != nil {
			return replyErr(err, nil), nil
		}
		return reply(hostOK, wasm.EncodeFetchResponse(resp)), nil
	}
	return nil, fmt.Errorf("unknown host call %.64q", op)
}

func reply(s hostStatus, payload []byte) []byte {
	b := make([]byte, 1+len(payload))
	b[0] = byte(s)
	copy(b[1:], payload)
	return b
}

// replyErr answers with err's status and text, or with payload if err is
// nil.
func replyErr(err error, payload []byte) []byte {
	if err != nil {
		return reply(statusOf(err), []byte(err.Error()))
	}
	return reply(hostOK, payload)
}
