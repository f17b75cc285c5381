package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultMaxFileBytes is the file size at which the log rotates when
// Options.MaxFileBytes is 0.
const DefaultMaxFileBytes = 16 << 20

// Errors returned by Open and Append, besides I/O errors and *TamperError.
var (
	ErrClosed = errors.New("audit log closed")
	ErrLocked = errors.New("audit log in use by another process")
)

// Options configure Open. The zero value is usable.
type Options struct {
	// MaxFileBytes is the size at which the log continues in a new file;
	// 0 means DefaultMaxFileBytes. A file grows past it by at most one
	// group commit.
	MaxFileBytes int64
	// Logger, if set, receives every durable record: Info for ResultOK,
	// Warn otherwise.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Anchor, if set, is the path of a file outside the log directory
	// that keeps the sequence number and hash of the last record written
	// (see VerifyDirAnchored). Open refuses a log that does not reach
	// the anchor's record or has another record in its place; every
	// group commit updates it.
	Anchor string
}

// Log is an open audit log, safe for concurrent use. Only one process may
// have a directory's log open.
type Log struct {
	dir   string
	opts  Options
	headF *os.File // also holds the lock
	hw    headWriter
	// anchor is the file outside the directory (nil without
	// Options.Anchor); outside is what it held when the log was opened.
	anchor  *anchorFile
	outside *outsideAnchor

	mu      sync.Mutex
	seq     uint64 // last sequence number handed out
	hash    string // hash of that record
	durable head   // last record known to be on disk
	cur     *batch // records waiting for the next group commit
	closed  bool
	// broken is the error of a failed commit. The failed records and
	// every record chained onto them were refused; the next Append
	// re-reads the log from disk before continuing.
	broken error
	wake   chan struct{}
	done   chan struct{}

	// Owned by the flusher goroutine, and by recovery while broken.
	f    *os.File // current file, nil before the first record
	size int64    // bytes of f that are committed
}

// batch is one group commit.
type batch struct {
	buf  []byte
	recs []Record
	done chan struct{}
	err  error
}

// Open opens or creates the log in dir. It checks the files from the one
// holding the head's record onward (normally just the newest; the whole
// log is checked by VerifyDir), removes a torn final
// line left by a crash, and, when it found records written but never
// acknowledged or removed a torn line, appends an OpRecover record saying
// so. A log that fails these checks is not opened: the error matches
// ErrTampered.
func Open(dir string, opts Options) (*Log, error) {
	if opts.MaxFileBytes < 0 {
		return nil, fmt.Errorf("opening audit log: negative MaxFileBytes %d", opts.MaxFileBytes)
	}
	if opts.MaxFileBytes == 0 {
		opts.MaxFileBytes = DefaultMaxFileBytes
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Anchor != "" {
		if err := checkAnchorPlace(dir, opts.Anchor); err != nil {
			return nil, fmt.Errorf("opening audit log: %w", err)
		}
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("opening audit log: %w", err)
	}
	if opts.Anchor != "" {
		if err := os.MkdirAll(filepath.Dir(opts.Anchor), 0o700); err != nil {
			return nil, fmt.Errorf("opening audit log: %w", err)
		}
	}
	hf, err := os.OpenFile(filepath.Join(dir, HeadFile), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("opening audit log: %w", err)
	}
	if err := unix.Flock(int(hf.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		hf.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("opening audit log %s: %w", dir, ErrLocked)
		}
		return nil, fmt.Errorf("opening audit log %s: locking: %w", dir, err)
	}
	l := &Log{dir: dir, opts: opts, headF: hf, hw: headWriter{f: hf},
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	if opts.Anchor != "" {
		a, h, found, err := openAnchor(opts.Anchor)
		if err != nil {
			l.closeFiles()
			return nil, fmt.Errorf("opening audit log %s: %w", dir, err)
		}
		l.anchor = a
		if found {
			l.outside = &outsideAnchor{head: h, file: opts.Anchor}
		}
	}
	recovery, err := l.resume()
	if err == nil && l.anchor != nil {
		// From here the anchor follows the log: adopted by a log that
		// had none, brought up to records written after it.
		err = l.anchor.write(head{Seq: l.seq, Hash: l.hash})
	}
	if err != nil {
		l.closeFiles()
		return nil, fmt.Errorf("opening audit log %s: %w", dir, err)
	}
	go l.flusher()
	if recovery != nil {
		if _, err := l.Append(context.Background(), *recovery); err != nil {
			return nil, errors.Join(fmt.Errorf("opening audit log %s: %w", dir, err), l.Close())
		}
	}
	return l, nil
}

// Dir returns the log's directory.
func (l *Log) Dir() string { return l.dir }

// Head returns the sequence number and hash of the last durable record
// (0 and Genesis for an empty log). Publishing it elsewhere makes a
// rewrite of the whole log detectable.
func (l *Log) Head() (seq uint64, hash string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.durable.Seq, l.durable.Hash
}

// Append records ev and returns once the record is on disk (fsynced, with
// the head), sharing the fsync with concurrent Appends. On error the record
// is not part of the log and the caller must not perform the operation.
// ctx is checked before the record is queued; once queued, Append waits
// for the commit, because the record may already be chained to.
func (l *Log) Append(ctx context.Context, ev Event) (Record, error) {
	if err := ctx.Err(); err != nil {
		return Record{}, fmt.Errorf("audit %s: %w", ev.Op, err)
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return Record{}, fmt.Errorf("audit %s: %w", ev.Op, ErrClosed)
	}
	if l.broken != nil {
		if err := l.recoverLocked(); err != nil {
			l.mu.Unlock()
			return Record{}, fmt.Errorf("audit %s: log unavailable: %w", ev.Op, err)
		}
	}
	r, b, err := l.enqueueLocked(ev)
	l.mu.Unlock()
	if err != nil {
		return Record{}, fmt.Errorf("audit %s: %w", ev.Op, err)
	}
	<-b.done
	if b.err != nil {
		return Record{}, fmt.Errorf("audit %s: %w", ev.Op, b.err)
	}
	return r, nil
}

// enqueueLocked seals a record for ev onto the chain and queues it.
func (l *Log) enqueueLocked(ev Event) (Record, *batch, error) {
	r, err := newRecord(ev, l.opts.Now())
	if err != nil {
		return Record{}, nil, err
	}
	line, err := seal(&r, l.seq+1, l.hash)
	if err != nil {
		return Record{}, nil, err
	}
	l.seq, l.hash = r.Seq, r.Hash
	if l.cur == nil {
		l.cur = &batch{done: make(chan struct{})}
	}
	b := l.cur
	b.buf = append(b.buf, line...)
	b.recs = append(b.recs, r)
	select {
	case l.wake <- struct{}{}:
	default:
	}
	return r, b, nil
}

// recoverLocked re-reads the log after a failed commit, queueing an
// OpRecover record if the failure left records behind.
func (l *Log) recoverLocked() error {
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
	recovery, err := l.resume()
	if err != nil {
		return err
	}
	l.broken = nil
	if recovery != nil {
		if _, _, err := l.enqueueLocked(*recovery); err != nil {
			return err
		}
	}
	return nil
}

// Close commits the queued records and closes the log. Appends after
// Close fail with ErrClosed.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.wake)
	l.mu.Unlock()
	<-l.done
	return l.closeFiles()
}

func (l *Log) closeFiles() error {
	var err error
	if l.f != nil {
		err = l.f.Close()
		l.f = nil
	}
	if l.anchor != nil {
		err = errors.Join(err, l.anchor.close())
	}
	return errors.Join(err, l.headF.Close()) // closing releases the lock
}

// flusher commits batches one after another until Close.
func (l *Log) flusher() {
	defer close(l.done)
	for range l.wake {
		for {
			l.mu.Lock()
			b := l.cur
			l.cur = nil
			l.mu.Unlock()
			if b == nil {
				break
			}
			err := l.commit(b)
			l.mu.Lock()
			if err != nil {
				l.failLocked(err, b)
				l.mu.Unlock()
				continue
			}
			last := b.recs[len(b.recs)-1]
			l.durable = head{Seq: last.Seq, Hash: last.Hash}
			l.mu.Unlock()
			l.emit(b.recs)
			close(b.done)
		}
	}
}

// failLocked refuses b and every record queued after it (they chain onto
// b), and rewinds the chain to the last durable record.
func (l *Log) failLocked(err error, b *batch) {
	l.broken = err
	l.seq, l.hash = l.durable.Seq, l.durable.Hash
	for _, fb := range []*batch{b, l.cur} {
		if fb != nil {
			fb.err = err
			close(fb.done)
		}
	}
	l.cur = nil
	if l.opts.Logger != nil {
		l.opts.Logger.Error("audit log write failed; operations are refused until a write succeeds", "dir", l.dir, "error", err)
	}
}

// commit writes one batch, syncs it, then moves the head past it. On
// error it tries to cut the file back to where the batch began, so the
// refused records do not stay behind.
func (l *Log) commit(b *batch) error {
	if l.f == nil || (l.size > 0 && l.size+int64(len(b.buf)) > l.opts.MaxFileBytes) {
		if err := l.rotate(b.recs[0].Seq); err != nil {
			return err
		}
	}
	start := l.size
	last := b.recs[len(b.recs)-1]
	_, err := l.f.Write(b.buf)
	if err == nil {
		err = fdatasync(l.f)
	}
	// The anchor after the records and before the head: it never names
	// a record that is not on disk. Once it may name this batch, the
	// records stay (beyond the head, unacknowledged, as after a crash)
	// rather than be cut from under it.
	anchored := false
	if err == nil && l.anchor != nil {
		anchored = true
		err = l.anchor.write(head{Seq: last.Seq, Hash: last.Hash})
	}
	if err == nil {
		err = l.hw.write(head{Seq: last.Seq, Hash: last.Hash})
	}
	if err != nil {
		if !anchored && l.f.Truncate(start) == nil {
			fdatasync(l.f)
		}
		return fmt.Errorf("writing audit record: %w", err)
	}
	l.size += int64(len(b.buf))
	return nil
}

// rotate starts a new file whose first record is firstSeq.
func (l *Log) rotate(firstSeq uint64) error {
	if l.f != nil {
		if err := l.f.Close(); err != nil {
			return fmt.Errorf("closing audit file: %w", err)
		}
		l.f = nil
	}
	path := filepath.Join(l.dir, fileName(firstSeq))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return fmt.Errorf("creating audit file: %w", err)
	}
	if err := syncDir(l.dir); err != nil {
		f.Close()
		return fmt.Errorf("creating audit file: %w", err)
	}
	l.f, l.size = f, 0
	return nil
}

func fdatasync(f *os.File) error {
	if err := datasync(f); err != nil {
		return fmt.Errorf("syncing %s: %w", f.Name(), err)
	}
	return nil
}

// resume reads the head and the newest file and sets up appending after
// the last complete record. It returns the OpRecover event to write when
// it found unacknowledged records or removed a torn line.
func (l *Log) resume() (*Event, error) {
	files, err := Files(l.dir)
	if err != nil {
		return nil, err
	}
	h, slot, err := readHead(l.headF)
	switch {
	case errors.Is(err, errNoHead) && len(files) == 0:
		// A new log, or a crash while creating one, unless the anchor
		// outside says it had records: then it was emptied.
		if err := l.outside.missing(0, Genesis, l.dir); err != nil {
			return nil, err
		}
		h = head{Seq: 0, Hash: Genesis}
		if err := l.hw.init(h); err != nil {
			return nil, err
		}
		if err := syncDir(l.dir); err != nil {
			return nil, fmt.Errorf("creating audit head: %w", err)
		}
	case errors.Is(err, errNoHead):
		return nil, &TamperError{File: l.headF.Name(), Reason: "missing or unreadable"}
	case err != nil:
		return nil, err
	default:
		l.hw.next = (slot + 1) % headSlots
	}

	c := checker{nextSeq: 1, prev: Genesis, anchor: &h, outside: l.outside}
	c.res.LastHash = Genesis
	if len(files) == 0 {
		if err := c.finish(l.headF.Name()); err != nil {
			return nil, err
		}
		l.seq, l.hash, l.durable, l.size = 0, Genesis, h, 0
		return nil, nil
	}
	// Check from the file holding the record after the head (or after
	// the anchor's, if that is older): normally the newest, but a crash
	// after a rotation can leave unacknowledged records in the file
	// before it.
	from, lo := 0, h.Seq
	if l.outside != nil {
		lo = min(lo, l.outside.Seq)
	}
	for i, p := range files {
		if seq, _ := firstSeqOf(p); seq <= lo+1 {
			from = i
		}
	}
	if from > 0 {
		prev, err := lastRecord(files[from-1])
		if err != nil {
			return nil, err
		}
		if h.Seq < prev.Seq || (h.Seq == prev.Seq && h.Hash != prev.Hash) {
			return nil, &TamperError{Seq: prev.Seq, File: files[from-1], Reason: "does not match the head file (edited or rewritten)"}
		}
		if msg := l.outside.mismatch(prev.Seq, prev.Hash); msg != "" {
			return nil, &TamperError{Seq: prev.Seq, File: files[from-1], Reason: msg}
		}
		c.nextSeq, c.prev = prev.Seq+1, prev.Hash
		c.res.LastSeq, c.res.LastHash = prev.Seq, prev.Hash
	}
	for i, p := range files[from:] {
		if err := c.file(p, from+i == len(files)-1); err != nil {
			return nil, err
		}
	}
	last := files[len(files)-1]
	if err := c.finish(last); err != nil {
		return nil, err
	}
	if c.res.TornBytes > 0 {
		if err := truncateFile(last, c.goodSize); err != nil {
			return nil, err
		}
	}
	f, err := os.OpenFile(last, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return nil, fmt.Errorf("opening audit file: %w", err)
	}
	l.f, l.size = f, c.goodSize
	l.seq, l.hash = c.res.LastSeq, c.res.LastHash
	l.durable = head{Seq: l.seq, Hash: l.hash}
	if c.res.Unacknowledged == 0 && c.res.TornBytes == 0 {
		return nil, nil
	}
	details := map[string]any{"head_seq": h.Seq}
	if c.res.Unacknowledged > 0 {
		// Written before a crash or a failed sync, but never
		// acknowledged: their operations were not performed.
		details["unacknowledged_from"] = h.Seq + 1
		details["unacknowledged_to"] = c.res.LastSeq
	}
	if c.res.TornBytes > 0 {
		details["torn_bytes_removed"] = c.res.TornBytes
	}
	return &Event{Op: OpRecover, Target: filepath.Base(last), Details: details}, nil
}

func truncateFile(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("removing torn audit record: %w", err)
	}
	err = f.Truncate(size)
	if err == nil {
		err = fdatasync(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("removing torn audit record: %w", err)
	}
	return nil
}

// lastRecord reads and checks the final record of a file that is not the
// newest, which must end with a complete record.
func lastRecord(path string) (Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return Record{}, fmt.Errorf("reading audit log: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Record{}, fmt.Errorf("reading audit log: %w", err)
	}
	n := min(st.Size(), MaxLineBytes+1)
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, st.Size()-n); err != nil {
		return Record{}, fmt.Errorf("reading audit log: %w", err)
	}
	bad := func(reason string) error { return &TamperError{File: path, Reason: reason} }
	if n == 0 || buf[n-1] != '\n' {
		return Record{}, bad("incomplete or empty file before the newest one")
	}
	line := buf[:n-1]
	if i := bytes.LastIndexByte(line, '\n'); i >= 0 {
		line = line[i+1:]
	} else if n < st.Size() {
		return Record{}, bad("last line is too long to be a record")
	}
	r, err := parseLine(line)
	if err != nil {
		return Record{}, bad("last record: " + err.Error())
	}
	return r, nil
}

// emit sends durable records to the logger.
func (l *Log) emit(recs []Record) {
	if l.opts.Logger == nil {
		return
	}
	for _, r := range recs {
		level := slog.LevelInfo
		if r.Result != ResultOK {
			level = slog.LevelWarn
		}
		attrs := []slog.Attr{slog.Uint64("seq", r.Seq), slog.String("op", r.Op)}
		if r.Target != "" {
			attrs = append(attrs, slog.String("target", r.Target))
		}
		attrs = append(attrs, slog.String("actor", r.Actor), slog.String("result", r.Result))
		if r.Error != "" {
			attrs = append(attrs, slog.String("error", r.Error))
		}
		if r.Ref != 0 {
			attrs = append(attrs, slog.Uint64("ref", r.Ref))
		}
		if len(r.Details) > 0 {
			attrs = append(attrs, slog.Any("details", rawJSON(r.Details)))
		}
		attrs = append(attrs, slog.String("hash", r.Hash))
		l.opts.Logger.LogAttrs(context.Background(), level, "audit", attrs...)
	}
}

// rawJSON is logged as JSON by a JSON handler and as text by others.
type rawJSON json.RawMessage

func (r rawJSON) MarshalJSON() ([]byte, error) { return r, nil }
func (r rawJSON) String() string               { return string(r) }
