package audit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// The anchor is a copy of the chain's end kept outside the log directory
// (the node keeps it in its state directory, see Options.Anchor). The head
// file detects records removed from the end of a log, but it lives in the
// log's directory: whoever empties the directory, or rewrites the head and
// cuts the records, or puts a valid shorter chain in its place, removes it
// too. The anchor names the last record written, so each of those shows as
// a record missing below the anchor's, and a forged chain as a record
// whose hash is not the anchor's.
//
// It has the head file's format (two checksummed slots written in turn) and
// is written after the records are synced and before the head: it may name
// a record beyond the head (written, not yet acknowledged), never one that
// is not on disk. A group commit costs one more write and fdatasync.

// anchorFile is an open anchor.
type anchorFile struct {
	path string
	hw   headWriter
}

// openAnchor opens (creating) the anchor at path. found is false for a
// new or empty file: a log that has never been anchored.
func openAnchor(path string) (a *anchorFile, h head, found bool, err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, head{}, false, fmt.Errorf("opening audit anchor: %w", err)
	}
	h, slot, found, err := readAnchorFile(f, path)
	if err != nil {
		f.Close()
		return nil, head{}, false, err
	}
	return &anchorFile{path: path, hw: headWriter{f: f, next: (slot + 1) % headSlots}}, h, found, nil
}

// readAnchor reads the anchor at path; found is false when there is none.
func readAnchor(path string) (h head, found bool, err error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return head{}, false, nil
	}
	if err != nil {
		return head{}, false, fmt.Errorf("reading audit anchor: %w", err)
	}
	defer f.Close()
	h, _, found, err = readAnchorFile(f, path)
	return h, found, err
}

func readAnchorFile(f *os.File, path string) (head, int, bool, error) {
	st, err := f.Stat()
	if err != nil {
		return head{}, 0, false, fmt.Errorf("reading audit anchor: %w", err)
	}
	if st.Size() == 0 {
		return head{}, 0, false, nil
	}
	h, slot, err := readHead(f)
	if errors.Is(err, errNoHead) {
		return head{}, 0, false, &TamperError{File: path, Reason: "audit anchor unreadable (no valid slot)"}
	}
	if err != nil {
		return head{}, 0, false, fmt.Errorf("reading audit anchor %s: %w", path, err)
	}
	return h, slot, true, nil
}

func (a *anchorFile) write(h head) error {
	if err := a.hw.write(h); err != nil {
		return fmt.Errorf("audit anchor %s: %w", a.path, err)
	}
	return nil
}

func (a *anchorFile) close() error { return a.hw.f.Close() }

// outsideAnchor is an anchor a checker holds a log to.
type outsideAnchor struct {
	head
	file string
}

// check returns the error for record r if it is the anchor's record with
// another hash.
func (a *outsideAnchor) mismatch(seq uint64, hash string) string {
	if a == nil || seq != a.Seq || hash == a.Hash {
		return ""
	}
	return fmt.Sprintf("does not match the audit anchor %s (hash %s, the anchor records %s): the log was rewritten or replaced",
		a.file, hash, a.Hash)
}

// missing returns the error for a log that ends at last (with hash) below
// the anchor's record.
func (a *outsideAnchor) missing(last uint64, hash, file string) error {
	if a == nil || last >= a.Seq {
		return nil
	}
	return &TamperError{Seq: last + 1, File: file, Reason: fmt.Sprintf(
		"missing: the log ends at record %d (hash %s) but the audit anchor %s records record %d with hash %s "+
			"(records removed, or the directory emptied or replaced)", last, hash, a.file, a.Seq, a.Hash)}
}

// checkAnchorPlace refuses an anchor inside the log directory, where it
// would go with the log.
func checkAnchorPlace(dir, anchor string) error {
	d, err1 := filepath.Abs(dir)
	a, err2 := filepath.Abs(anchor)
	if err1 != nil || err2 != nil {
		return errors.Join(err1, err2)
	}
	if rel, err := filepath.Rel(d, a); err == nil && filepath.IsLocal(rel) {
		return fmt.Errorf("audit anchor %s is inside the log directory %s", anchor, dir)
	}
	return nil
}

// VerifyDirAnchored is VerifyDir that also holds the log to the anchor at
// the path given (see Options.Anchor): the anchor's record must be in the
// log, with the anchor's hash. The anchor is read first, so records
// committed while the log is read are beyond it. A missing anchor file is
// not an error: Result.AnchorFile is then empty.
func VerifyDirAnchored(dir, anchor string) (Result, error) {
	var out *outsideAnchor
	if anchor != "" {
		if err := checkAnchorPlace(dir, anchor); err != nil {
			return Result{}, err
		}
		h, found, err := readAnchor(anchor)
		if err != nil {
			return Result{}, err
		}
		if found {
			out = &outsideAnchor{head: h, file: anchor}
		}
	}
	return verifyDir(dir, out)
}
