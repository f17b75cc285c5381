package audit

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func readLines(t *testing.T, path string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(data, []byte("\n"))
}

func writeLines(t *testing.T, path string, lines [][]byte) {
	t.Helper()
	if err := os.WriteFile(path, bytes.Join(lines, nil), 0o640); err != nil {
		t.Fatal(err)
	}
}

// editLine changes the file's line n (1-based) in place.
func editLine(t *testing.T, path string, n int, edit func([]byte) []byte) {
	t.Helper()
	lines := readLines(t, path)
	lines[n-1] = edit(bytes.Clone(lines[n-1]))
	writeLines(t, path, lines)
}

// reseal rewrites a line with a different target and a hash that matches
// the new contents, as a careful forger would.
func reseal(t *testing.T, line []byte) []byte {
	t.Helper()
	r, err := parseLine(bytes.TrimSuffix(line, []byte("\n")))
	if err != nil {
		t.Fatal(err)
	}
	r.Target = "forged"
	out, err := seal(&r, r.Seq, r.Prev)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestVerifyPinpointsTampering(t *testing.T) {
	tests := []struct {
		name   string
		rotate bool // 30 records in several files instead of 10 in one
		// openMisses: Open, which checks only the files from the head
		// on, does not notice (VerifyDir does).
		openMisses bool
		tamper     func(t *testing.T, dir string, files []string)
		wantSeq    func(files []string) uint64
		reason     string
	}{
		{name: "byte edited in the body", tamper: func(t *testing.T, _ string, f []string) {
			editLine(t, f[0], 5, func(l []byte) []byte { return bytes.Replace(l, []byte(`"target":"t5"`), []byte(`"target":"t6"`), 1) })
		}, wantSeq: seq(5), reason: "edited"},
		{name: "byte edited in the hash", tamper: func(t *testing.T, _ string, f []string) {
			editLine(t, f[0], 5, func(l []byte) []byte { l[len(l)-5] ^= 1; return l })
		}, wantSeq: seq(5), reason: "edited"},
		{name: "edited and hash recomputed", tamper: func(t *testing.T, _ string, f []string) {
			editLine(t, f[0], 5, func(l []byte) []byte { return reseal(t, l) })
		}, wantSeq: seq(6), reason: "hash chain broken"},
		{name: "record removed", tamper: func(t *testing.T, _ string, f []string) {
			lines := readLines(t, f[0])
			writeLines(t, f[0], append(lines[:4:4], lines[5:]...))
		}, wantSeq: seq(5), reason: "missing (removed"},
		{name: "first record removed", tamper: func(t *testing.T, _ string, f []string) {
			writeLines(t, f[0], readLines(t, f[0])[1:])
		}, wantSeq: seq(1), reason: "missing (removed"},
		{name: "records swapped", tamper: func(t *testing.T, _ string, f []string) {
			lines := readLines(t, f[0])
			lines[4], lines[5] = lines[5], lines[4]
			writeLines(t, f[0], lines)
		}, wantSeq: seq(5), reason: "out of order (swapped with record 6)"},
		{name: "record duplicated", tamper: func(t *testing.T, _ string, f []string) {
			lines := readLines(t, f[0])
			writeLines(t, f[0], append(lines[:5:5], append([][]byte{lines[4]}, lines[5:]...)...))
		}, wantSeq: seq(6), reason: "out of order"},
		{name: "last records removed", tamper: func(t *testing.T, _ string, f []string) {
			writeLines(t, f[0], readLines(t, f[0])[:7])
		}, wantSeq: seq(8), reason: "truncated"},
		{name: "cut in the middle of a record", tamper: func(t *testing.T, _ string, f []string) {
			lines := readLines(t, f[0])
			lines[8] = lines[8][:len(lines[8])/2]
			writeLines(t, f[0], lines[:9])
		}, wantSeq: seq(9), reason: "truncated"},
		{name: "last record replaced by garbage", tamper: func(t *testing.T, _ string, f []string) {
			editLine(t, f[0], 10, func([]byte) []byte { return []byte("{\"seq\":10}\n") })
		}, wantSeq: seq(10), reason: "not a valid record"},
		{name: "line appended", tamper: func(t *testing.T, _ string, f []string) {
			lines := readLines(t, f[0])
			writeLines(t, f[0], append(lines, []byte("hello\n")))
		}, wantSeq: seq(11), reason: "not a valid record"},
		{name: "head removed", tamper: func(t *testing.T, dir string, _ []string) {
			os.Remove(filepath.Join(dir, HeadFile))
		}, wantSeq: seq(0), reason: "missing or unreadable"},
		{name: "head rolled back to hide the last records", tamper: func(t *testing.T, dir string, f []string) {
			// Both slots of a forged head point at record 7, whose hash
			// the forger knows; the log is cut after 7.
			r, _ := parseLine(bytes.TrimSuffix(readLines(t, f[0])[6], []byte("\n")))
			slot := head{Seq: 7, Hash: r.Hash}.slot()
			os.WriteFile(filepath.Join(dir, HeadFile), append(slot, slot...), 0o640)
			writeLines(t, f[0], readLines(t, f[0])[:7])
		}, wantSeq: nil, reason: ""},
		{name: "middle file removed", rotate: true, openMisses: true, tamper: func(t *testing.T, _ string, f []string) {
			os.Remove(f[1])
		}, wantSeq: firstOf(1), reason: "missing (removed"},
		{name: "first file removed", rotate: true, openMisses: true, tamper: func(t *testing.T, _ string, f []string) {
			os.Remove(f[0])
		}, wantSeq: seq(1), reason: "missing (removed"},
		{name: "last file removed", rotate: true, tamper: func(t *testing.T, _ string, f []string) {
			os.Remove(f[len(f)-1])
		}, wantSeq: firstOf(-1), reason: "truncated"},
		{name: "first record of a file removed", rotate: true, openMisses: true, tamper: func(t *testing.T, _ string, f []string) {
			writeLines(t, f[1], readLines(t, f[1])[1:])
		}, wantSeq: firstOf(1), reason: "missing (removed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			opts, n := Options{}, 10
			if tt.rotate {
				opts, n = Options{MaxFileBytes: 1500}, 30
			}
			l := openTest(t, dir, opts)
			appendN(t, l, "t", n)
			l.Close()
			files, _ := Files(dir)
			if tt.rotate && len(files) < 3 {
				t.Fatalf("only %d files", len(files))
			}
			var want uint64
			if tt.wantSeq != nil {
				want = tt.wantSeq(files)
			}
			tt.tamper(t, dir, files)

			res, err := VerifyDir(dir)
			if tt.wantSeq == nil {
				// A rewrite of the head together with the log is out of
				// reach of the chain (see the package documentation).
				if err != nil {
					t.Fatalf("VerifyDir = %v", err)
				}
				return
			}
			var te *TamperError
			if !errors.As(err, &te) || !errors.Is(err, ErrTampered) {
				t.Fatalf("VerifyDir = %+v, %v; want a TamperError", res, err)
			}
			if te.Seq != want || !strings.Contains(te.Reason, tt.reason) {
				t.Errorf("VerifyDir: %v; want record %d, %q", err, want, tt.reason)
			}
			if want > 1 && res.LastSeq != want-1 {
				t.Errorf("VerifyDir verified up to %d, want %d", res.LastSeq, want-1)
			}
			// Open refuses a log whose newest file or head is not as
			// written, rather than chaining onto it.
			if !tt.openMisses {
				if l, err := Open(dir, Options{}); !errors.Is(err, ErrTampered) {
					if l != nil {
						l.Close()
					}
					t.Errorf("Open = %v, want ErrTampered", err)
				}
			}
		})
	}
}

func seq(n uint64) func([]string) uint64 { return func([]string) uint64 { return n } }

// firstOf is the sequence number the i-th file (negative: from the end)
// starts with.
func firstOf(i int) func([]string) uint64 {
	return func(files []string) uint64 {
		if i < 0 {
			i += len(files)
		}
		s, _ := firstSeqOf(files[i])
		return s
	}
}
