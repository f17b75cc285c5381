package audit

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// ErrTampered is matched (errors.Is) by every *TamperError.
var ErrTampered = errors.New("audit log tampered")

// TamperError reports the first record that is not as it was written.
type TamperError struct {
	// Seq is the sequence number of the first record that was edited,
	// removed, reordered or cut off: the record expected at that place.
	// It is 0 when the problem is not a record (a missing head file).
	Seq    uint64
	File   string
	Line   int // 1-based; 0 when the record is missing from the end of File
	Reason string
}

func (e *TamperError) Error() string {
	where := filepath.Base(e.File)
	if e.Line > 0 {
		where = fmt.Sprintf("%s line %d", where, e.Line)
	}
	if e.Seq == 0 {
		return fmt.Sprintf("%s: %s", where, e.Reason)
	}
	return fmt.Sprintf("record %d: %s (%s)", e.Seq, e.Reason, where)
}

// Is makes errors.Is(err, ErrTampered) true.
func (e *TamperError) Is(target error) bool { return target == ErrTampered }

// Result describes the part of a log that verified.
type Result struct {
	Records           uint64 // valid records
	FirstSeq, LastSeq uint64 // 0 when there are none
	LastHash          string
	Files             int
	// Anchored reports whether a head file was checked. Without one,
	// removing records from the end of the log cannot be detected.
	Anchored bool
	HeadSeq  uint64
	// Unacknowledged counts complete records beyond the head: being
	// committed while Verify read, or written before a crash and never
	// acknowledged (their operations were not performed).
	Unacknowledged uint64
	// TornBytes is the size of an incomplete final line of the last
	// file, beyond the head: a write cut short by a crash. It is not a
	// record; Open removes it.
	TornBytes int64
	// AnchorFile is the anchor outside the log directory the log was held
	// to (VerifyDirAnchored), empty when none was; AnchorSeq is the
	// record it names.
	AnchorFile string
	AnchorSeq  uint64
}

// VerifyDir checks the whole log in dir: every record's hash, the chain
// from record 1, the sequence numbers, and the head file. An empty or
// new directory verifies with no records.
func VerifyDir(dir string) (Result, error) {
	return verifyDir(dir, nil)
}

func verifyDir(dir string, out *outsideAnchor) (Result, error) {
	// The head first: records committed while we read are then after it
	// (counted as unacknowledged), never missing before it.
	h, err := loadHead(dir)
	files, ferr := Files(dir)
	if ferr != nil {
		return Result{}, ferr
	}
	var res Result
	if out != nil {
		res.AnchorFile, res.AnchorSeq = out.file, out.Seq
	}
	switch {
	case errors.Is(err, os.ErrNotExist) && len(files) == 0:
		return res, out.missing(0, Genesis, dir)
	case errors.Is(err, os.ErrNotExist) || errors.Is(err, errNoHead):
		return res, &TamperError{File: filepath.Join(dir, HeadFile), Reason: "missing or unreadable"}
	case err != nil:
		return res, err
	}
	c := checker{nextSeq: 1, prev: Genesis, anchor: &h, outside: out}
	c.res = res
	return c.run(files, filepath.Join(dir, HeadFile))
}

// Verify checks the given log files in order as one chain. The first
// record of the first file is taken on trust unless the file's name says
// it starts the log. When the last file is the newest file of a directory
// that has a head file, the head is checked too; otherwise removing the
// last records cannot be detected (Result.Anchored is false).
func Verify(paths ...string) (Result, error) {
	if len(paths) == 0 {
		return Result{}, errors.New("verify: no files given")
	}
	c := checker{}
	last := paths[len(paths)-1]
	dir := filepath.Dir(last)
	if h, err := loadHead(dir); err == nil {
		if files, err := Files(dir); err == nil && len(files) > 0 && sameFile(files[len(files)-1], last) {
			c.anchor = &h
		}
	}
	return c.run(paths, last)
}

func sameFile(a, b string) bool {
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(sa, sb)
}

func loadHead(dir string) (head, error) {
	f, err := os.Open(filepath.Join(dir, HeadFile))
	if err != nil {
		return head{}, err
	}
	defer f.Close()
	h, _, err := readHead(f)
	return h, err
}

// checker follows the chain through one file after another.
type checker struct {
	res     Result
	nextSeq uint64 // expected sequence number; 0 until known
	prev    string // hash the next record must chain to; "" until known
	anchor  *head  // the head to check against, if any
	outside *outsideAnchor
	// goodSize is the length of the current file up to the end of its
	// last valid record.
	goodSize int64
}

func (c *checker) run(paths []string, lastName string) (Result, error) {
	for i, p := range paths {
		if err := c.file(p, i == len(paths)-1); err != nil {
			return c.res, err
		}
	}
	return c.res, c.finish(lastName)
}

// finish checks the chain's end against the head and the anchor.
func (c *checker) finish(file string) error {
	if c.anchor != nil {
		c.res.Anchored, c.res.HeadSeq = true, c.anchor.Seq
		if c.res.LastSeq < c.anchor.Seq {
			return &TamperError{Seq: c.res.LastSeq + 1, File: file, Reason: fmt.Sprintf(
				"missing (log truncated: it ends at record %d but its head records %d)", c.res.LastSeq, c.anchor.Seq)}
		}
	}
	last := c.res.LastHash
	if last == "" {
		last = c.prev
	}
	return c.outside.missing(c.res.LastSeq, last, file)
}

// file checks one file. Only in the last file may the final line be
// incomplete.
func (c *checker) file(path string, last bool) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("reading audit log: %w", err)
	}
	defer f.Close()
	return c.scan(path, f, last)
}

// scan checks the contents of one file; path names it in reports.
func (c *checker) scan(path string, r io.Reader, last bool) error {
	c.res.Files++
	c.goodSize = 0
	if seq, ok := firstSeqOf(path); ok {
		switch {
		case c.nextSeq == 0:
			c.nextSeq = seq
		case seq > c.nextSeq:
			return &TamperError{Seq: c.nextSeq, File: path, Line: 1,
				Reason: fmt.Sprintf("missing (removed: the file starts at record %d)", seq)}
		case seq < c.nextSeq:
			return &TamperError{Seq: c.nextSeq, File: path, Line: 1,
				Reason: fmt.Sprintf("out of order (the file starts at record %d)", seq)}
		}
	}
	lr := lineReader{r: bufio.NewReaderSize(r, 64<<10)}
	for {
		line, complete, err := lr.next()
		if err != nil {
			return fmt.Errorf("reading audit log %s: %w", path, err)
		}
		if line == nil {
			return nil
		}
		if !complete {
			if last && len(line) <= MaxLineBytes {
				c.res.TornBytes = int64(len(line))
				return nil
			}
			return c.bad(path, lr.n, 0, "incomplete (the file was cut short)")
		}
		if err := c.record(path, line, &lr); err != nil {
			return err
		}
		c.goodSize = lr.offset
	}
}

// record checks one complete line, peeking at the next one to tell a
// removed record from two swapped ones.
func (c *checker) record(path string, line []byte, lr *lineReader) error {
	if len(line) > MaxLineBytes {
		return c.bad(path, lr.n, 0, "not a valid record (line too long)")
	}
	r, err := parseLine(line)
	switch {
	case errors.Is(err, errNotRecord):
		return c.bad(path, lr.n, r.Seq, "not a valid record (edited)")
	case errors.Is(err, errEdited):
		return c.bad(path, lr.n, r.Seq, "edited (its contents do not match its hash)")
	}
	if c.nextSeq != 0 && r.Seq != c.nextSeq {
		n := lr.n
		if r.Seq < c.nextSeq {
			return c.bad(path, n, r.Seq, fmt.Sprintf("out of order (record %d found in its place)", r.Seq))
		}
		if next, complete, _ := lr.next(); complete {
			if nr, err := parseLine(next); err == nil && nr.Seq == c.nextSeq {
				return c.bad(path, n, r.Seq, fmt.Sprintf("out of order (swapped with record %d)", r.Seq))
			}
		}
		if c.nextSeq == 1 {
			return c.bad(path, n, r.Seq, fmt.Sprintf("missing (removed: the log starts at record %d)", r.Seq))
		}
		return c.bad(path, n, r.Seq, fmt.Sprintf("missing (removed: record %d follows record %d)", r.Seq, c.nextSeq-1))
	}
	switch {
	case r.Seq == 0:
		return c.bad(path, lr.n, r.Seq, "not a valid record (sequence number 0)")
	case r.Seq == 1 && r.Prev != Genesis:
		return c.bad(path, lr.n, r.Seq, "hash chain broken (record 1 does not start the chain)")
	case c.prev != "" && r.Prev != c.prev:
		return c.bad(path, lr.n, r.Seq, "hash chain broken (edited or reordered)")
	case c.anchor != nil && r.Seq == c.anchor.Seq && r.Hash != c.anchor.Hash:
		return c.bad(path, lr.n, r.Seq, "does not match the head file (edited or rewritten)")
	case c.outside.mismatch(r.Seq, r.Hash) != "":
		return c.bad(path, lr.n, r.Seq, c.outside.mismatch(r.Seq, r.Hash))
	}
	c.nextSeq, c.prev = r.Seq+1, r.Hash
	if c.res.Records == 0 {
		c.res.FirstSeq = r.Seq
	}
	c.res.Records++
	c.res.LastSeq, c.res.LastHash = r.Seq, r.Hash
	if c.anchor != nil && r.Seq > c.anchor.Seq {
		c.res.Unacknowledged++
	}
	return nil
}

// bad reports a problem at the expected record, or at found when the
// expected sequence number is not known yet.
func (c *checker) bad(path string, line int, found uint64, reason string) error {
	seq := c.nextSeq
	if seq == 0 {
		seq = found
	}
	return &TamperError{Seq: seq, File: path, Line: line, Reason: reason}
}

// lineReader yields lines with their newline removed, bounding memory
// to MaxLineBytes (plus one read buffer) per line.
type lineReader struct {
	r      *bufio.Reader
	buf    []byte
	n      int   // lines returned
	offset int64 // bytes consumed through the last complete line
}

// next returns the next line and whether it ended with a newline; nil at
// the end. A line longer than MaxLineBytes is returned cut short but
// complete, for the caller to reject.
func (lr *lineReader) next() ([]byte, bool, error) {
	lr.buf = lr.buf[:0]
	for {
		chunk, err := lr.r.ReadSlice('\n')
		if len(lr.buf)+len(chunk) <= MaxLineBytes+1 {
			lr.buf = append(lr.buf, chunk...)
		} else {
			lr.buf = append(lr.buf, chunk[:MaxLineBytes+1-len(lr.buf)]...)
		}
		switch {
		case err == nil:
			lr.n++
			lr.offset += int64(len(lr.buf))
			return lr.buf[:len(lr.buf)-1], true, nil
		case errors.Is(err, bufio.ErrBufferFull):
			if len(lr.buf) > MaxLineBytes {
				lr.n++
				return lr.buf, true, nil
			}
		case errors.Is(err, io.EOF):
			if len(lr.buf) == 0 {
				return nil, false, nil
			}
			lr.n++
			return lr.buf, false, nil
		default:
			return nil, false, err
		}
	}
}
