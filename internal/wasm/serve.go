package wasm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/sys"
)

// Invocation is one request to run.
type Invocation struct {
	// Function and Version name the function, for its environment
	// (AEGIS_FUNCTION, AEGIS_VERSION, argv[0]) and its host calls.
	Function string
	Version  string
	// Limits, if not the zero value, replace the module's limits for this
	// request, except MemoryPages and MaxModuleBytes, which are fixed at
	// Compile.
	Limits Limits
	// AllowedHosts are the hosts http_fetch may reach (see Policy).
	AllowedHosts []string
	Request      Request
	// Host serves key-value and fetch calls behind a Guard; nil answers
	// them with CodeUnavailable.
	Host Host
	// Log receives stderr lines, log calls and failures; nil discards them.
	Log LogFunc
}

// Response is a function's answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
	// FuelUsed is the budget minus what remained (at most the budget).
	FuelUsed int64
	Duration time.Duration
}

// Output bounds that are not per-function limits: they protect the node's
// log, not the function.
const (
	maxLogLineBytes    = 4 << 10
	maxLogBytesPerCall = 64 << 10
)

// Serve runs one request on a fresh instance: CGI environment and body on
// stdin in, CGI response on stdout out. Failures return an *Error (and,
// once the instance ran, a Response with FuelUsed and Duration):
//
//   - the request body over MaxRequestBytes: request-size, nothing runs;
//   - stdout over MaxResponseBytes: response-size; the instance is stopped
//     at its next fuel check;
//   - ctx done (the deadline): timeout. Serve interrupts the instance by
//     setting its fuel negative, so it stops at its next fuel check (at
//     the latest a loop header or function entry away) or when its host
//     call returns, since host calls and sleeps honour ctx;
//   - fuel exhausted: fuel;
//   - a trap or non-zero exit after the memory limit refused a grow:
//     memory (memory.grow returns -1; most guests then abort);
//   - any other trap or non-zero exit: trap; stdout that is not a CGI
//     response: cgi. Both carry an ErrorID, also written to the log.
//
// ctx should carry the Timeout; Serve adds it if ctx has no deadline.
func (m *Module) Serve(ctx context.Context, inv Invocation) (*Response, error) {
	started := time.Now()
	lim := m.limits
	if inv.Limits != (Limits{}) {
		lim = inv.Limits
		lim.MemoryPages, lim.MaxModuleBytes = m.limits.MemoryPages, m.limits.MaxModuleBytes
	}
	if int64(len(inv.Request.Body)) > lim.MaxRequestBytes {
		err := newError(KindRequestSize, fmt.Errorf("request body of %d bytes, over the %d byte limit", len(inv.Request.Body), lim.MaxRequestBytes))
		return nil, err
	}
	if !m.acquire() {
		return nil, fmt.Errorf("serving %s: module %w", inv.Function, ErrClosed)
	}
	defer m.release()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, lim.Timeout)
		defer cancel()
	}

	host := inv.Host
	if host == nil {
		host = unavailableHost{}
	}
	env := environPool.Get().(*environ)
	// After the instance is closed (defers run last first): nothing reads
	// the environment then.
	defer putEnviron(env)
	appendCGIEnviron(env, inv.Function, inv.Version, inv.Request)
	st := &instanceState{
		environ:   env,
		stdin:     bytes.NewReader(inv.Request.Body),
		argsBytes: len(inv.Function) + 1,
		guard:     NewGuard(host, Policy{Function: inv.Function, Limits: lim, AllowedHosts: inv.AllowedHosts}),
		alloc:     &memoryAllocator{limit: m.memoryLimit(), pool: &m.memory},
		stdout:    cappedBuffer{max: lim.MaxResponseBytes},
	}
	st.logs = &logSink{log: inv.Log, budget: maxLogBytesPerCall}
	st.stdout.overflow = st.interrupt
	callCtx := experimental.WithMemoryAllocator(context.WithValue(ctx, stateKey{}, st), st.alloc)

	// The environment is served from st (wasiBuilder), not set here.
	cfg := m.config.
		WithArgs(inv.Function).
		WithStdin(st.stdin).
		WithStdout(&st.stdout).
		WithStderr(&stderrWriter{sink: st.logs}).
		WithNanosleep(func(ns int64) { sleepCtx(ctx, ns) })
	mod, err := m.engine.runtime.InstantiateModule(callCtx, m.compiled, cfg)
	if err != nil {
		// Compile instantiated this module once, so this is the node's
		// trouble (memory, say), not the function's.
		return nil, fmt.Errorf("instantiating %s: %w", inv.Function, err)
	}
	defer mod.Close(context.Background())
	g, ok := mod.ExportedGlobal(fuelGlobalName).(api.MutableGlobal)
	reserve, ok2 := mod.ExportedGlobal(reserveGlobalName).(api.MutableGlobal)
	if !ok || !ok2 {
		return nil, fmt.Errorf("serving %s: the instrumented module lacks the %s or %s global", inv.Function, fuelGlobalName, reserveGlobalName)
	}
	st.fuel, st.reserve = g, reserve
	// The instance's set-up (tables, segments) comes out of the budget,
	// which is handed over a slice at a time so that the guest leaves its
	// native code now and then (see fuel.Slice).
	inHand, rest := splitFuel(lim.Fuel - m.startFuel)
	g.Set(api.EncodeI64(inHand))
	reserve.Set(api.EncodeI64(rest))
	stop := context.AfterFunc(ctx, func() {
		st.mu.Lock()
		st.timedOut = true
		st.mu.Unlock()
		st.interrupt()
	})
	callErr := errSetUpFuel
	if lim.Fuel >= m.startFuel {
		_, callErr = mod.ExportedFunction("_start").Call(callCtx)
	}
	stop()

	st.mu.Lock()
	st.finished = true
	// The deadline may pass with AfterFunc not yet run: a sleep that
	// ended on ctx returns to a guest that then returns normally.
	timedOut := st.timedOut || ctx.Err() != nil
	remaining := st.remaining()
	used := remaining
	if st.stopped && st.remainingAtStop >= 0 {
		used = st.remainingAtStop
	}
	st.mu.Unlock()
	st.logs.flushStderr()

	resp := &Response{FuelUsed: min(max(lim.Fuel-used, 0), lim.Fuel), Duration: time.Since(started)}
	if ferr := st.classify(callErr, timedOut, remaining, ctx.Err(), lim); ferr != nil {
		st.logFailure(ferr)
		return resp, ferr
	}
	status, header, body, err := ParseCGIResponse(st.stdout.buf.Bytes())
	if err != nil {
		ferr := newError(KindCGI, err)
		st.logFailure(ferr)
		return resp, ferr
	}
	resp.Status, resp.Header, resp.Body = status, header, body
	return resp, nil
}

// classify turns how the call ended into an *Error, or nil on success.
func (st *instanceState) classify(callErr error, timedOut bool, remaining int64, ctxErr error, lim Limits) *Error {
	if st.stdout.over {
		return newError(KindResponseSize, fmt.Errorf("output over the %d byte limit", lim.MaxResponseBytes))
	}
	if timedOut {
		// Whatever the instance did after the deadline (stop at a fuel
		// check, return early from a sleep), the request is over.
		if ctxErr == nil {
			ctxErr = context.DeadlineExceeded
		}
		return newError(KindTimeout, fmt.Errorf("stopped at the deadline: %w", ctxErr))
	}
	exit := uint32(0)
	var exitErr *sys.ExitError
	if errors.As(callErr, &exitErr) {
		exit, callErr = exitErr.ExitCode(), nil
	}
	if callErr == nil && exit == 0 {
		return nil
	}
	switch {
	case fuelExhausted(remaining):
		return newError(KindFuel, fmt.Errorf("used its budget of %d fuel", lim.Fuel))
	case st.alloc.refused:
		return newError(KindMemory, fmt.Errorf("failed after a memory grow over the limit of %d pages was refused", lim.MemoryPages))
	case callErr != nil:
		return newError(KindTrap, callErr)
	default:
		return newError(KindTrap, fmt.Errorf("exited with code %d", exit))
	}
}

func (st *instanceState) logFailure(e *Error) {
	attrs := map[string]string{"kind": string(e.Kind)}
	if e.ErrorID != "" {
		attrs["error_id"] = e.ErrorID
	}
	st.logs.emit(StreamError, "error", "request failed: "+e.Error(), attrs, true)
}

// stateKey carries the *instanceState to host functions.
type stateKey struct{}

// instanceState is what one request's instance and its host calls share.
type instanceState struct {
	stdin *bytes.Reader
	// environ is what environ_get copies; argsBytes what args_get copies.
	environ   *environ
	argsBytes int
	guard     *Guard
	alloc     *memoryAllocator
	stdout    cappedBuffer
	logs      *logSink
	// lastFetch is the last http_fetch answer, for http_fetch_result.
	lastFetch []byte

	mu       sync.Mutex // guards the fuel globals against the interrupting goroutine
	fuel     api.MutableGlobal
	reserve  api.MutableGlobal
	timedOut bool
	finished bool
	// remainingAtStop is the fuel left when interrupt first ran, so that
	// a stopped request reports what it used rather than the whole budget.
	stopped         bool
	remainingAtStop int64
}

func (st *instanceState) stdinLeft() int { return st.stdin.Len() }

// stopFuel is what interrupt writes: negative, far from overflowing when
// the guest keeps subtracting block costs from it.
const stopFuel = -(int64(1) << 62)

// remaining is the fuel left: in hand plus the reserve.
func (st *instanceState) remaining() int64 {
	return int64(st.fuel.Get()) + int64(st.reserve.Get())
}

// interrupt makes the instance stop at its next fuel check: it empties the
// reserve and sets the fuel in hand negative, so the check calls refuel,
// which traps. The guest subtracts from the fuel with a read-modify-write,
// which overwrites a store landing between its load and its store (in a
// hot loop that is most of the time), and refuel rewrites both globals.
// So interrupt reads them back and stores again at once while the fuel is
// not negative or the reserve not empty, and only checks now and then
// once they are (the guest may be in a host call), until the call has
// returned. The guest calls refuel at least once a slice, leaving its
// native code, so this goroutine gets to run even while a collection
// waits to stop the world.
func (st *instanceState) interrupt() {
	for {
		st.mu.Lock()
		if st.finished {
			st.mu.Unlock()
			return
		}
		remaining := st.remaining()
		if !st.stopped {
			st.stopped, st.remainingAtStop = true, remaining
		}
		stuck := int64(st.fuel.Get()) < 0 && int64(st.reserve.Get()) <= 0
		if !stuck {
			st.reserve.Set(0)
			st.fuel.Set(api.EncodeI64(stopFuel))
		}
		st.mu.Unlock()
		if stuck {
			time.Sleep(time.Millisecond)
		}
	}
}

// sleepCtx is WASI's sleep: it ends early when the request does.
func sleepCtx(ctx context.Context, ns int64) {
	t := time.NewTimer(time.Duration(ns))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// memoryAllocator backs the instance's linear memory and enforces the
// page limit itself, so the engine knows a grow was refused: wazero
// reports a refusal only to the guest, as -1.
type memoryAllocator struct {
	limit     uint64
	pool      *memPool // nil: allocate afresh and leave the buffer to the GC
	buf       []byte
	allocated bool // the instance's minimum, which Compile checked, is in place
	refused   bool
}

func (a *memoryAllocator) Allocate(_, _ uint64) experimental.LinearMemory { return a }

// Reallocate implements experimental.LinearMemory.
func (a *memoryAllocator) Reallocate(size uint64) []byte {
	if size > a.limit && a.allocated {
		a.refused = true
		return nil
	}
	a.allocated = true
	if a.buf == nil && a.pool != nil {
		a.buf = a.pool.get(size)
	}
	if size <= uint64(cap(a.buf)) {
		// Bytes past the old length were never handed out: still zero.
		a.buf = a.buf[:size]
		return a.buf
	}
	next := make([]byte, size, min(max(size, 2*uint64(cap(a.buf))), max(a.limit, size)))
	copy(next, a.buf)
	a.buf = next
	return next
}

// Free implements experimental.LinearMemory.
func (a *memoryAllocator) Free() {
	if a.pool != nil {
		a.pool.put(a.buf)
	}
	a.buf = nil
}

// cappedBuffer collects stdout up to max bytes; past it, the write fails,
// over is set and overflow (stopping the instance) is called.
type cappedBuffer struct {
	buf      bytes.Buffer
	max      int64
	over     bool
	overflow func()
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	if c.over {
		return 0, errOutputLimit
	}
	if int64(c.buf.Len())+int64(len(p)) > c.max {
		c.over = true
		go c.overflow()
		return 0, errOutputLimit
	}
	return c.buf.Write(p)
}

var errOutputLimit = errors.New("output over the response size limit")

// errSetUpFuel stands for the call that did not run because setting up
// the instance took the whole budget.
var errSetUpFuel = errors.New("the budget does not cover setting up the instance")

// logSink passes log lines to the Invocation's LogFunc within a byte
// budget per request; the first line that does not fit is replaced by a
// note, and nothing after it is logged but the request's failure.
type logSink struct {
	log     LogFunc
	budget  int
	noted   bool
	partial []byte // stderr since the last newline
}

func (s *logSink) emit(stream, level, msg string, attrs map[string]string, always bool) {
	if s.log == nil {
		return
	}
	if len(msg) > maxLogLineBytes {
		msg = msg[:maxLogLineBytes] + "…"
	}
	if !always {
		if s.noted || s.budget < len(msg) {
			if !s.noted {
				s.noted = true
				s.log(StreamError, "warn", "log output over "+strconv.Itoa(maxLogBytesPerCall)+" bytes in one request: the rest is dropped", nil)
			}
			return
		}
		s.budget -= len(msg)
	}
	s.log(stream, level, msg, attrs)
}

// stderrWriter turns stderr into log lines.
type stderrWriter struct{ sink *logSink }

func (w *stderrWriter) Write(p []byte) (int, error) {
	s := w.sink
	n := len(p)
	for len(p) > 0 {
		// Keep at most a line's worth: emit cuts the rest anyway.
		room := max(maxLogLineBytes+1-len(s.partial), 0)
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			s.partial = append(s.partial, p[:min(len(p), room)]...)
			if len(s.partial) >= maxLogLineBytes {
				s.flushStderr()
			}
			break
		}
		s.partial = append(s.partial, p[:min(i, room)]...)
		p = p[i+1:]
		s.flushStderr()
	}
	return n, nil
}

func (s *logSink) flushStderr() {
	if len(s.partial) == 0 {
		return
	}
	s.emit(StreamStderr, "info", string(bytes.TrimSuffix(s.partial, []byte{'\r'})), nil, false)
	s.partial = s.partial[:0]
}
