package audit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Log files are named after the sequence number of their first record, so
// a file's first line can be checked even when it is verified alone.
const (
	filePrefix = "audit-"
	fileSuffix = ".jsonl"
)

func fileName(firstSeq uint64) string {
	return fmt.Sprintf("%s%012d%s", filePrefix, firstSeq, fileSuffix)
}

// firstSeqOf returns the sequence number a log file's name promises for its
// first record, or false when the name is not a log file name.
func firstSeqOf(path string) (uint64, bool) {
	name := filepath.Base(path)
	num, ok := strings.CutPrefix(name, filePrefix)
	num, ok2 := strings.CutSuffix(num, fileSuffix)
	if !ok || !ok2 || num == "" || strings.TrimLeft(num, "0123456789") != "" {
		return 0, false
	}
	seq, err := strconv.ParseUint(num, 10, 64)
	if err != nil || seq == 0 {
		return 0, false
	}
	return seq, true
}

// Files returns the paths of the log files in dir, oldest first. A
// directory that does not exist is an error; an empty one yields none.
func Files(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing audit log: %w", err)
	}
	type file struct {
		seq  uint64
		path string
	}
	var files []file
	for _, e := range entries {
		if seq, ok := firstSeqOf(e.Name()); ok && e.Type().IsRegular() {
			files = append(files, file{seq, filepath.Join(dir, e.Name())})
		}
	}
	slices.SortFunc(files, func(a, b file) int {
		if a.seq != b.seq {
			return cmpUint(a.seq, b.seq)
		}
		return strings.Compare(a.path, b.path)
	})
	paths := make([]string, len(files))
	for i, f := range files {
		paths[i] = f.path
	}
	return paths, nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// syncDir makes a directory's entries durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	return errors.Join(err, d.Close())
}
