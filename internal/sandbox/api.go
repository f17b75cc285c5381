package sandbox

// The package's API: what other packages name on every system. The workers
// and the pool themselves run on Linux only (the other files); elsewhere
// NewPool and WorkerMain fail (sandbox_other.go).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"
)

// Handler is the payload a worker runs for each request: the Wasm runtime
// (package executor) or a test handler. It runs inside the sandbox, so
// whatever it needs from the outside world it asks for through host.
type Handler interface {
	Handle(ctx context.Context, req []byte, host HostCaller) ([]byte, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, req []byte, host HostCaller) ([]byte, error)

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, req []byte, host HostCaller) ([]byte, error) {
	return f(ctx, req, host)
}

// HostCaller is the worker's only way out: a call the supervisor serves
// (key-value store, fetch, log) under the function's policy.
type HostCaller interface {
	Call(ctx context.Context, op string, data []byte) ([]byte, error)
}

// HostServer serves workers' host calls in the supervisor, for the function
// whose request is in flight. It must apply that function's policy: the
// worker is not trusted.
type HostServer interface {
	ServeHost(ctx context.Context, function, op string, data []byte) ([]byte, error)
}

// HostServerFunc adapts a function to HostServer.
type HostServerFunc func(ctx context.Context, function, op string, data []byte) ([]byte, error)

// ServeHost calls f.
func (f HostServerFunc) ServeHost(ctx context.Context, function, op string, data []byte) ([]byte, error) {
	return f(ctx, function, op, data)
}

// Config describes a pool of workers. Zero fields take the defaults noted.
type Config struct {
	// Size is the number of workers (default 2).
	Size int
	// Handler names the payload every worker runs (see BuiltinHandlers).
	Handler string
	// Executable is the aegis binary to re-execute (default /proc/self/exe).
	Executable string
	// Timeout is a request's deadline when its context has none (default 10s).
	Timeout time.Duration
	// StartTimeout bounds a worker's start, from exec to ready (default 5s).
	StartTimeout time.Duration
	// MaxFrame bounds a message's payload both ways (default DefaultMaxFrame).
	MaxFrame int
	// Memory and Pids cap each worker through its cgroup (default 256 MiB
	// and 64; negative: no limit).
	Memory int64
	Pids   int64
	// AllowNoMemoryCap lets workers run without a memory cgroup when the
	// host offers none (or Memory is negative); otherwise the pool does
	// not start them and fails with ErrNoMemoryCap.
	AllowNoMemoryCap bool
	// NoFile and NProc are the worker's rlimits (default 16 and 64).
	NoFile uint64
	NProc  uint64
	// Host serves host calls; nil answers every host call with an error.
	Host HostServer
	// PlainDeny makes the filter deny in the kernel (EPERM) instead of
	// handing denied calls to the supervisor, which then cannot count them.
	PlainDeny bool
	// Logger receives worker lifecycle and violation records (default: none).
	Logger *slog.Logger
	// Stderr, for debugging, keeps the workers' stderr open and copies it
	// here (default: closed in the worker).
	Stderr io.Writer
	// Pipeline lets the supervisor send a busy worker the next request,
	// which it starts as soon as it has answered the one in flight
	// (pipeline.go); Do's plain requests qualify, not Once or Timeout ones.
	// PipelineStall is how long such a request waits behind another before
	// it is taken back and waits for a free worker instead (default
	// DefaultPipelineStall).
	Pipeline      bool
	PipelineStall time.Duration

	// cgroupRoot is where the cgroup hierarchies are mounted (tests).
	cgroupRoot string
}

// Errors of Pool.Do, matched with errors.Is. ErrorStatus maps them to HTTP.
var (
	ErrWorkerCrashed = errors.New("sandbox worker died")
	ErrDeadline      = errors.New("sandbox worker overran the deadline")
	ErrProtocol      = errors.New("sandbox worker broke the protocol")
	ErrNoWorker      = errors.New("no sandbox worker became free in time")
	ErrPoolClosed    = errors.New("sandbox pool is closed")
)

// HandlerError is the payload's own failure; the worker is healthy.
type HandlerError struct{ Msg string }

func (e *HandlerError) Error() string { return "function failed: " + e.Msg }

// ErrorStatus is the HTTP status and the aegis-error header value for an
// error of Pool.Do: 502 when the worker or the function failed, 503 when
// no answer could be had in time.
func ErrorStatus(err error) (int, string) {
	var he *HandlerError
	switch {
	case errors.As(err, &he):
		return http.StatusBadGateway, "function-error"
	case errors.Is(err, ErrWorkerCrashed):
		return http.StatusBadGateway, "worker-crashed"
	case errors.Is(err, ErrProtocol):
		return http.StatusBadGateway, "worker-protocol"
	case errors.Is(err, ErrDeadline):
		return http.StatusServiceUnavailable, "deadline-exceeded"
	case errors.Is(err, ErrNoWorker):
		return http.StatusServiceUnavailable, "no-worker"
	case errors.Is(err, ErrPoolClosed):
		return http.StatusServiceUnavailable, "shutting-down"
	}
	return http.StatusBadGateway, "sandbox"
}

// Stats are a pool's counters.
type Stats struct {
	Live int // workers alive now
	Busy int // workers serving a request now
	// Running counts the busy workers whose request has started in the
	// worker (its claim says so; on a pool without pipelining, every busy
	// one). A request that has not started is sent to another worker if
	// its worker dies first.
	Running  int
	Started  uint64 // workers started, replacements included
	Replaced uint64 // workers killed or lost and replaced
	// Pipelined counts requests sent to a busy worker (Config.Pipeline),
	// Withdrawn those of them taken back after PipelineStall.
	Pipelined uint64
	Withdrawn uint64
	// Violations counts denied syscalls by function ("" for a worker
	// between requests) and by syscall name; empty with PlainDeny.
	Violations          map[string]uint64
	ViolationsBySyscall map[string]uint64
}

// Exchange tunes one request for a caller that knows its payload (the
// edge-function executor). The zero value is Do's request.
type Exchange struct {
	// Deadline, if set, replaces ctx's.
	Deadline time.Time
	// Accept checks the response; when it refuses it, the worker is killed
	// and replaced and the request fails with ErrProtocol.
	Accept func([]byte) error
	// Extend is called after a host call the supervisor answered (not one
	// it refused) and may give the worker more time, to compile a module
	// it has just fetched, say. A request is extended once: after Extend
	// has granted time, it is not called again.
	Extend func(op string) time.Duration
	// Once retires the worker after this request whatever its outcome, so
	// that nothing it did carries over to the next (the compile worker).
	Once bool
	// Timeout, if set, replaces Deadline: the request has that long from
	// when it gets a worker, and waits for one (a single-use worker being
	// replaced, say) up to StartTimeout longer.
	Timeout time.Duration
}

// WorkerSubcommand is the aegis command a worker runs as: the supervisor
// starts it with the command line "aegis sandbox-worker" (which ps shows).
const WorkerSubcommand = "sandbox-worker"

// Report is what a worker set up, sent to the supervisor once it is ready
// (the supervisor adds what only it knows: PID, Cgroup, Violations).
type Report struct {
	PID        int            `json:"pid"`
	Arch       string         `json:"arch"`
	UID        int            `json:"uid"`
	GID        int            `json:"gid"`
	Root       string         `json:"root"`
	Rlimits    string         `json:"rlimits"`
	Landlock   LandlockStatus `json:"landlock"`
	SSBD       string         `json:"ssbd"`
	Seccomp    string         `json:"seccomp"`
	Violations string         `json:"violations"`
	Cgroup     string         `json:"cgroup"`
	Threads    int            `json:"threads"`
	// ListenerFD is the worker's seccomp listener, which the supervisor
	// takes with pidfd_getfd; -1 without one.
	ListenerFD int `json:"listener_fd"`
	// SetupTime is the worker's set-up, from its main to its filter.
	SetupTime time.Duration `json:"setup_ns"`
}

// ErrHost wraps an error the supervisor returned for a host call.
var ErrHost = errors.New("host call failed")

// LandlockStatus says which Landlock restrictions are in force on a worker.
type LandlockStatus struct {
	ABI int `json:"abi"`
	// FS, Net and Scopes are the handled (hence denied: there are no
	// rules) access masks.
	FS     uint64 `json:"fs"`
	Net    uint64 `json:"net"`
	Scopes uint64 `json:"scopes"`
	// Threads is "all" or "serving thread" (no way to reach every thread:
	// a cgo binary on a kernel before ABI 8).
	Threads string `json:"threads"`
	// Error is why Landlock is not in force ("" when it is).
	Error string `json:"error,omitempty"`
}

func (s LandlockStatus) String() string {
	if s.Error != "" {
		return "not in force: " + s.Error
	}
	net, scopes := "no network rights (ABI < 4)", "no scopes (ABI < 6)"
	if s.Net != 0 {
		net = "TCP bind and connect denied"
	}
	if s.Scopes != 0 {
		scopes = "abstract unix sockets and signals scoped"
	}
	return fmt.Sprintf("ABI %d: all filesystem access denied, %s, %s; %s", s.ABI, net, scopes, s.Threads)
}

// ErrNoMemoryCap is returned (wrapped) when a worker cannot be given a
// memory cgroup and Config.AllowNoMemoryCap is false.
var ErrNoMemoryCap = errors.New("no memory cap for the workers")

// DefaultMaxFrame bounds a frame's payload unless the pool says otherwise.
const DefaultMaxFrame = 8 << 20
