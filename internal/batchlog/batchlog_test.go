package batchlog

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder is a destination that keeps every write(2)-like call.
type recorder struct {
	mu     sync.Mutex
	writes [][]byte
	fail   error
	wrote  chan struct{}
}

func newRecorder() *recorder { return &recorder{wrote: make(chan struct{}, 1024)} }

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return 0, r.fail
	}
	r.writes = append(r.writes, append([]byte(nil), p...))
	r.wrote <- struct{}{}
	return len(p), nil
}

func (r *recorder) all() (string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return string(bytes.Join(r.writes, nil)), len(r.writes)
}

func TestLinesArriveBatchedWholeAndInOrder(t *testing.T) {
	dst := newRecorder()
	w := New(dst, time.Hour) // only Flush writes
	var want strings.Builder
	for i := range 100 {
		line := fmt.Sprintf("line %d\n", i)
		want.WriteString(line)
		if _, err := w.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	if _, n := dst.all(); n != 0 {
		t.Fatalf("%d writes before the batch was due", n)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	got, n := dst.all()
	if got != want.String() || n != 1 {
		t.Fatalf("got %d writes of %q, want one of the 100 lines in order", n, got)
	}
}

func TestBatchIsWrittenAfterTheDelay(t *testing.T) {
	dst := newRecorder()
	w := New(dst, time.Millisecond)
	w.Write([]byte("a\n"))
	<-dst.wrote // no Flush: the timer writes it
	if got, _ := dst.all(); got != "a\n" {
		t.Fatalf("got %q", got)
	}
	w.Write([]byte("b\n")) // the timer is armed again for the next batch
	<-dst.wrote
	if got, n := dst.all(); got != "a\nb\n" || n != 2 {
		t.Fatalf("got %d writes of %q", n, got)
	}
}

func TestFullBatchIsWrittenAtOnce(t *testing.T) {
	dst := newRecorder()
	w := New(dst, time.Hour)
	big := bytes.Repeat([]byte("x"), MaxBatch-1)
	w.Write(append(big, '\n'))
	if got, n := dst.all(); n != 1 || len(got) != MaxBatch {
		t.Fatalf("%d writes, %d bytes: a full batch must be written at once", n, len(got))
	}
}

func TestConcurrentLinesStayWhole(t *testing.T) {
	dst := newRecorder()
	w := New(dst, 50*time.Microsecond)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				w.Write([]byte(fmt.Sprintf("goroutine %d line %d end\n", g, i)))
			}
		})
	}
	wg.Wait()
	w.Close()
	got, _ := dst.all()
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	if len(lines) != 8*500 {
		t.Fatalf("%d lines, want %d", len(lines), 8*500)
	}
	next := map[string]int{}
	for _, l := range lines {
		var g, i int
		if _, err := fmt.Sscanf(l, "goroutine %d line %d end", &g, &i); err != nil {
			t.Fatalf("torn line %q", l)
		}
		key := fmt.Sprint(g)
		if i != next[key] {
			t.Fatalf("goroutine %d: line %d after %d", g, i, next[key]-1)
		}
		next[key]++
	}
}

func TestFailedBatchIsReported(t *testing.T) {
	dst := newRecorder()
	dst.fail = errors.New("disk full")
	w := New(dst, time.Hour)
	if _, err := w.Write([]byte("a\n")); err != nil {
		t.Fatalf("queued write: %v", err)
	}
	if err := w.Flush(); err == nil {
		t.Fatal("a failed batch was not reported")
	}
	dst.mu.Lock()
	dst.fail = nil
	dst.mu.Unlock()
	if err := w.Flush(); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
}
