package functions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aegis-edge/aegis/internal/audit"
	"github.com/aegis-edge/aegis/internal/config"
	"github.com/aegis-edge/aegis/internal/store"
	"github.com/aegis-edge/aegis/internal/wasm"
)

// Errors that classify a refused request; the admin API maps them to
// status codes.
var (
	ErrInvalid  = errors.New("invalid request")
	ErrConflict = errors.New("conflict")
	ErrNotFound = store.ErrNotFound
)

// Errors an Executor's Load wraps when the module itself cannot be
// compiled, whatever the function's limits: the registry remembers the
// module's digest and refuses it at once after.
var (
	ErrUncompilable   = errors.New("module does not compile")
	ErrCompileTimeout = fmt.Errorf("%w: compile timed out", ErrUncompilable)
)

// Executor prepares module versions for serving: the in-process Wasm
// engine, or the sandbox's worker pool.
type Executor interface {
	Load(ctx context.Context, p Program) (Loaded, error)
}

// Program is one version of a function as the executor needs it.
type Program struct {
	Name string
	// Version is the version a deploy expects to create (a concurrent
	// deploy of the same name may take it): for logs only.
	Version    uint64
	Module     []byte
	Limits     wasm.Limits
	AllowHosts []string
}

// Loaded is a prepared version; Serve runs one request. *wasm.Module is
// one.
type Loaded interface {
	Serve(ctx context.Context, inv wasm.Invocation) (*wasm.Response, error)
	Close() error
}

// InProcess is the Executor that compiles and runs modules in the calling
// process with a wasm.Engine: for tests and benchmarks of trusted
// fixtures. The node never uses it: it compiles and runs tenants' modules
// only in sandboxed workers (executor.Executor).
type InProcess struct{ Engine *wasm.Engine }

// Load compiles the module.
func (x InProcess) Load(ctx context.Context, p Program) (Loaded, error) {
	return x.Engine.Compile(ctx, p.Module, p.Limits)
}

// Spec is what a deploy may set besides the module; nil fields take the
// node's defaults (functions.defaults), now and after later config changes.
type Spec struct {
	Route      string           `json:"route"`
	Fuel       *int64           `json:"fuel,omitempty"`
	Timeout    *config.Duration `json:"timeout,omitempty"`
	Memory     *config.Size     `json:"memory,omitempty"`
	AllowHosts []string         `json:"allow_hosts,omitempty"`
}

// Info describes a deployed function.
type Info struct {
	Name       string    `json:"name"`
	Version    uint64    `json:"version"`
	Route      string    `json:"route"`
	Digest     string    `json:"sha256"`
	Size       int64     `json:"size"`
	Deployed   time.Time `json:"deployed"`
	DeployedBy string    `json:"deployed_by,omitempty"`
	Fuel       int64     `json:"fuel"`
	Timeout    string    `json:"timeout"`
	Memory     string    `json:"memory"`
	AllowHosts []string  `json:"allow_hosts,omitempty"`
	// Requests counts requests served by this node process.
	Requests uint64 `json:"requests"`
}

// deployment is one live version: its record, its prepared module and the
// requests running on it.
type deployment struct {
	fn         store.Function
	spec       Spec
	route      Route
	limits     config.FunctionLimits
	wasmLimits wasm.Limits
	loaded     Loaded
	logs       *logRing
	requests   atomic.Uint64
	series     series

	mu      sync.Mutex
	running int
	retired bool
}

// acquire pins the deployment for one request; false once it is retired.
func (d *deployment) acquire() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.retired {
		return false
	}
	d.running++
	return true
}

func (d *deployment) release() {
	d.mu.Lock()
	d.running--
	last := d.retired && d.running == 0
	d.mu.Unlock()
	if last {
		d.loaded.Close()
	}
}

// retire takes the deployment out of service; its module is closed when
// the last running request ends.
func (d *deployment) retire() {
	d.mu.Lock()
	d.retired = true
	idle := d.running == 0
	d.mu.Unlock()
	if idle {
		d.loaded.Close()
	}
}

// Options configure a Registry.
type Options struct {
	Store    *store.Store
	Executor Executor
	// Defaults and MaxModuleSize come from the node's config.
	Defaults      config.FunctionLimits
	MaxModuleSize config.Size
	Log           *slog.Logger
	// Host serves the functions' key-value and fetch calls; the engine
	// applies each function's limits and allowed hosts around it.
	Host wasm.Host
	// Commit carries out a decided deploy or removal: the node's one path
	// for every change (audit, store transaction, then what serves it).
	// Nil persists and installs without a record, for tools and tests
	// that keep no audit log.
	Commit func(Change) error
	// Now is the clock, for tests; nil means time.Now.
	Now func() time.Time
}

// Change is a deploy or removal the registry has decided (validated and,
// for a deploy, compiled). Its committer records Event, runs Persist (the
// one store transaction) and, once that succeeded, Install, which swaps the
// routing table; when the record or Persist fails, Install never runs and
// nothing serves differently. The registry holds its lock throughout.
type Change struct {
	Event   audit.Event
	Persist func() error
	Install func()
}

// Registry is the set of deployed functions. It is safe for concurrent use.
type Registry struct {
	opts    Options
	metrics *metrics

	// mu serializes the changes of deploys and removals; it is never held
	// while a module compiles.
	mu    sync.Mutex
	byFn  map[string]*deployment
	logs  map[string]*logRing
	table atomic.Pointer[routeTable[*deployment]]
	// failed remembers modules that could not be compiled.
	failed *failedDigests
}

// New returns an empty registry; Restore fills it from the store.
func New(opts Options) *Registry {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	r := &Registry{opts: opts, metrics: newMetrics(), byFn: map[string]*deployment{}, logs: map[string]*logRing{},
		failed: newFailedDigests(maxFailedDigests)}
	r.table.Store(newRouteTable(map[Route]*deployment{}))
	return r
}

// Restore prepares every stored function. A function whose module no
// longer prepares (a tightened limit, say) is left out of the routing table
// and reported; the others serve.
func (r *Registry) Restore(ctx context.Context) error {
	fns, err := r.opts.Store.Functions()
	if err != nil {
		return err
	}
	// Modules compile without the lock, as in Deploy.
	var errs []error
	ready := map[string]*deployment{}
	for _, fn := range fns {
		var spec Spec
		if len(fn.Settings) > 0 {
			if err := json.Unmarshal(fn.Settings, &spec); err != nil {
				errs = append(errs, fmt.Errorf("function %s: stored settings: %w", fn.Name, err))
				continue
			}
		}
		module, err := r.opts.Store.Module(fn.Digest)
		if err != nil {
			errs = append(errs, fmt.Errorf("function %s: %w", fn.Name, err))
			continue
		}
		d, err := r.prepare(ctx, fn, spec, module)
		if err != nil {
			r.failed.remember(fn.Digest, err, r.opts.Now())
			errs = append(errs, fmt.Errorf("function %s version %d: %w", fn.Name, fn.Version, err))
			continue
		}
		ready[fn.Name] = d
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for name, d := range ready {
		if old := r.byFn[name]; old != nil {
			old.retire()
		}
		d.logs = r.ring(name)
		r.byFn[name] = d
	}
	r.publish()
	return errors.Join(errs...)
}

// prepare validates spec, resolves the limits and loads the module.
func (r *Registry) prepare(ctx context.Context, fn store.Function, spec Spec, module []byte) (*deployment, error) {
	route, err := ParseRoute(spec.Route)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	lim := spec.limits(r.opts.Defaults)
	if err := config.ValidateFunctionLimits("", lim); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, strings.ReplaceAll(err.Error(), ".", ""))
	}
	for _, h := range spec.AllowHosts {
		if err := validAllowHost(h); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	wl := WasmLimits(lim, r.opts.MaxModuleSize)
	loaded, err := r.opts.Executor.Load(ctx, Program{
		Name: fn.Name, Version: fn.Version, Module: module, Limits: wl, AllowHosts: spec.AllowHosts,
	})
	if err != nil {
		if errors.Is(err, wasm.ErrInvalidModule) || errors.Is(err, ErrUncompilable) {
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		return nil, err
	}
	// The log ring is set under r.mu, when the deployment is installed.
	return &deployment{fn: fn, spec: spec, route: route, limits: lim, wasmLimits: wl, loaded: loaded}, nil
}

// WasmLimits turns configured limits into the runtime's.
func WasmLimits(l config.FunctionLimits, maxModule config.Size) wasm.Limits {
	return wasm.Limits{
		Fuel:             l.Fuel,
		Timeout:          l.Timeout.Duration,
		MemoryPages:      uint32(l.Memory / config.WasmPage),
		MaxRequestBytes:  int64(l.MaxRequestBody),
		MaxResponseBytes: int64(l.MaxResponseBody),
		FetchCount:       l.FetchCount,
		FetchMaxBytes:    int64(l.FetchMaxBody),
		FetchTimeout:     l.FetchTimeout.Duration,
		KVMaxKeyBytes:    int(l.KVMaxKey),
		KVMaxValueBytes:  int(l.KVMaxValue),
		KVQuotaBytes:     int64(l.KVQuota),
		MaxModuleBytes:   int64(maxModule),
	}
}

// validAllowHost accepts host or host:port, lower-case, no scheme or path,
// printable ASCII only (a host is printed back to operators).
func validAllowHost(h string) error {
	printable := !strings.ContainsFunc(h, func(r rune) bool { return r <= ' ' || r > '~' })
	if h == "" || !printable || strings.ContainsAny(h, "/?#@") || strings.ToLower(h) != h {
		return fmt.Errorf("allowed host %q: want a lower-case host or host:port, without scheme or path", h)
	}
	return nil
}

// Check checks what a spec says that no node's configuration changes: its
// route, its allowed hosts, and each limit it sets within the bounds every
// node takes. A deploy to the fleet is checked so before it is published:
// every edge would refuse a spec that fails it.
func (s Spec) Check() error {
	if _, err := ParseRoute(s.Route); err != nil {
		return err
	}
	for _, h := range s.AllowHosts {
		if err := validAllowHost(h); err != nil {
			return err
		}
	}
	return config.ValidateFunctionLimits("", s.limits(config.Default().Functions.Defaults))
}

// limits is base with the limits the spec sets in its place.
func (s Spec) limits(base config.FunctionLimits) config.FunctionLimits {
	if s.Fuel != nil {
		base.Fuel = *s.Fuel
	}
	if s.Timeout != nil {
		base.Timeout = *s.Timeout
	}
	if s.Memory != nil {
		base.Memory = *s.Memory
	}
	return base
}

// wasmHeader begins every WebAssembly module of the version wazero runs.
const wasmHeader = "\x00asm\x01\x00\x00\x00"

// CheckModule checks what a module's bytes say before any node sees them:
// not empty, within the largest size any node takes, and a WebAssembly
// binary (its magic and version). A node still validates and compiles it.
func CheckModule(module []byte) error {
	switch {
	case len(module) == 0:
		return errors.New("the module is empty")
	case int64(len(module)) > int64(config.MaxModuleSizeCeiling):
		return fmt.Errorf("the module is %d bytes, over the %s any node takes", len(module), config.MaxModuleSizeCeiling)
	case !strings.HasPrefix(string(module), wasmHeader):
		return errors.New("not a WebAssembly module (no \\0asm version 1 header)")
	}
	return nil
}

// ring returns name's log ring, made on first use. The caller holds r.mu.
func (r *Registry) ring(name string) *logRing {
	l, ok := r.logs[name]
	if !ok {
		l = newLogRing()
		r.logs[name] = l
	}
	return l
}

// publish swaps in a routing table built from byFn. The caller holds r.mu.
func (r *Registry) publish() {
	routes := make(map[Route]*deployment, len(r.byFn))
	for _, d := range r.byFn {
		routes[d.route] = d
	}
	r.table.Store(newRouteTable(routes))
}

// Deploy validates, prepares and persists a new version of name and then
// switches its route to it. On any error nothing changes. Two functions may
// not share a route. The module is compiled (by the executor, within its
// deadline) without the registry's lock, so that listing and serving
// functions, and other deploys, go on meanwhile; a module whose digest
// failed to compile before is refused at once.
func (r *Registry) Deploy(ctx context.Context, name string, module []byte, spec Spec, actor string) (Info, error) {
	if err := store.ValidFunctionName(name); err != nil {
		return Info{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if max := r.opts.MaxModuleSize; max > 0 && int64(len(module)) > int64(max) {
		return Info{}, fmt.Errorf("%w: module is %d bytes, over the %s limit (functions.max_module_size)", ErrInvalid, len(module), max)
	}
	spec.AllowHosts = slices.Compact(slices.Sorted(slices.Values(spec.AllowHosts)))
	route, err := ParseRoute(spec.Route)
	if err != nil {
		return Info{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	spec.Route = route.String()
	digest := store.ModuleDigest(module)
	if err := r.failed.check(digest, r.opts.Now()); err != nil {
		return Info{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	settings, err := json.Marshal(spec)
	if err != nil {
		return Info{}, err
	}
	next := store.Function{Name: name, Route: spec.Route, Settings: settings, Digest: digest, Size: int64(len(module)), DeployedBy: actor}
	// A route taken now is refused before compiling; the lock is taken
	// again to decide.
	r.mu.Lock()
	err = r.routeFree(name, route)
	next.Version = r.nextVersion(name)
	r.mu.Unlock()
	if err != nil {
		return Info{}, err
	}
	d, err := r.prepare(ctx, next, spec, module)
	if err != nil {
		r.failed.remember(digest, err, r.opts.Now())
		return Info{}, err
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.routeFree(name, route); err != nil {
		d.retire()
		return Info{}, err
	}
	next.Version = r.nextVersion(name)
	next.Deployed = r.opts.Now()
	d.fn = next
	old := r.byFn[name]
	err = r.commit(Change{
		Event: audit.Event{Op: OpDeploy, Target: name, Actor: actor, Details: d.info()},
		Persist: func() error {
			stored, err := r.opts.Store.PutFunction(next, module)
			if err == nil {
				d.fn = stored
			}
			return err
		},
		Install: func() {
			d.logs = r.ring(name)
			r.byFn[name] = d
			r.publish()
			if old != nil {
				old.retire()
			}
		},
	})
	if err != nil {
		d.retire()
		return Info{}, err
	}
	r.logLine(d, "access", "info", fmt.Sprintf("deployed version %d on %s", d.fn.Version, spec.Route), nil)
	return d.info(), nil
}

// routeFree refuses route if a function other than name serves it. The
// caller holds r.mu.
func (r *Registry) routeFree(name string, route Route) error {
	for other, d := range r.byFn {
		if other != name && d.route == route {
			return fmt.Errorf("%w: route %s is served by function %s", ErrConflict, route, other)
		}
	}
	return nil
}

// nextVersion is the version a deploy of name creates. The caller holds
// r.mu.
func (r *Registry) nextVersion(name string) uint64 {
	if old, ok := r.byFn[name]; ok {
		return old.fn.Version + 1
	}
	return 1
}

// Remove takes a function out of service and deletes it with its module
// and key-value data.
func (r *Registry) Remove(name, actor string) (Info, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, ok := r.byFn[name]
	if !ok {
		return Info{}, fmt.Errorf("%w: no function %q", ErrNotFound, name)
	}
	err := r.commit(Change{
		Event: audit.Event{Op: OpRemove, Target: name, Actor: actor, Details: d.info()},
		Persist: func() error {
			_, err := r.opts.Store.DeleteFunction(name)
			return err
		},
		Install: func() {
			delete(r.byFn, name)
			r.publish()
			d.retire()
			r.metrics.forget(name)
		},
	})
	if err != nil {
		return Info{}, err
	}
	return d.info(), nil
}

// List describes every deployed function, sorted by name.
func (r *Registry) List() []Info {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Info, 0, len(r.byFn))
	for _, d := range r.byFn {
		out = append(out, d.info())
	}
	slices.SortFunc(out, func(a, b Info) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Get describes one function.
func (r *Registry) Get(name string) (Info, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, ok := r.byFn[name]
	if !ok {
		return Info{}, fmt.Errorf("%w: no function %q", ErrNotFound, name)
	}
	return d.info(), nil
}

func (d *deployment) info() Info {
	return Info{
		Name: d.fn.Name, Version: d.fn.Version, Route: d.fn.Route, Digest: d.fn.Digest, Size: d.fn.Size,
		Deployed: d.fn.Deployed, DeployedBy: d.fn.DeployedBy, Fuel: d.limits.Fuel, Timeout: d.limits.Timeout.String(), Memory: d.limits.Memory.String(),
		AllowHosts: d.spec.AllowHosts, Requests: d.requests.Load(),
	}
}

// Logs calls fn with the last n lines of a function's log and, if follow,
// with every new line until ctx ends.
func (r *Registry) Logs(ctx context.Context, name string, n int, follow bool, fn func(LogLine) error) error {
	r.mu.Lock()
	_, deployed := r.byFn[name]
	ring, ok := r.logs[name]
	r.mu.Unlock()
	if !deployed && !ok {
		return fmt.Errorf("%w: no function %q", ErrNotFound, name)
	}
	if ring == nil {
		return nil
	}
	if !follow {
		lines, _, _ := ring.since(ring.tail(n))
		for _, l := range lines {
			if err := fn(l); err != nil {
				return err
			}
		}
		return nil
	}
	return ring.follow(ctx, n, fn)
}

// logLine adds a line to the function's log and the node's log.
func (r *Registry) logLine(d *deployment, stream, level, msg string, attrs map[string]string) {
	d.logs.add(LogLine{Time: r.opts.Now(), Function: d.fn.Name, Version: d.fn.Version, Stream: stream, Level: level, Message: msg, Attrs: attrs})
}

// Audited operations of the registry.
const (
	OpDeploy = "function.deploy"
	OpRemove = "function.remove"
)

// commit hands c to the committer; the caller holds r.mu.
func (r *Registry) commit(c Change) error {
	if r.opts.Commit != nil {
		return r.opts.Commit(c)
	}
	if err := c.Persist(); err != nil {
		return err
	}
	c.Install()
	return nil
}

// Close retires every deployment.
func (r *Registry) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for name, d := range r.byFn {
		d.retire()
		delete(r.byFn, name)
	}
	r.publish()
}
