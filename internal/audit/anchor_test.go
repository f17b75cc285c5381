package audit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/aegis-edge/aegis/internal/testutil"
)

// anchoredLog writes n records to a log in base/audit anchored at
// base/anchor and closes it, returning the paths and the last record.
func anchoredLog(t *testing.T, n int) (dir, anchor string, last Record) {
	t.Helper()
	base := t.TempDir()
	dir, anchor = filepath.Join(base, "audit"), filepath.Join(base, "anchor")
	l := openTest(t, dir, Options{Anchor: anchor, MaxFileBytes: 4096})
	recs := appendN(t, l, "a", n)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, anchor, recs[n-1]
}

// wantTampered checks that verify (anchored) and Open both refuse the log
// and name the record at seq, and the anchor's record and hash.
func wantTampered(t *testing.T, dir, anchor string, seq uint64, anchored Record, says string) {
	t.Helper()
	_, err := VerifyDirAnchored(dir, anchor)
	var te *TamperError
	if !errors.As(err, &te) || te.Seq != seq || !strings.Contains(te.Reason, says) ||
		!strings.Contains(err.Error(), anchored.Hash) {
		t.Fatalf("VerifyDirAnchored = %v, want record %d %q naming the anchor's hash %s", err, seq, says, anchored.Hash)
	}
	t.Logf("verify: %v", err)
	if l, err := Open(dir, Options{Anchor: anchor}); !errors.As(err, &te) || te.Seq != seq {
		if l != nil {
			l.Close()
		}
		t.Errorf("Open = %v, want refusal at record %d", err, seq)
	}
	// The anchor is evidence too: a refused Open leaves it as it was.
	if h, found, err := readAnchor(anchor); err != nil || !found || h.Seq != anchored.Seq || h.Hash != anchored.Hash {
		t.Errorf("anchor after a refused Open: %+v %v %v, want record %d", h, found, err, anchored.Seq)
	}
}

// Emptying the directory removes the head with the records: only the
// anchor outside tells.
func TestAnchorCatchesAnEmptiedDirectory(t *testing.T) {
	for _, tc := range []struct {
		name  string
		empty func(t *testing.T, dir string)
	}{
		{"files removed", func(t *testing.T, dir string) {
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"records removed, head reset to an empty log", func(t *testing.T, dir string) {
			files, _ := Files(dir)
			for _, f := range files {
				os.Remove(f)
			}
			f, err := os.OpenFile(filepath.Join(dir, HeadFile), os.O_RDWR|os.O_TRUNC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := (&headWriter{f: f}).init(head{Seq: 0, Hash: Genesis}); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, anchor, last := anchoredLog(t, 5)
			tc.empty(t, dir)
			// The hole this closes: without the anchor the log looks new.
			if res, err := VerifyDir(dir); err != nil || res.Records != 0 {
				t.Fatalf("VerifyDir of the emptied log = %+v, %v; the test expects it to pass", res, err)
			}
			wantTampered(t, dir, anchor, 1, last, "the log ends at record 0")
		})
	}
}

// Rewriting the head to match records cut from the end passes the head
// check; the anchor still names the last record.
func TestAnchorCatchesARewrittenHead(t *testing.T) {
	for _, keep := range []int{6, 1} {
		t.Run(fmt.Sprintf("cut to %d", keep), func(t *testing.T) {
			dir, anchor, last := anchoredLog(t, 10)
			files, _ := Files(dir)
			path := files[len(files)-1]
			lines := readLines(t, path)
			first, _ := firstSeqOf(path)
			n := keep - int(first) + 1
			if n < 0 {
				// Cut across files: remove the later ones whole.
				for _, f := range files {
					if s, _ := firstSeqOf(f); s > uint64(keep) {
						os.Remove(f)
					}
				}
				files, _ = Files(dir)
				path = files[len(files)-1]
				lines = readLines(t, path)
				first, _ = firstSeqOf(path)
				n = keep - int(first) + 1
			}
			writeLines(t, path, lines[:n])
			r, err := parseLine(lines[n-1][:len(lines[n-1])-1])
			if err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(filepath.Join(dir, HeadFile), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			err = (&headWriter{f: f}).init(head{Seq: r.Seq, Hash: r.Hash})
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			if res, err := VerifyDir(dir); err != nil || res.LastSeq != uint64(keep) {
				t.Fatalf("VerifyDir of the cut log = %+v, %v; the test expects it to pass", res, err)
			}
			wantTampered(t, dir, anchor, uint64(keep)+1, last, fmt.Sprintf("the log ends at record %d", keep))
		})
	}
}

// A valid chain of another history put in the directory's place: shorter,
// it misses the anchor's record; longer, its record there has another
// hash.
func TestAnchorCatchesAReplacedDirectory(t *testing.T) {
	for _, tc := range []struct {
		name   string
		n      int
		seq    uint64
		reason string
	}{
		{"shorter chain", 3, 4, "the log ends at record 3"},
		{"longer chain", 14, 10, "does not match the audit anchor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, anchor, last := anchoredLog(t, 10)
			forged := filepath.Join(t.TempDir(), "forged")
			l := openTest(t, forged, Options{})
			appendN(t, l, "forged", tc.n)
			l.Close()
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(forged, dir); err != nil {
				t.Fatal(err)
			}
			mustVerifyDir(t, dir)
			wantTampered(t, dir, anchor, tc.seq, last, tc.reason)
		})
	}
}

// The anchor follows the log across reopens, rotations and a log that had
// none (it is adopted), and may be ahead of the head: written before it.
func TestAnchorFollowsTheLog(t *testing.T) {
	base := t.TempDir()
	dir, anchor := filepath.Join(base, "audit"), filepath.Join(base, "anchor")
	l := openTest(t, dir, Options{MaxFileBytes: 4096})
	appendN(t, l, "before", 3)
	l.Close()
	if res, err := VerifyDirAnchored(dir, anchor); err != nil || res.AnchorFile != "" || res.Records != 3 {
		t.Fatalf("a log never anchored: %+v, %v; want it to verify without an anchor", res, err)
	}
	l = openTest(t, dir, Options{MaxFileBytes: 4096, Anchor: anchor})
	recs := appendN(t, l, "after", 40)
	if h, found, err := readAnchor(anchor); err != nil || !found || h.Seq != recs[39].Seq || h.Hash != recs[39].Hash {
		t.Fatalf("anchor %+v %v %v, want the last record %d", h, found, err, recs[39].Seq)
	}
	l.Close()
	res, err := VerifyDirAnchored(dir, anchor)
	if err != nil || res.AnchorFile != anchor || res.AnchorSeq != 43 || res.Files < 2 {
		t.Fatalf("VerifyDirAnchored = %+v, %v", res, err)
	}
	// The anchor ahead of the head (a crash between the two writes):
	// the records it names are on disk, beyond the head.
	l = openTest(t, dir, Options{Anchor: anchor})
	appendN(t, l, "more", 2)
	l.Close()
	f, _ := os.OpenFile(filepath.Join(dir, HeadFile), os.O_RDWR, 0)
	(&headWriter{f: f}).init(head{Seq: 43, Hash: recs[39].Hash})
	f.Close()
	if res, err := VerifyDirAnchored(dir, anchor); err != nil || res.Unacknowledged != 2 || res.AnchorSeq != 45 {
		t.Fatalf("anchor ahead of the head: %+v, %v", res, err)
	}
	if _, err := Open(dir, Options{Anchor: filepath.Join(dir, "anchor")}); err == nil || !strings.Contains(err.Error(), "inside the log directory") {
		t.Errorf("Open with the anchor inside the log: %v", err)
	}
}

// Verify may run while the node appends: the anchor is read first, so the
// records written meanwhile are beyond it, never missing below it.
func TestVerifyAnchoredWhileAppending(t *testing.T) {
	base := t.TempDir()
	dir, anchor := filepath.Join(base, "audit"), filepath.Join(base, "anchor")
	verifyWhileAppending(t, dir, Options{MaxFileBytes: 4096, Anchor: anchor}, func() (Result, error) {
		res, err := VerifyDirAnchored(dir, anchor)
		if err == nil && res.AnchorFile != anchor {
			err = fmt.Errorf("anchor not checked: %+v", res)
		}
		return res, err
	})
}

// A head that cannot be written after the anchor was: the batch fails,
// its records stay beyond the head (never cut from under the anchor),
// and the next Append marks them unacknowledged.
func TestHeadFailureAfterTheAnchor(t *testing.T) {
	testutil.RequireRoot(t)
	base := t.TempDir()
	dir, anchor := filepath.Join(base, "audit"), filepath.Join(base, "anchor")
	l := openTest(t, dir, Options{Anchor: anchor})
	appendN(t, l, "a", 3)
	headPath := filepath.Join(dir, HeadFile)
	setImmutable(t, headPath, true)
	t.Cleanup(func() { setImmutable(t, headPath, false) })
	if _, err := l.Append(context.Background(), Event{Op: OpDetach, Target: "eth0"}); !errors.Is(err, syscall.EPERM) {
		t.Fatalf("Append with an immutable head = %v, want EPERM", err)
	}
	if res, err := VerifyDirAnchored(dir, anchor); err != nil || res.LastSeq != 4 || res.Unacknowledged != 1 || res.AnchorSeq != 4 {
		t.Fatalf("after the failure: %+v, %v; want record 4 kept beyond the head", res, err)
	}
	setImmutable(t, headPath, false)
	next, err := l.Append(context.Background(), Event{Op: OpDetach, Target: "eth0"})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	recs, _, err := Tail(dir, 3, nil)
	if err != nil || len(recs) != 3 || recs[1].Op != OpRecover || next.Seq != 6 {
		t.Fatalf("records after recovery: %+v, %v", recs, err)
	}
	if res, err := VerifyDirAnchored(dir, anchor); err != nil || res.Unacknowledged != 0 || res.AnchorSeq != 6 {
		t.Fatalf("after recovery: %+v, %v", res, err)
	}
}
