//go:build linux

package sandbox

import (
	"fmt"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Pipelining (Config.Pipeline). A worker serves one request at a time, and
// between two requests it used to sleep until the supervisor had read the
// answer and handed it the next one: on a VM that sleep and wake-up cost
// about as much CPU as running a small module (docs/BENCHMARKS.md, issue
// 16). So while a worker is busy, the supervisor may send it the next
// request, which the worker reads as soon as it has answered the first. That
// request is queued: it waits for its turn to read the socket, and nothing of
// it reaches the node (answer, host call) before then.
//
// A queued request must not be held for long behind a slow one (another
// tenant's), so after Config.PipelineStall it is withdrawn and waits for a
// free worker like any other. The worker may be starting it at that very
// moment, so the two sides decide through a word in a page they share (a
// claim): the supervisor offers request n as "n queued", the worker moves it
// to "n started" before it runs it, the supervisor to "n withdrawn" to take
// it back, each with one compare-and-swap, and whoever moves it first wins.
// A withdrawn request's frame stays in the socket and the worker skips it.
// So a request runs at most once, and a request the worker never started
// can be sent to another worker, even when its worker dies.
//
// The worker is not trusted with the page: what it writes there can only
// make the supervisor believe a queued request started, and such a request
// then waits for its turn up to its deadline, as a slow answer would. The
// page is sealed, so that no one can shrink it under the supervisor's
// mapping.

// claimFD is the page's descriptor in a worker, before set-up closes it.
const claimFD = ipcFD + 1

// States of a request's claim word: its id shifted left by two, or'ed with
// one of these.
const (
	claimQueued    = 0
	claimStarted   = 1
	claimWithdrawn = 2
)

// claimPageSize is the shared page: two words are used, one per parity of
// the request id, since a worker holds at most the request in flight and the
// one queued behind it, and their ids differ in parity (worker.nextID).
const claimPageSize = 4096

// claims is a worker's claim page, mapped in the supervisor and the worker;
// nil mem: no pipelining (every request may start).
type claims struct{ mem []byte }

func (c claims) word(id uint64) *uint64 {
	return (*uint64)(unsafe.Pointer(&c.mem[8*(id&1)]))
}

// offer marks request id as queued, before its frame is sent.
func (c claims) offer(id uint64) {
	if c.mem != nil {
		atomic.StoreUint64(c.word(id), id<<2|claimQueued)
	}
}

// claim is the worker's move: whether request id may run.
func (c claims) claim(id uint64) bool {
	return c.mem == nil || atomic.CompareAndSwapUint64(c.word(id), id<<2|claimQueued, id<<2|claimStarted)
}

// started reports whether the worker has claimed request id (a pool
// without pipelining: whether it could have).
func (c claims) started(id uint64) bool {
	return c.mem == nil || atomic.LoadUint64(c.word(id)) == id<<2|claimStarted
}

// withdraw is the supervisor's move: whether request id was taken back
// before the worker started it.
func (c claims) withdraw(id uint64) bool {
	return c.mem != nil && atomic.CompareAndSwapUint64(c.word(id), id<<2|claimQueued, id<<2|claimWithdrawn)
}

// newClaims makes a worker's claim page: a sealed memfd, mapped here, whose
// descriptor the worker inherits and maps at set-up.
func newClaims() (claims, *os.File, error) {
	fd, err := unix.MemfdCreate("aegis-sandbox-claims", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return claims{}, nil, fmt.Errorf("claim page: %w", err)
	}
	f := os.NewFile(uintptr(fd), "sandbox-claims")
	if err := unix.Ftruncate(fd, claimPageSize); err != nil {
		f.Close()
		return claims{}, nil, fmt.Errorf("claim page: %w", err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_SEAL); err != nil {
		f.Close()
		return claims{}, nil, fmt.Errorf("sealing the claim page: %w", err)
	}
	mem, err := unix.Mmap(fd, 0, claimPageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		f.Close()
		return claims{}, nil, fmt.Errorf("mapping the claim page: %w", err)
	}
	return claims{mem: mem}, f, nil
}

// mapClaims is the worker's side of newClaims: it maps the inherited page
// and closes the descriptor.
func mapClaims(fd int) (claims, error) {
	defer unix.Close(fd)
	mem, err := unix.Mmap(fd, 0, claimPageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return claims{}, fmt.Errorf("mapping the claim page: %w", err)
	}
	return claims{mem: mem}, nil
}

func (c *claims) unmap() {
	if c.mem != nil {
		unix.Munmap(c.mem)
		c.mem = nil
	}
}

// DefaultPipelineStall is how long a queued request waits behind another
// before it is withdrawn (Config.PipelineStall).
const DefaultPipelineStall = 5 * time.Millisecond

// queued is a request sent to a busy worker, waiting for its turn.
type queued struct {
	id   uint64
	turn chan struct{} // closed when the request may read the socket, or the worker is gone
	// Set before turn is closed, when the worker died first: whether the
	// request had started (then it failed with the worker) or not (then
	// it may go to another worker).
	gone, started bool
}

// slot is an offer to queue behind worker w's request of generation gen.
type slot struct {
	w   *worker
	gen uint64
}

// nextID is the id of the next request sent to w, under p.mu: of another
// parity than the request in flight, whose claim word must stay its own.
func (w *worker) nextID() uint64 {
	w.lastID++
	if w.busy && w.lastID&1 == w.current&1 {
		w.lastID++
	}
	return w.lastID
}

// offerSlot lets a waiting request queue behind w's request in flight.
func (p *Pool) offerSlot(w *worker, gen uint64) {
	if !p.cfg.Pipeline {
		return
	}
	select {
	case p.slots <- slot{w, gen}:
	default: // offers to spare; a stale one is refused on use
	}
}

// maxPipelinedFrame bounds the frame of a request sent to a busy worker:
// the frame must go out without waiting for the worker to read (see
// fitsUnread), and larger requests wait for a free worker instead.
const maxPipelinedFrame = 48 << 10

// pipelinedFrame is the size of req's frame.
func pipelinedFrame(req []byte) int { return frameHeaderSize + 8 + len(req) }

// fitsUnread reports whether a frame of n bytes can be written to w's
// socket at once, without waiting for the worker to read anything, under
// w.wmu (nothing else writes meanwhile, and the worker can only drain the
// queue). A busy worker reads nothing until it has answered, so a write
// that waited would hold the queued request (and w.wmu) until then, the
// stall timer not yet started, past the request's deadline; and a write
// cut short by a deadline would leave half a frame in the stream. The
// kernel allocates a unix stream's buffers while what is unread is under
// SO_SNDBUF: with at most a quarter of it unread and a frame of at most a
// quarter, every allocation of the write succeeds.
func (w *worker) fitsUnread(n int) bool {
	if w.sndbuf <= 0 || n > w.sndbuf/4 {
		return false
	}
	unread := -1
	if err := w.rc.Control(func(fd uintptr) {
		if v, err := unix.IoctlGetInt(int(fd), unix.SIOCOUTQ); err == nil {
			unread = v
		}
	}); err != nil {
		return false
	}
	return unread >= 0 && unread <= w.sndbuf/4
}

// takeSlot queues req behind s's worker and sends it, if that is still
// possible.
func (p *Pool) takeSlot(s slot, req []byte, deadline time.Time) *queued {
	w := s.w
	// Held until the frame is out: the request may get its turn at once,
	// and the next one queue behind it, whose frame must come after.
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if !w.fitsUnread(pipelinedFrame(req)) {
		return nil
	}
	p.mu.Lock()
	if w.gen != s.gen || !w.busy || w.queued != nil || w.stalled || w.claims.mem == nil {
		p.mu.Unlock()
		return nil
	}
	q := &queued{id: w.nextID(), turn: make(chan struct{})}
	w.claims.offer(q.id)
	w.queued = q
	p.pipelined++
	p.mu.Unlock()
	if err := w.conn.write(frame{typ: msgRequest, id: q.id, payload: encodeRequest(int64(time.Until(deadline)), req)}); err != nil {
		// The request before it is failing (its deadline, or the
		// worker's end): a frame not wholly sent never starts.
		if p.withdraw(w, q) {
			return nil
		}
		// Its turn came, or its worker died, before the failure: the
		// worker cannot run it, and the stream is in doubt.
		p.retireWorker(w, fmt.Errorf("%w: a queued request's frame failed: %w", ErrWorkerCrashed, err))
		return nil
	}
	return q
}

// withdraw takes q back from w if it has not started. It reports false
// when q started or already has its turn (or w died: then q.gone says).
func (p *Pool) withdraw(w *worker, q *queued) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w.queued != q || !w.claims.withdraw(q.id) {
		return false
	}
	w.queued = nil
	// What holds w is slow: queue nothing more behind it.
	w.stalled = true
	p.withdrawn++
	return true
}

// passTurn ends a request that leaves w healthy: the request queued behind
// it gets the worker, or it goes back to the idle ones.
func (p *Pool) passTurn(w *worker) {
	p.mu.Lock()
	w.gen++
	gen := w.gen
	if q := w.queued; q != nil {
		w.queued, w.current, w.stalled = nil, q.id, false
		p.mu.Unlock()
		close(q.turn)
		p.offerSlot(w, gen)
		return
	}
	w.busy, w.stalled = false, false
	retired := w.retired
	p.mu.Unlock()
	if retired {
		// Recycled meanwhile: its replacement takes its place in idle,
		// which has room for Size workers only.
		return
	}
	p.idle <- w
}

// abandonQueued settles the request queued behind a worker that is gone,
// under p.mu once the worker is dead: it may go elsewhere if it never
// started.
func (w *worker) abandonQueued() {
	q := w.queued
	if q == nil {
		return
	}
	w.queued = nil
	q.gone, q.started = true, !w.claims.withdraw(q.id)
	close(q.turn)
}
