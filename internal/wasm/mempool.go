package wasm

import "sync"

// memPool keeps the linear memories of ended instances for the next
// instances of the same module. A fresh instance per request stays the
// rule; only the bytes are reused, and a buffer is zeroed whole before it
// is kept, so an instance sees exactly what a new allocation would show.
// Without it every request allocated its memory afresh: large objects
// that cost a garbage-collection cycle every few dozen requests, the
// scavenger returning the pages and page faults taking them back (a third
// of a worker's time on the hello modules; docs/BENCHMARKS.md).
type memPool struct {
	mu   sync.Mutex
	free [][]byte // each zero over its whole capacity, length 0
}

// Bounds of what a pool keeps: enough buffers for the requests that run
// at once on one module in one process, none so large that keeping it
// idle would matter.
const (
	memPoolBuffers  = 8
	memPoolMaxBytes = 8 << 20
)

// get returns a zeroed buffer of length 0 and capacity at least size, or
// nil when the pool has none.
func (p *memPool) get(size uint64) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.free) - 1; i >= 0; i-- {
		if b := p.free[i]; uint64(cap(b)) >= size {
			p.free = append(p.free[:i], p.free[i+1:]...)
			return b
		}
	}
	return nil
}

// put zeroes the bytes b handed out (b's length: the bytes past it were
// never handed out and are still zero) and keeps b if there is room.
func (p *memPool) put(b []byte) {
	if b == nil || cap(b) > memPoolMaxBytes {
		return
	}
	clear(b)
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.free) < memPoolBuffers {
		p.free = append(p.free, b[:0])
	}
}
