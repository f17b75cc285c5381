//go:build linux

package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/aegis-edge/aegis/internal/seccomp"
	"golang.org/x/sys/unix"
)

// ipcFD is where the supervisor puts the worker's end of the socketpair.
const ipcFD = 3

// nobody is the uid and gid a worker serves as.
const nobody = 65534

// workerConfig is what the supervisor tells a new worker (msgInit).
type workerConfig struct {
	Handler    string `json:"handler"`
	NoFile     uint64 `json:"nofile"`
	NProc      uint64 `json:"nproc"`
	Notify     bool   `json:"notify"`
	MaxFrame   int    `json:"max_frame"`
	KeepStderr bool   `json:"keep_stderr"`
	Pipeline   bool   `json:"pipeline"` // claimFD is the claim page
}

// Exit codes of a worker that could not start serving.
const (
	exitSetup    = 70 // set-up failed (the reason went to the supervisor)
	exitProtocol = 71 // the supervisor broke the protocol
)

// WorkerMain turns this process into a sandbox worker and serves requests
// with handlers[name], the name chosen by the supervisor, until the
// supervisor hangs up. It never returns. It must be called as early as
// possible by the command the supervisor starts (WorkerSubcommand).
func WorkerMain(handlers map[string]Handler) {
	// Per-thread restrictions that cannot reach every thread (see
	// allThreadsSyscall) are made on this thread, which then serves.
	runtime.LockOSThread()
	start := time.Now()
	raw := newFrameConn(fdReadWriter(ipcFD), DefaultMaxFrame)
	cfg, err := readInit(raw)
	if err != nil {
		os.Exit(exitProtocol)
	}
	h, ok := handlers[cfg.Handler]
	if !ok {
		fail(raw, fmt.Errorf("no handler %q in this binary", cfg.Handler))
	}
	var cl claims
	if cfg.Pipeline {
		// Before set-up closes every other descriptor.
		if cl, err = mapClaims(claimFD); err != nil {
			fail(raw, err)
		}
	}
	rep, listener, conn, err := setUp(cfg)
	if err != nil {
		fail(raw, err)
	}
	rep.SetupTime = time.Since(start)
	b, _ := json.Marshal(rep)
	if err := conn.write(frame{typ: msgReady, payload: b}); err != nil {
		os.Exit(exitProtocol)
	}
	if f, err := conn.read(); err != nil || f.typ != msgAck {
		os.Exit(exitProtocol)
	}
	// The supervisor holds the listener now; a worker must never keep
	// one, or it could answer its own denied calls with "continue".
	if listener >= 0 {
		unix.Close(listener)
	}
	os.Exit(serve(conn, h, cl))
}

func readInit(c *frameConn) (workerConfig, error) {
	var cfg workerConfig
	f, err := c.read()
	if err != nil {
		return cfg, err
	}
	if f.typ != msgInit {
		return cfg, fmt.Errorf("first frame is %s: %w", f.typ, ErrBadFrame)
	}
	return cfg, json.Unmarshal(f.payload, &cfg)
}

// fail reports a set-up error to the supervisor and exits.
func fail(c *frameConn, err error) {
	c.write(frame{typ: msgError, payload: []byte(err.Error())})
	os.Exit(exitSetup)
}

// fdReadWriter does blocking read(2)/write(2) on a descriptor, on the
// calling thread: the worker's IPC socket, from the init frame on.
type fdReadWriter int

func (fd fdReadWriter) Read(p []byte) (int, error) {
	for {
		n, err := unix.Read(int(fd), p)
		if err == unix.EINTR {
			continue
		}
		if n == 0 && err == nil && len(p) > 0 {
			return 0, io.EOF
		}
		if n < 0 {
			n = 0
		}
		return n, err
	}
}

func (fd fdReadWriter) Write(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := unix.Write(int(fd), p[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, err
		}
		n += m
	}
	return n, nil
}

// serveReader is the serving thread's end of the IPC socket. Before each
// read it waits up to quietWait for the socket to become readable in a raw
// epoll_pwait, which the Go runtime does not see: to it the goroutine is
// running, not in a syscall. A thread blocked in a read(2) the runtime knows
// of is a P in a syscall to sysmon, which retakes it and, for each retake,
// goes back to polling every 20 µs; on this serving loop that was about one
// sysmon wake-up per request (docs/BENCHMARKS.md, issue 16). The read that
// follows finds the frame there, or, after quietWait of silence, blocks the
// runtime's way, so that an idle worker sleeps and a collection that stops
// the world never waits on it for long.
type serveReader struct {
	fd   int
	epfd int // -1: no raw wait, reads only
}

// quietWait is how long the raw wait lasts: under load the next request is
// much closer; once it has passed, the worker is idle and pays nothing.
const quietWait = 2 // milliseconds

func newServeReader(fd int) *serveReader {
	r := &serveReader{fd: fd, epfd: -1}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return r
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
		unix.Close(epfd)
		return r
	}
	r.epfd = epfd
	return r
}

func (r *serveReader) Read(p []byte) (int, error) {
	if r.epfd >= 0 {
		for rawWait(r.epfd) == unix.EINTR {
			// A signal is how the runtime asks this goroutine to stop
			// (preemption, a stop of the world); the call above yields at
			// its entry if it was asked.
		}
	}
	return fdReadWriter(r.fd).Read(p)
}

func (r *serveReader) Write(p []byte) (int, error) { return fdReadWriter(r.fd).Write(p) }

// rawWait waits for epfd up to quietWait without entering the runtime's
// syscall state. It is a call, not inlined, so that its entry is a point
// where a pending preemption takes effect.
//
//go:noinline
func rawWait(epfd int) unix.Errno {
	var ev [1]unix.EpollEvent
	_, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&ev[0])), 1, quietWait, 0, 0)
	return e
}

// setUp applies every layer, in order, and returns what it did, the seccomp
// listener (or -1) and the connection to serve on.
func setUp(cfg workerConfig) (Report, int, *frameConn, error) {
	rep := Report{Arch: runtime.GOARCH, ListenerFD: -1}
	fail := func(step string, err error) (Report, int, *frameConn, error) {
		return rep, -1, nil, fmt.Errorf("%s: %w", step, err)
	}
	if err := closeOtherFDs(cfg.KeepStderr); err != nil {
		return fail("closing descriptors", err)
	}
	if err := privateRoot(); err != nil {
		return fail("private root", err)
	}
	rep.Root = "empty read-only tmpfs, no /proc"
	// Dropping every id away from 0 clears all capabilities; Go applies
	// these to every thread.
	if err := syscall.Setgroups(nil); err != nil {
		return fail("setgroups", err)
	}
	if err := syscall.Setresgid(nobody, nobody, nobody); err != nil {
		return fail("setresgid", err)
	}
	if err := syscall.Setresuid(nobody, nobody, nobody); err != nil {
		return fail("setresuid", err)
	}
	rep.UID, rep.GID = unix.Getuid(), unix.Getgid()
	// A credential change clears the parent-death signal: set it again.
	// (If the supervisor already died, the socket reads EOF and we exit.)
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil {
		return fail("parent-death signal", err)
	}
	for _, l := range []struct {
		res int
		v   uint64
	}{{unix.RLIMIT_NOFILE, cfg.NoFile}, {unix.RLIMIT_NPROC, cfg.NProc}, {unix.RLIMIT_CORE, 0}, {unix.RLIMIT_FSIZE, 0}} {
		if err := unix.Setrlimit(l.res, &unix.Rlimit{Cur: l.v, Max: l.v}); err != nil {
			return fail(fmt.Sprintf("rlimit %d", l.res), err)
		}
	}
	rep.Rlimits = fmt.Sprintf("NOFILE %d, NPROC %d, CORE 0, FSIZE 0", cfg.NoFile, cfg.NProc)
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fail("PR_SET_DUMPABLE", err)
	}
	unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&[]byte("sandbox-worker\x00")[0])), 0, 0, 0)
	if _, err := allThreadsSyscall(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); err != nil {
		return fail("no_new_privs", err)
	}
	rep.SSBD = disableSSB()
	rep.Landlock = restrictLandlock()

	// The IPC socket stays blocking and is read by the locked serving
	// thread itself: the kernel wakes that thread when a frame arrives.
	// Through the netpoller a frame woke the polling thread first, which
	// then woke the locked one: two wake-ups per frame (docs/SANDBOX.md
	// has the figures). The runtime starts its threads, GC workers, timers
	// and netpoller (timers use it) before the filter, so lazy set-up
	// paths run while every syscall is still allowed.
	conn := newFrameConn(newServeReader(ipcFD), cfg.MaxFrame)
	rep.Threads = warmUp()

	deny := uint32(seccomp.ActionErrno)
	if cfg.Notify {
		deny = seccomp.ActionNotify
	}
	policy := seccomp.Policy()
	prog, err := seccomp.BuildFilter(policy, deny)
	if err != nil {
		return fail("building the filter", err)
	}
	listener, err := seccomp.Install(prog, cfg.Notify)
	if err != nil {
		return fail("installing the filter", err)
	}
	rep.ListenerFD = listener
	rep.Seccomp = fmt.Sprintf("filter of %d instructions on all threads (TSYNC), %d rules, default EPERM", len(prog), len(policy))
	return rep, listener, conn, nil
}

// closeOtherFDs closes what the worker inherited (0-2; 3 is the IPC
// socket, exec passed nothing else) and every file the runtime or a
// package's init opened since, such as the runtime's cgroup CPU-limit file
// (the runtime re-reads it with pread, which then fails harmlessly, even
// on a reused number: pread on an eventfd or epoll fd fails). The runtime's
// own anonymous descriptors (netpoller epoll and eventfd) stay.
func closeOtherFDs(keepStderr bool) error {
	var st unix.Stat_t
	if err := unix.Fstat(ipcFD, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return fmt.Errorf("fd %d is not the IPC socket (%v)", ipcFD, err)
	}
	last := 2
	if keepStderr {
		last = 1
	}
	if err := unix.CloseRange(0, uint(last), 0); err != nil {
		return err
	}
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err
	}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd <= ipcFD {
			continue
		}
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil { // the directory's own descriptor, already closed
			continue
		}
		if strings.HasPrefix(target, "anon_inode:") {
			continue
		}
		unix.Close(fd)
	}
	return nil
}

// privateRoot pivots into an empty tmpfs and detaches the host's tree. The
// worker is root in its own user and mount namespaces at this point.
func privateRoot() error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	// Any existing directory can hold the new root: the mount is only in
	// this namespace.
	dir := ""
	for _, d := range []string{"/tmp", "/mnt", "/run", "/var/tmp", "/"} {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			dir = d
			break
		}
	}
	const flags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	if err := unix.Mount("aegis-sandbox", dir, "tmpfs", flags, "size=4k,nr_inodes=4,mode=0555"); err != nil {
		return fmt.Errorf("mounting tmpfs on %s: %w", dir, err)
	}
	if err := unix.Chdir(dir); err != nil {
		return err
	}
	// pivot_root(".", ".") stacks the old root on the new one; detaching
	// it leaves only the tmpfs.
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detaching the old root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY|flags, ""); err != nil {
		return fmt.Errorf("remounting the root read-only: %w", err)
	}
	return nil
}

// disableSSB turns speculative store bypass off for the process, for good.
func disableSSB() string {
	all, err := allThreadsSyscall(unix.SYS_PRCTL, unix.PR_SET_SPECULATION_CTRL, unix.PR_SPEC_STORE_BYPASS, unix.PR_SPEC_FORCE_DISABLE)
	switch {
	case errors.Is(err, unix.ENXIO):
		return "not available: the kernel's mitigation is off (spec_store_bypass_disable)"
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENODEV):
		return "not applicable on this CPU"
	case err != nil:
		return "failed: " + err.Error()
	}
	return "disabled on " + threadsWord(all)
}

// warmUp exercises the runtime so that its threads exist and its lazily
// initialised parts have run before the filter; it returns the thread count.
func warmUp() int {
	var wg sync.WaitGroup
	n := runtime.GOMAXPROCS(0)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			x := 0
			for i := range 200000 {
				x += i
			}
			_ = x
			time.Sleep(time.Millisecond)
		}()
	}
	wg.Wait()
	runtime.GC()
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	<-ctx.Done()
	cancel()
	return threadCount()
}

// threadCount is how many threads the runtime has created (there is no
// /proc to count them in).
func threadCount() int { return pprof.Lookup("threadcreate").Count() }

// serve answers requests until the supervisor hangs up, and returns the
// exit code.
func serve(c *frameConn, h Handler, cl claims) int {
	in := &inbox{conn: c}
	for {
		f, err := in.next()
		if errors.Is(err, io.EOF) {
			return 0
		}
		if err != nil || f.typ != msgRequest {
			return exitProtocol
		}
		timeout, body, err := decodeRequest(f.payload)
		if err != nil {
			return exitProtocol
		}
		if !cl.claim(f.id) {
			continue // withdrawn by the supervisor: it expects no answer
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(timeout))
		hc := &hostCaller{conn: c, in: in, id: f.id}
		out, err := h.Handle(ctx, body, hc)
		cancel()
		if hc.broken {
			return exitProtocol
		}
		reply := frame{typ: msgResponse, id: f.id, payload: out}
		if err != nil {
			reply = frame{typ: msgError, id: f.id, payload: []byte(err.Error())}
		}
		// Only a failed write ends the worker: a handler's error is its
		// answer, and the worker stays healthy.
		werr := c.write(reply)
		if errors.Is(werr, ErrFrameTooLarge) {
			reply = frame{typ: msgError, id: f.id, payload: []byte(werr.Error())}
			werr = c.write(reply)
		}
		if werr != nil {
			return exitProtocol
		}
	}
}

// inbox is what the serving thread reads: frames from the supervisor, with
// the requests that arrived while a host call waited for its answer (a
// pipelined request, sent behind the one in flight) set aside for later.
type inbox struct {
	conn *frameConn
	held []frame
}

// maxHeld bounds the requests set aside: the supervisor sends at most one
// behind the request in flight, and its withdrawn ones (pipeline.go).
const maxHeld = 8

func (in *inbox) next() (frame, error) {
	if len(in.held) > 0 {
		f := in.held[0]
		in.held = in.held[1:]
		return f, nil
	}
	return in.conn.read()
}

// reply reads the answer to a host call, setting requests aside.
func (in *inbox) reply() (frame, error) {
	for {
		f, err := in.conn.read()
		if err != nil || f.typ != msgRequest {
			return f, err
		}
		if len(in.held) >= maxHeld {
			return f, fmt.Errorf("%d requests sent during a host call: %w", len(in.held)+1, ErrBadFrame)
		}
		in.held = append(in.held, f)
	}
}

// hostCaller sends host calls for one request and waits for each answer.
type hostCaller struct {
	conn   *frameConn
	in     *inbox
	id     uint64
	broken bool
}

func (h *hostCaller) Call(_ context.Context, op string, data []byte) ([]byte, error) {
	if h.broken {
		return nil, ErrBadFrame
	}
	b, err := encodeHostCall(op, data)
	if err != nil {
		return nil, err
	}
	if err := h.conn.write(frame{typ: msgHostCall, id: h.id, payload: b}); err != nil {
		h.broken = true
		return nil, err
	}
	f, err := h.in.reply()
	if err != nil || f.id != h.id || (f.typ != msgHostReply && f.typ != msgHostError) {
		h.broken = true
		return nil, fmt.Errorf("host call %s: no reply: %w", op, ErrBadFrame)
	}
	if f.typ == msgHostError {
		return nil, fmt.Errorf("%w: %s: %s", ErrHost, op, f.payload)
	}
	return f.payload, nil
}
