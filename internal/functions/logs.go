package functions

import (
	"context"
	"sync"
	"time"
)

// LogLine is one line of a function's log: what the function wrote to
// stderr or through the host log call, its access log, and its errors.
type LogLine struct {
	Time     time.Time `json:"time"`
	Function string    `json:"function"`
	Version  uint64    `json:"version,omitempty"`
	// Stream is "stderr", "log" (host call), "access" or "error".
	Stream  string            `json:"stream"`
	Level   string            `json:"level,omitempty"`
	Message string            `json:"message"`
	Attrs   map[string]string `json:"attrs,omitempty"`
}

// logRing keeps the most recent lines of one function and wakes followers.
// It is memory only: the node's structured log (slog) is the durable copy.
type logRing struct {
	mu    sync.Mutex
	lines []LogLine
	next  int    // index of the oldest line once the ring is full
	seq   uint64 // lines ever written
	wake  chan struct{}
	// handedOut says a follower holds wake: only then does a line need
	// to close it and make the next (every request writes a line).
	handedOut bool
}

const logRingSize = 1000

func newLogRing() *logRing { return &logRing{wake: make(chan struct{})} }

func (r *logRing) add(l LogLine) {
	r.mu.Lock()
	if len(r.lines) < logRingSize {
		r.lines = append(r.lines, l)
	} else {
		r.lines[r.next] = l
		r.next = (r.next + 1) % logRingSize
	}
	r.seq++
	if r.handedOut {
		close(r.wake)
		r.wake = make(chan struct{})
		r.handedOut = false
	}
	r.mu.Unlock()
}

// since returns the lines after the first `from` ever written (older ones
// may have been overwritten), the new position, and a channel closed on the
// next write.
func (r *logRing) since(from uint64) ([]LogLine, uint64, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	oldest := r.seq - uint64(len(r.lines))
	from = max(from, oldest)
	out := make([]LogLine, 0, r.seq-from)
	for i := from; i < r.seq; i++ {
		idx := int(i-oldest+uint64(r.next)) % len(r.lines)
		out = append(out, r.lines[idx])
	}
	r.handedOut = true
	return out, r.seq, r.wake
}

// tail returns the position from which the last n lines are read.
func (r *logRing) tail(n int) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if uint64(n) > r.seq {
		return 0
	}
	return r.seq - uint64(n)
}

// follow calls fn with the last n lines and then with every new line until
// ctx ends or fn returns an error.
func (r *logRing) follow(ctx context.Context, n int, fn func(LogLine) error) error {
	pos := r.tail(n)
	for {
		lines, next, wake := r.since(pos)
		for _, l := range lines {
			if err := fn(l); err != nil {
				return err
			}
		}
		pos = next
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		}
	}
}
