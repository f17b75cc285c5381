package audit

import (
	"bytes"
	"fmt"
	"io"
	"os"
)

// Tail returns the last n records of the log in dir for which match is
// true (nil matches every record), oldest first, and the sequence number
// of the log's last record. It reads the newest files only as far back as
// needed and does not verify: lines that are not records are skipped.
func Tail(dir string, n int, match func(Record) bool) ([]Record, uint64, error) {
	files, err := Files(dir)
	if err != nil {
		return nil, 0, err
	}
	var (
		out  [][]Record // per file, newest file first
		got  int
		last uint64
	)
	for i := len(files) - 1; i >= 0; i-- {
		recs, _, err := readRecords(files[i], 0)
		if err != nil {
			return nil, 0, err
		}
		if len(recs) > 0 && last == 0 {
			last = recs[len(recs)-1].Seq
		}
		var kept []Record
		for _, r := range recs {
			if match == nil || match(r) {
				kept = append(kept, r)
			}
		}
		out = append(out, kept)
		got += len(kept)
		if got >= n && last != 0 {
			break
		}
	}
	var all []Record
	for i := len(out) - 1; i >= 0; i-- {
		all = append(all, out[i]...)
	}
	if n <= 0 {
		return nil, last, nil
	}
	if len(all) > n {
		all = all[len(all)-n:]
	}
	return all, last, nil
}

// readRecords reads the complete lines of path from offset on and
// returns the records among them and the offset after the last complete
// line.
func readRecords(path string, offset int64) ([]Record, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, offset, fmt.Errorf("reading audit log: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.NewSectionReader(f, offset, 1<<62))
	if err != nil {
		return nil, offset, fmt.Errorf("reading audit log %s: %w", path, err)
	}
	end := bytes.LastIndexByte(data, '\n') + 1
	var recs []Record
	for line := range bytes.Lines(data[:end]) {
		if r, err := parseLine(bytes.TrimSuffix(line, []byte("\n"))); err == nil {
			recs = append(recs, r)
		}
	}
	return recs, offset + int64(end), nil
}

// Follower reads records as they are appended to a log, across rotation.
// It polls: call Next when you want to know what is new.
type Follower struct {
	dir   string
	path  string // current file, "" before the log has one
	off   int64
	after uint64 // last sequence number returned
}

// NewFollower returns a follower whose Next returns the records after
// sequence number after.
func NewFollower(dir string, after uint64) (*Follower, error) {
	fl := &Follower{dir: dir, after: after}
	files, err := Files(dir)
	if err != nil {
		return nil, err
	}
	for _, p := range files {
		if seq, _ := firstSeqOf(p); seq <= after+1 || fl.path == "" {
			fl.path = p
		}
	}
	return fl, nil
}

// Next returns the records appended since the last call, oldest first.
func (fl *Follower) Next() ([]Record, error) {
	var out []Record
	for {
		if fl.path != "" {
			recs, err := fl.read()
			if err != nil {
				return out, err
			}
			out = append(out, recs...)
		}
		next, err := fl.nextFile()
		if err != nil || next == "" {
			return out, err
		}
		if fl.path != "" {
			// A newer file exists, so the current one is complete:
			// read what was added to it since the read above.
			recs, err := fl.read()
			if err != nil {
				return out, err
			}
			out = append(out, recs...)
		}
		fl.path, fl.off = next, 0
	}
}

func (fl *Follower) read() ([]Record, error) {
	recs, off, err := readRecords(fl.path, fl.off)
	if err != nil {
		return nil, err
	}
	fl.off = off
	kept := recs[:0]
	for _, r := range recs {
		if r.Seq > fl.after {
			kept = append(kept, r)
			fl.after = r.Seq
		}
	}
	return kept, nil
}

// nextFile returns the file after the current one, or "".
func (fl *Follower) nextFile() (string, error) {
	files, err := Files(fl.dir)
	if err != nil {
		return "", err
	}
	if fl.path == "" {
		if len(files) > 0 {
			return files[0], nil
		}
		return "", nil
	}
	cur, _ := firstSeqOf(fl.path)
	for _, p := range files {
		if seq, _ := firstSeqOf(p); seq > cur {
			return p, nil
		}
	}
	return "", nil
}
