package wasm

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// Import module names a function may use.
const (
	WASIModule = wasi_snapshot_preview1.ModuleName
	HostModule = "aegis"
)

// EngineOptions configure an Engine.
type EngineOptions struct {
	// CacheDir keeps compiled code across restarts; empty keeps it in
	// memory only.
	CacheDir string
	// Logger receives the engine's own messages (nil: discarded).
	Logger *slog.Logger
	// Code, if set, is where compiled code is kept instead (CacheDir must
	// then be empty): Compile loads code Put there and records code it
	// compiles, for the sandbox to pass between processes.
	Code *CodeCache
}

// Engine compiles and runs functions. One per node; safe for concurrent
// use. Every module shares one wazero runtime, so compiled code is cached
// per module content (the fuel-instrumented bytes) in memory and, with
// CacheDir, on disk.
type Engine struct {
	runtime wazero.Runtime
	cache   wazero.CompilationCache
	log     *slog.Logger
	// hostFuncs holds every function an import may name, by module and
	// name, to check imports at deploy.
	hostFuncs map[string]map[string]api.FunctionDefinition
}

// NewEngine starts an engine with WASI preview 1 and the host module.
func NewEngine(ctx context.Context, opts EngineOptions) (*Engine, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var cache wazero.CompilationCache
	switch {
	case opts.Code != nil && opts.CacheDir != "":
		return nil, errors.New("an engine keeps compiled code in a CodeCache or a directory, not both")
	case opts.Code != nil:
		var err error
		if cache, err = withCodeCache(opts.Code); err != nil {
			return nil, fmt.Errorf("opening the compilation cache: %w", err)
		}
	case opts.CacheDir != "":
		if err := os.MkdirAll(opts.CacheDir, 0o700); err != nil {
			return nil, fmt.Errorf("creating the compilation cache directory: %w", err)
		}
		var err error
		if cache, err = wazero.NewCompilationCacheWithDir(opts.CacheDir); err != nil {
			return nil, fmt.Errorf("opening the compilation cache: %w", err)
		}
	default:
		cache = wazero.NewCompilationCache()
	}
	// Close on context done stays off: it polls in every loop and
	// function entry, several times slower than fuel in hot loops, and
	// fuel bounds the CPU anyway (see Serve for deadlines).
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().
		WithCompilationCache(cache).
		WithCloseOnContextDone(false))
	e := &Engine{runtime: rt, cache: cache, log: log, hostFuncs: map[string]map[string]api.FunctionDefinition{}}
	// The WASI functions are wazero's, so a listener charges their fuel;
	// the host module's functions charge their own.
	for _, b := range []struct {
		ctx     context.Context
		builder interface {
			Compile(context.Context) (wazero.CompiledModule, error)
		}
	}{
		{experimental.WithFunctionListenerFactory(ctx, wasiMeter{}), wasiBuilder(rt)},
		{ctx, hostModuleBuilder(rt)},
	} {
		compiled, err := b.builder.Compile(b.ctx)
		if err != nil {
			e.Close(ctx)
			return nil, fmt.Errorf("compiling a host module: %w", err)
		}
		if _, err := rt.InstantiateModule(ctx, compiled, wazero.NewModuleConfig()); err != nil {
			e.Close(ctx)
			return nil, fmt.Errorf("instantiating host module %s: %w", compiled.Name(), err)
		}
		e.hostFuncs[compiled.Name()] = compiled.ExportedFunctions()
	}
	return e, nil
}

// Close releases the runtime and every module compiled with it.
func (e *Engine) Close(ctx context.Context) error {
	return errors.Join(e.runtime.Close(ctx), e.cache.Close(ctx))
}

// Module is one compiled version of a function. Serve runs requests on
// fresh instances of it; Close releases it once they have ended.
type Module struct {
	engine   *Engine
	compiled wazero.CompiledModule
	limits   Limits
	// tableBytes is what the module's tables take at most; it comes out
	// of the memory limit.
	tableBytes uint64
	// startFuel is what each request pays for its instance's set-up.
	startFuel int64
	// memory keeps ended instances' linear memories for the next ones.
	memory memPool
	// config is what every request's instance configuration starts from.
	config wazero.ModuleConfig

	mu      sync.Mutex
	running int
	closed  bool
}

// requestConfig is the part of an instance's configuration that no
// request changes, built once: each With call copies the configuration.
var requestConfig = wazero.NewModuleConfig().
	WithName("").
	WithStartFunctions().
	WithSysWalltime().
	WithSysNanotime().
	WithRandSource(rand.Reader)

// memoryLimit is what linear memory may take: the memory limit less the
// tables.
func (m *Module) memoryLimit() uint64 {
	return uint64(m.limits.MemoryPages)*PageSize - m.tableBytes
}

// Limits returns the limits the module was compiled with.
func (m *Module) Limits() Limits { return m.limits }

// Close releases the compiled code when no request is running on it;
// otherwise the last request to end releases it. Serve after Close fails.
func (m *Module) Close() error {
	m.mu.Lock()
	already := m.closed
	m.closed = true
	idle := m.running == 0
	m.mu.Unlock()
	if already || !idle {
		return nil
	}
	return m.compiled.Close(context.Background())
}

// acquire pins the module for one request.
func (m *Module) acquire() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.running++
	return true
}

func (m *Module) release() {
	m.mu.Lock()
	m.running--
	last := m.closed && m.running == 0
	m.mu.Unlock()
	if last {
		m.compiled.Close(context.Background())
	}
}
