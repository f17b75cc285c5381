//go:build linux

package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aegis-edge/aegis/internal/rawsock"
	"github.com/aegis-edge/aegis/internal/seccomp"
	"golang.org/x/sys/unix"
)

func (c Config) withDefaults() Config {
	if c.Size <= 0 {
		c.Size = 2
	}
	if c.Executable == "" {
		c.Executable = "/proc/self/exe"
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.StartTimeout <= 0 {
		c.StartTimeout = 5 * time.Second
	}
	if c.MaxFrame <= 0 {
		c.MaxFrame = DefaultMaxFrame
	}
	if c.Memory == 0 {
		c.Memory = 256 << 20
	}
	if c.Pids == 0 {
		c.Pids = 64
	}
	if c.NoFile == 0 {
		c.NoFile = 16
	}
	if c.NProc == 0 {
		c.NProc = 64
	}
	if c.PipelineStall <= 0 {
		c.PipelineStall = DefaultPipelineStall
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.cgroupRoot == "" {
		c.cgroupRoot = cgroupRoot
	}
	return c
}

// errUsedOnce is why a worker that serves one request only is replaced.
var errUsedOnce = errors.New("single-use worker done")

// Pool is the supervisor: it keeps Size workers, hands each request to an
// idle one, serves its host calls, and replaces a worker that fails.
type Pool struct {
	cfg   Config
	idle  chan *worker
	slots chan slot // offers to queue behind a busy worker (Config.Pipeline)
	done  chan struct{}
	wg    sync.WaitGroup // replacements being started

	mu         sync.Mutex
	workers    map[*worker]bool
	closed     bool
	started    uint64
	replaced   uint64
	violations map[string]uint64
	bySyscall  map[string]uint64
	nextID     uint64
	pipelined  uint64
	withdrawn  uint64
}

type worker struct {
	id       uint64
	cmd      *exec.Cmd
	sock     *os.File
	conn     *frameConn
	pidfd    int
	listener *os.File
	cg       *workerCgroup
	report   Report
	exited   chan struct{}
	function atomic.Pointer[string]
	retire   sync.Once
	logged   atomic.Int32
	wmu      sync.Mutex // one frame written at a time: a queued request's and host replies
	claims   claims     // the claim page shared with the worker (pipeline.go)
	rc       syscall.RawConn
	sndbuf   int // the socket's SO_SNDBUF (pipeline.go, fitsUnread)

	// Under Pool.mu.
	busy    bool    // a request holds the worker: it is not in Pool.idle
	gen     uint64  // counts requests taking the worker, to tell stale slot offers
	lastID  uint64  // id of the last request sent
	current uint64  // id of the request whose caller reads the socket
	queued  *queued // the request sent behind current, waiting for its turn
	stalled bool    // a request gave up waiting behind current
	retired bool
	// unstarted is current when the worker was retired before it started
	// it (its claim withdrawn then): it may run elsewhere.
	unstarted uint64
}

// errNotStarted is why a request is sent again: its worker was retired
// before starting it.
var errNotStarted = errors.New("worker retired before starting the request")

// NewPool starts cfg.Size workers and returns once all are ready.
func NewPool(ctx context.Context, cfg Config) (*Pool, error) {
	cfg = cfg.withDefaults()
	if cfg.Handler == "" {
		return nil, errors.New("sandbox: no handler named")
	}
	if cfg.Memory < 0 && !cfg.AllowNoMemoryCap {
		return nil, fmt.Errorf("sandbox: workers without a memory limit: %w", ErrNoMemoryCap)
	}
	sweepStaleCgroups(cfg)
	p := &Pool{
		cfg: cfg, idle: make(chan *worker, cfg.Size), slots: make(chan slot, 2*cfg.Size), done: make(chan struct{}),
		workers: map[*worker]bool{}, violations: map[string]uint64{}, bySyscall: map[string]uint64{},
	}
	for range cfg.Size {
		w, err := p.spawn(ctx)
		if err != nil {
			p.Close()
			return nil, err
		}
		p.idle <- w
	}
	return p, nil
}

// Do runs one request for function in a worker and returns the response.
// The deadline is ctx's, or cfg.Timeout; a worker that overruns it is killed.
func (p *Pool) Do(ctx context.Context, function string, req []byte) ([]byte, error) {
	return p.DoExchange(ctx, function, req, Exchange{})
}

// DoExchange is Do, tuned by ex.
func (p *Pool) DoExchange(ctx context.Context, function string, req []byte, ex Exchange) ([]byte, error) {
	deadline := ex.Deadline
	if deadline.IsZero() {
		var ok bool
		if deadline, ok = ctx.Deadline(); !ok {
			deadline = time.Now().Add(p.cfg.Timeout)
		}
	}
	if 8+len(req) > p.cfg.MaxFrame {
		return nil, fmt.Errorf("request of %d bytes: %w", len(req), ErrFrameTooLarge)
	}
	acquireBy := deadline
	if ex.Timeout > 0 {
		acquireBy = time.Now().Add(p.cfg.StartTimeout + ex.Timeout)
	}
	// A single-use worker takes nothing behind it, and a request with its
	// own Timeout counts it from when it has a worker to itself.
	// A large request waits for a free worker (maxPipelinedFrame).
	pipeline := p.cfg.Pipeline && !ex.Once && ex.Timeout == 0 && pipelinedFrame(req) <= maxPipelinedFrame
	resent := false
	for {
		actx, cancel := context.WithDeadline(ctx, acquireBy)
		w, q, err := p.acquire(actx, pipeline, req, deadline)
		cancel()
		if err != nil {
			return nil, err
		}
		id := uint64(0)
		var sent func() // after the request is sent
		if q != nil {
			var again bool
			if again, err = p.waitTurn(ctx, w, q, deadline); err != nil {
				return nil, err
			}
			if again {
				// It has waited once behind another: from now on
				// only a free worker.
				pipeline = false
				continue
			}
			id = q.id
		} else {
			p.mu.Lock()
			id = w.nextID()
			w.current = id
			w.claims.offer(id)
			gen := w.gen
			p.mu.Unlock()
			if pipeline {
				// Only once its frame is out: the worker reads in order.
				sent = func() { p.offerSlot(w, gen) }
			}
		}
		if ex.Timeout > 0 {
			deadline = time.Now().Add(ex.Timeout)
		}
		out, err := p.exchange(ctx, w, id, q == nil, sent, function, req, deadline, ex)
		if errors.Is(err, errNotStarted) && !resent {
			// Once: workers that keep dying before they start anything
			// do not get the same request again and again.
			pipeline, resent = false, true
			continue
		}
		return out, err
	}
}

// exchange is one request on w from its turn on: sends it unless it was
// sent already (queued), then calls sent, reads the answer and leaves the
// worker to the next request or has it replaced.
func (p *Pool) exchange(ctx context.Context, w *worker, id uint64, send bool, sent func(), function string, req []byte, deadline time.Time, ex Exchange) ([]byte, error) {
	w.function.Store(&function)
	out, err := p.roundTrip(ctx, w, id, send, sent, function, req, deadline, ex.Extend)
	w.function.Store(nil)
	if err == nil && ex.Accept != nil {
		if err = ex.Accept(out); err != nil && !errors.Is(err, ErrProtocol) {
			err = fmt.Errorf("%w: %w", ErrProtocol, err)
		}
	}
	var he *HandlerError
	if err != nil && !errors.As(err, &he) {
		p.retireWorker(w, err)
		if errors.Is(err, ErrWorkerCrashed) {
			// It died before starting it (after answering the request
			// before it, say): the request may go to another worker.
			p.mu.Lock()
			unstarted := w.unstarted == id
			p.mu.Unlock()
			if unstarted {
				return nil, fmt.Errorf("%w: %w", errNotStarted, err)
			}
		}
		return nil, err
	}
	if ex.Once {
		p.retireWorker(w, errUsedOnce)
		return out, err
	}
	p.passTurn(w)
	return out, err
}

// acquire returns an idle worker, or with pipeline a busy one the request
// may queue behind (with its queued), whichever comes first; an idle one
// when both are there.
func (p *Pool) acquire(ctx context.Context, pipeline bool, req []byte, deadline time.Time) (*worker, *queued, error) {
	slots := p.slots
	if !pipeline {
		slots = nil // never ready
	}
	for {
		var w *worker
		select {
		case w = <-p.idle:
		default:
			select {
			case w = <-p.idle:
			case s := <-slots:
				if q := p.takeSlot(s, req, deadline); q != nil {
					return s.w, q, nil
				}
				continue
			case <-p.done:
				return nil, nil, ErrPoolClosed
			case <-ctx.Done():
				return nil, nil, fmt.Errorf("%w: %w", ErrNoWorker, ctx.Err())
			}
		}
		select {
		case <-w.exited:
			p.retireWorker(w, ErrWorkerCrashed)
			continue
		default:
		}
		p.mu.Lock()
		w.busy = true
		w.gen++
		p.mu.Unlock()
		return w, nil, nil
	}
}

// waitTurn waits until the request before q on w is answered. It reports
// again when q was withdrawn or its worker died before starting it: the
// caller asks for a worker again.
func (p *Pool) waitTurn(ctx context.Context, w *worker, q *queued, deadline time.Time) (again bool, err error) {
	stall := time.NewTimer(min(p.cfg.PipelineStall, time.Until(deadline)))
	defer stall.Stop()
	select {
	case <-q.turn:
		return p.settleTurn(q)
	case <-stall.C:
	case <-ctx.Done():
	}
	if p.withdraw(w, q) {
		switch {
		case ctx.Err() != nil:
			return false, fmt.Errorf("%w: caller gave up: %w", ErrDeadline, ctx.Err())
		case !time.Now().Before(deadline):
			return false, ErrDeadline
		}
		return true, nil
	}
	// It started: its turn comes once the answer before it is read, at
	// once, since a worker starts it only after answering. Only a worker
	// that wrote the claim word itself leaves it waiting longer, and then
	// not past its deadline.
	late := time.NewTimer(time.Until(deadline))
	defer late.Stop()
	select {
	case <-q.turn:
		return p.settleTurn(q)
	case <-late.C:
	}
	p.retireWorker(w, fmt.Errorf("%w: a queued request claimed started got no turn by its deadline", ErrProtocol))
	return false, ErrDeadline
}

// settleTurn is what a queued request does once its turn channel is closed.
func (p *Pool) settleTurn(q *queued) (again bool, err error) {
	switch {
	case !q.gone:
		return false, nil
	case q.started:
		return false, fmt.Errorf("%w: it died while the request queued behind another ran", ErrWorkerCrashed)
	}
	return true, nil
}

// testHookCancel, if set, runs first when a request's context is done
// during its exchange (tests: a late cancellation).
var testHookCancel func()

func (p *Pool) roundTrip(ctx context.Context, w *worker, id uint64, send bool, sent func(), function string, req []byte, deadline time.Time, extend func(string) time.Duration) ([]byte, error) {
	w.sock.SetDeadline(deadline)
	// A caller that gives up early stops the exchange at once. The
	// socket's deadline is the next request's once this one is over, and
	// stop does not wait for a cancellation already running: over, under
	// dmu, keeps a late one from reaching the next request.
	var dmu sync.Mutex
	over := false
	stop := context.AfterFunc(ctx, func() {
		if testHookCancel != nil {
			testHookCancel()
		}
		dmu.Lock()
		defer dmu.Unlock()
		if !over {
			w.sock.SetDeadline(time.Unix(1, 0))
		}
	})
	defer func() {
		stop()
		dmu.Lock()
		over = true
		dmu.Unlock()
		w.sock.SetDeadline(time.Time{})
	}()
	if send {
		w.wmu.Lock()
		err := w.conn.write(frame{typ: msgRequest, id: id, payload: encodeRequest(int64(time.Until(deadline)), req)})
		w.wmu.Unlock()
		if err != nil {
			return nil, p.ioError(ctx, w, err)
		}
	}
	if sent != nil {
		sent()
	}
	for {
		f, err := w.conn.read()
		if err != nil {
			return nil, p.ioError(ctx, w, err)
		}
		if f.id != id {
			return nil, fmt.Errorf("%w: %s frame for id %d, not %d", ErrProtocol, f.typ, f.id, id)
		}
		switch f.typ {
		case msgResponse:
			return f.payload, nil
		case msgError:
			return nil, &HandlerError{Msg: string(f.payload)}
		case msgHostCall:
			reply, op := p.serveHost(ctx, function, f.payload)
			reply.id = id
			w.wmu.Lock()
			err := w.conn.write(reply)
			w.wmu.Unlock()
			if err != nil {
				return nil, p.ioError(ctx, w, err)
			}
			// Only an answered call earns time, and only once: a worker
			// repeating calls (refused or not) cannot hold the request
			// past its deadline plus one extension.
			if extend != nil && reply.typ == msgHostReply {
				if d := extend(op); d > 0 {
					extend = nil
					deadline = deadline.Add(d)
					// Not over a cancellation already made.
					dmu.Lock()
					if ctx.Err() == nil {
						w.sock.SetDeadline(deadline)
					}
					dmu.Unlock()
				}
			}
		default:
			return nil, fmt.Errorf("%w: unexpected %s frame", ErrProtocol, f.typ)
		}
	}
}

func (p *Pool) serveHost(ctx context.Context, function string, payload []byte) (frame, string) {
	op, data, err := decodeHostCall(payload)
	if err == nil && p.cfg.Host == nil {
		err = errors.New("no host services")
	}
	var out []byte
	if err == nil {
		out, err = p.cfg.Host.ServeHost(ctx, function, op, data)
	}
	if err == nil && len(out) > p.cfg.MaxFrame {
		err = fmt.Errorf("host reply of %d bytes: %w", len(out), ErrFrameTooLarge)
	}
	if err != nil {
		return frame{typ: msgHostError, payload: []byte(err.Error())}, op
	}
	return frame{typ: msgHostReply, payload: out}, op
}

// ioError names what an I/O failure with a worker means.
func (p *Pool) ioError(ctx context.Context, w *worker, err error) error {
	switch {
	case errors.Is(err, ErrFrameTooLarge), errors.Is(err, ErrBadFrame):
		return fmt.Errorf("%w: %w", ErrProtocol, err)
	case errors.Is(err, os.ErrDeadlineExceeded):
		if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("%w: caller gave up: %w", ErrDeadline, ctx.Err())
		}
		return ErrDeadline
	}
	select {
	case <-w.exited:
		return fmt.Errorf("%w: %s", ErrWorkerCrashed, w.cmd.ProcessState)
	case <-time.After(100 * time.Millisecond):
		return fmt.Errorf("%w: %w", ErrWorkerCrashed, err)
	}
}

// supervisorSocket is the supervisor's end of a worker's socket, read and
// written with raw calls inside the runtime's poller (package rawsock): a
// write that wakes the worker takes 20 µs or more on a VM, long enough for
// sysmon to retake the P of a goroutine in a syscall under load
// (docs/BENCHMARKS.md, issue 16).
type supervisorSocket struct{ rc syscall.RawConn }

func (s supervisorSocket) Read(p []byte) (int, error)  { return rawsock.Read(s.rc, p) }
func (s supervisorSocket) Write(p []byte) (int, error) { return rawsock.Write(s.rc, p) }

// spawn starts one worker and waits until it is ready.
func (p *Pool) spawn(ctx context.Context) (*worker, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrPoolClosed
	}
	p.nextID++
	w := &worker{id: p.nextID, pidfd: -1, exited: make(chan struct{})}
	p.mu.Unlock()

	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, err
	}
	w.sock = os.NewFile(uintptr(fds[0]), "sandbox-ipc")
	child := os.NewFile(uintptr(fds[1]), "sandbox-ipc-worker")
	defer child.Close()
	rc, err := w.sock.SyscallConn()
	if err != nil {
		w.sock.Close()
		return nil, err
	}
	w.conn = newFrameConn(supervisorSocket{rc}, p.cfg.MaxFrame)
	w.rc = rc
	extra := []*os.File{child}
	if p.cfg.Pipeline {
		w.sndbuf, _ = unix.GetsockoptInt(fds[0], unix.SOL_SOCKET, unix.SO_SNDBUF)
		c, page, err := newClaims()
		if err != nil {
			w.sock.Close()
			return nil, err
		}
		defer page.Close()
		w.claims = c
		extra = append(extra, page) // claimFD in the worker
	}

	w.cmd = &exec.Cmd{
		Path:       p.cfg.Executable,
		Args:       []string{"aegis", WorkerSubcommand},
		Env:        []string{},
		Dir:        "/",
		ExtraFiles: extra,
		Stderr:     p.cfg.Stderr,
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNS | unix.CLONE_NEWNET |
				unix.CLONE_NEWIPC | unix.CLONE_NEWUTS | unix.CLONE_NEWCGROUP,
			// Root of the new user namespace sets the worker up, then
			// drops to nobody; no other id exists inside.
			UidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}, {ContainerID: nobody, HostID: nobody, Size: 1}},
			GidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}, {ContainerID: nobody, HostID: nobody, Size: 1}},
			GidMappingsEnableSetgroups: true,
			Credential:                 &syscall.Credential{Uid: 0, Gid: 0, Groups: []uint32{}},
			Pdeathsig:                  syscall.SIGKILL,
			PidFD:                      &w.pidfd,
		},
	}
	cg, cgDesc, cgErr := newWorkerCgroup(p.cfg.cgroupRoot, p.cfg.Memory, p.cfg.Pids)
	if cgErr != nil {
		if !p.cfg.AllowNoMemoryCap {
			w.sock.Close()
			w.claims.unmap()
			err := fmt.Errorf("sandbox: refusing to start a worker without its memory cap (set functions.allow_no_memory_cap to allow it): %w: %w", ErrNoMemoryCap, cgErr)
			p.cfg.Logger.Error("sandbox: no memory cap for the workers", "err", err)
			return nil, err
		}
		cgDesc = "unavailable: " + cgErr.Error()
		p.cfg.Logger.Warn("sandbox: worker runs without a memory cap (functions.allow_no_memory_cap)", "err", cgErr)
	}
	w.cg = cg
	if err := w.cmd.Start(); err != nil {
		w.sock.Close()
		p.cleanup(w)
		w.claims.unmap()
		return nil, fmt.Errorf("starting worker: %w", err)
	}
	go func() {
		w.cmd.Wait()
		close(w.exited)
	}()
	fail := func(err error) (*worker, error) {
		p.retireWorker(w, err)
		return nil, fmt.Errorf("worker %d: %w", w.cmd.Process.Pid, err)
	}
	p.mu.Lock()
	closed := p.closed
	if !closed {
		p.workers[w] = true
		p.started++
	}
	p.mu.Unlock()
	if closed {
		return fail(ErrPoolClosed)
	}
	if cg != nil {
		if err := cg.join(w.cmd.Process.Pid); err != nil {
			return fail(err)
		}
	}
	init, _ := json.Marshal(workerConfig{
		Handler: p.cfg.Handler, NoFile: p.cfg.NoFile, NProc: p.cfg.NProc,
		Notify: !p.cfg.PlainDeny, MaxFrame: p.cfg.MaxFrame, KeepStderr: p.cfg.Stderr != nil,
		Pipeline: p.cfg.Pipeline,
	})
	deadline := time.Now().Add(p.cfg.StartTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	w.sock.SetDeadline(deadline)
	if err := w.conn.write(frame{typ: msgInit, payload: init}); err != nil {
		return fail(p.ioError(ctx, w, err))
	}
	f, err := w.conn.read()
	if err != nil {
		return fail(p.ioError(ctx, w, err))
	}
	switch f.typ {
	case msgReady:
	case msgError:
		return fail(fmt.Errorf("set-up failed: %s", f.payload))
	default:
		return fail(fmt.Errorf("%w: %s frame instead of ready", ErrProtocol, f.typ))
	}
	// The report is filled in here and published under mu: Reports reads
	// it from other goroutines once the worker is in p.workers.
	var rep Report
	if err := json.Unmarshal(f.payload, &rep); err != nil {
		return fail(fmt.Errorf("%w: ready report: %w", ErrProtocol, err))
	}
	rep.PID = w.cmd.Process.Pid
	rep.Cgroup = cgDesc
	rep.Violations = "not observable (kernel EPERM)"
	if !p.cfg.PlainDeny {
		l, err := seccomp.TakeListener(w.pidfd, rep.ListenerFD)
		if err != nil {
			return fail(err)
		}
		w.listener = l
		rep.Violations = "counted and attributed by the supervisor (user notification)"
	}
	p.mu.Lock()
	w.report = rep
	p.mu.Unlock()
	if w.listener != nil {
		go func() {
			if err := seccomp.ServeNotifications(w.listener, func(d seccomp.Data) { p.violation(w, d) }); err != nil && !errors.Is(err, os.ErrClosed) {
				p.cfg.Logger.Warn("sandbox: seccomp listener failed", "pid", rep.PID, "err", err)
			}
		}()
	}
	if err := w.conn.write(frame{typ: msgAck}); err != nil {
		return fail(p.ioError(ctx, w, err))
	}
	w.sock.SetDeadline(time.Time{})
	p.cfg.Logger.Debug("sandbox: worker ready", "pid", w.report.PID, "setup", w.report.SetupTime)
	return w, nil
}

func (p *Pool) violation(w *worker, d seccomp.Data) {
	fn := ""
	if f := w.function.Load(); f != nil {
		fn = *f
	}
	name := seccomp.SyscallName(d.Nr)
	p.mu.Lock()
	p.violations[fn]++
	p.bySyscall[name]++
	p.mu.Unlock()
	if w.logged.Add(1) <= 8 {
		p.cfg.Logger.Warn("sandbox: syscall denied", "function", fn, "syscall", name, "pid", w.report.PID)
	}
}

// retireWorker kills a worker, reaps it, releases what it held and starts
// a replacement unless the pool is closing. It runs once per worker.
func (p *Pool) retireWorker(w *worker, cause error) {
	w.retire.Do(func() {
		if w.cmd.Process != nil {
			w.cmd.Process.Kill()
			<-w.exited
		}
		w.sock.Close()
		p.cleanup(w)
		p.mu.Lock()
		defer p.mu.Unlock()
		w.retired = true
		// Dead now: a claim it did not make, it never will.
		if w.busy && w.current != 0 && w.claims.withdraw(w.current) {
			w.unstarted = w.current
		}
		w.abandonQueued()
		w.claims.unmap()
		delete(p.workers, w)
		if p.closed {
			return
		}
		p.replaced++
		p.cfg.Logger.Info("sandbox: replacing worker", "pid", w.report.PID, "cause", cause)
		// Added under mu while open: Close's Wait comes after.
		p.wg.Add(1)
		go p.replace()
	})
}

func (p *Pool) cleanup(w *worker) {
	if w.listener != nil {
		w.listener.Close()
	}
	if w.pidfd >= 0 {
		unix.Close(w.pidfd)
		w.pidfd = -1
	}
	if w.cg != nil {
		if err := w.cg.remove(); err != nil {
			p.cfg.Logger.Warn("sandbox: removing cgroup", "err", err)
		}
	}
}

func (p *Pool) replace() {
	defer p.wg.Done()
	backoff := 10 * time.Millisecond
	for {
		w, err := p.spawn(context.Background())
		if err == nil {
			select {
			case p.idle <- w:
			case <-p.done: // Close retires it
			}
			return
		}
		if errors.Is(err, ErrPoolClosed) {
			return
		}
		p.cfg.Logger.Error("sandbox: starting a replacement worker", "err", err)
		select {
		case <-p.done:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// Close kills every worker and waits until all are reaped and cleaned up.
func (p *Pool) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.done)
	ws := make([]*worker, 0, len(p.workers))
	for w := range p.workers {
		ws = append(ws, w)
	}
	p.mu.Unlock()
	// A worker being retired elsewhere is waited for by its sync.Once.
	for _, w := range ws {
		p.retireWorker(w, ErrPoolClosed)
	}
	p.wg.Wait()
	return nil
}

// Stats returns the pool's counters.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := Stats{Live: len(p.workers), Started: p.started, Replaced: p.replaced, Pipelined: p.pipelined, Withdrawn: p.withdrawn,
		Violations: map[string]uint64{}, ViolationsBySyscall: map[string]uint64{}}
	for w := range p.workers {
		if w.function.Load() != nil {
			s.Busy++
			if w.claims.started(w.current) {
				s.Running++
			}
		}
	}
	for k, v := range p.violations {
		s.Violations[k] = v
	}
	for k, v := range p.bySyscall {
		s.ViolationsBySyscall[k] = v
	}
	return s
}

// Reports returns the set-up report of every live worker.
func (p *Pool) Reports() []Report {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Report
	for w := range p.workers {
		out = append(out, w.report)
	}
	return out
}

// errRecycled is why a worker that Recycle was asked for is replaced.
var errRecycled = errors.New("recycled on request")

// Recycle kills worker pid (a PID of Reports) and starts a fresh worker in
// its place, as if it had failed: a request it was serving fails with
// ErrWorkerCrashed. It reports whether pid was a worker of p.
func (p *Pool) Recycle(pid int) bool {
	w := p.workerByPID(pid)
	if w == nil {
		return false
	}
	p.retireWorker(w, errRecycled)
	return true
}

// workerByPID finds a live worker.
func (p *Pool) workerByPID(pid int) *worker {
	p.mu.Lock()
	defer p.mu.Unlock()
	for w := range p.workers {
		if w.report.PID == pid {
			return w
		}
	}
	return nil
}
