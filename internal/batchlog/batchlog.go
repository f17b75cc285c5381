package batchlog

import (
	"io"
	"sync"
	"time"
)

// MaxBatch is the most a batch holds: a write that brings it past this is
// written at once.
const MaxBatch = 64 << 10

// Writer batches writes to w. Each Write should be whole lines (slog's
// handlers write one record per call), so batches never split a line.
type Writer struct {
	delay time.Duration

	mu    sync.Mutex
	w     io.Writer
	buf   []byte
	timer *time.Timer // armed while buf holds lines
	err   error       // the last failed write's error, returned once
}

// New returns a Writer that writes what it is given to w at most delay
// later.
func New(w io.Writer, delay time.Duration) *Writer {
	b := &Writer{w: w, delay: delay}
	b.timer = time.AfterFunc(time.Hour, func() { b.Flush() })
	b.timer.Stop()
	return b
}

// Write queues p. It reports the error of an earlier batch that failed,
// so a log on a full disk is noticed, as it would be unbatched.
func (b *Writer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	wasEmpty := len(b.buf) == 0
	b.buf = append(b.buf, p...)
	if len(b.buf) >= MaxBatch {
		b.flushLocked()
	} else if wasEmpty {
		b.timer.Reset(b.delay)
	}
	err := b.err
	b.err = nil
	return len(p), err
}

// Flush writes what waits.
func (b *Writer) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
	err := b.err
	b.err = nil
	return err
}

func (b *Writer) flushLocked() {
	b.timer.Stop()
	if len(b.buf) == 0 {
		return
	}
	if _, err := b.w.Write(b.buf); err != nil {
		b.err = err
	}
	if cap(b.buf) > 4*MaxBatch {
		b.buf = nil // a burst of huge lines: do not keep its buffer
	} else {
		b.buf = b.buf[:0]
	}
}

// Close writes what waits; later writes are still accepted and flushed
// by the timer or the next Flush.
func (b *Writer) Close() error { return b.Flush() }
