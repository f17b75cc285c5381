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
	"strings"
	"sync"
	"testing"
	"time"
)

// testClock returns a clock that starts at a fixed time with nanoseconds
// and advances by a little over a millisecond per reading.
func testClock() func() time.Time {
	var mu sync.Mutex
	now := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(time.Millisecond + time.Nanosecond)
		return now
	}
}

func openTest(t testing.TB, dir string, opts Options) *Log {
	t.Helper()
	if opts.Now == nil {
		opts.Now = testClock()
	}
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// appendN appends n events with targets "t1".."tn" after a prefix.
func appendN(t testing.TB, l *Log, prefix string, n int) []Record {
	t.Helper()
	var recs []Record
	for i := range n {
		r, err := l.Append(context.Background(), Event{
			Op: OpMapAdd, Target: fmt.Sprintf("%s%d", prefix, i+1), Actor: "uid=0 pid=42",
			Details: map[string]any{"list": "block", "ttl": "1h"},
		})
		if err != nil {
			t.Fatalf("Append %d: %v", i+1, err)
		}
		recs = append(recs, r)
	}
	return recs
}

func mustVerifyDir(t testing.TB, dir string) Result {
	t.Helper()
	res, err := VerifyDir(dir)
	if err != nil {
		t.Fatalf("VerifyDir: %v", err)
	}
	return res
}

func TestAppendWritesVerifiableRecords(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, Options{})
	recs := appendN(t, l, "10.0.0.", 3)
	failed, err := l.Append(context.Background(), Event{Op: OpAttach, Target: "eth0", Err: errors.New("no such device")})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	for i, r := range recs {
		if r.Seq != uint64(i+1) {
			t.Errorf("record %d has seq %d", i+1, r.Seq)
		}
	}
	if recs[0].Prev != Genesis || recs[1].Prev != recs[0].Hash || recs[2].Prev != recs[1].Hash {
		t.Errorf("records do not chain: %+v", recs)
	}
	if failed.Result != ResultFailed || failed.Error != "no such device" || failed.Actor != SystemActor {
		t.Errorf("failed event recorded as %+v", failed)
	}

	files, err := Files(dir)
	if err != nil || len(files) != 1 || filepath.Base(files[0]) != "audit-000000000001.jsonl" {
		t.Fatalf("Files = %v, %v", files, err)
	}
	data, _ := os.ReadFile(files[0])
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("file has %d lines, want 4:\n%s", len(lines), data)
	}
	// Each line is one JSON object carrying every field, its time with
	// nanoseconds, and round-trips to the record Append returned.
	var first Record
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	if string(recs[0].Line()) != lines[0] {
		t.Errorf("Line() = %s, file has %s", recs[0].Line(), lines[0])
	}
	if !first.Time.Equal(recs[0].Time) || first.Hash != recs[0].Hash || string(first.Details) != `{"list":"block","ttl":"1h"}` {
		t.Errorf("line 1 decodes to %+v, Append returned %+v", first, recs[0])
	}
	var raw map[string]any
	json.Unmarshal([]byte(lines[0]), &raw)
	if ts, _ := raw["time"].(string); ts != recs[0].Time.Format(timeLayout) || !strings.Contains(ts, ".") {
		t.Errorf("time is %q, want RFC 3339 with nanoseconds", ts)
	}

	res := mustVerifyDir(t, dir)
	if res.Records != 4 || res.FirstSeq != 1 || res.LastSeq != 4 || !res.Anchored || res.HeadSeq != 4 || res.TornBytes != 0 {
		t.Errorf("VerifyDir = %+v", res)
	}
	if seq, hash, err := ReadHead(dir); err != nil || seq != 4 || hash != failed.Hash {
		t.Errorf("ReadHead = %d %s %v, want 4 %s", seq, hash, err, failed.Hash)
	}
}

func TestReopenContinuesChain(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, Options{})
	first := appendN(t, l, "a", 2)
	l.Close()

	l = openTest(t, dir, Options{})
	if seq, hash := l.Head(); seq != 2 || hash != first[1].Hash {
		t.Fatalf("reopened Head = %d %s", seq, hash)
	}
	next := appendN(t, l, "b", 1)
	if next[0].Seq != 3 || next[0].Prev != first[1].Hash {
		t.Errorf("record after reopen: %+v", next[0])
	}
	l.Close()
	if res := mustVerifyDir(t, dir); res.LastSeq != 3 {
		t.Errorf("VerifyDir = %+v", res)
	}
}

func TestRotationContinuesChain(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, Options{MaxFileBytes: 1500})
	recs := appendN(t, l, "r", 40)
	l.Close()

	files, _ := Files(dir)
	if len(files) < 5 {
		t.Fatalf("%d files after 40 records of ~330 bytes with a 1500-byte limit", len(files))
	}
	for i, p := range files {
		st, _ := os.Stat(p)
		if st.Size() > 1500 {
			t.Errorf("%s is %d bytes, over the limit", p, st.Size())
		}
		if i == 0 {
			continue
		}
		// The first record of each file chains to the last of the one before.
		first, _, _ := readRecords(p, 0)
		prev, _, _ := readRecords(files[i-1], 0)
		if first[0].Prev != prev[len(prev)-1].Hash || filepath.Base(p) != fileName(first[0].Seq) {
			t.Errorf("%s does not continue %s", p, files[i-1])
		}
	}
	res := mustVerifyDir(t, dir)
	if res.Records != 40 || res.Files != len(files) {
		t.Errorf("VerifyDir = %+v, want 40 records in %d files", res, len(files))
	}
	// Verify over the files named explicitly agrees, and uses the head.
	res, err := Verify(files...)
	if err != nil || res.LastSeq != recs[39].Seq || !res.Anchored {
		t.Errorf("Verify(files) = %+v, %v", res, err)
	}
	// The tail of the log alone verifies too, without record 1.
	res, err = Verify(files[2:]...)
	if err != nil || res.FirstSeq == 1 || res.LastSeq != 40 {
		t.Errorf("Verify(files[2:]) = %+v, %v", res, err)
	}
}

func TestAppendHammer(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, Options{MaxFileBytes: 16 << 10})
	const workers, each = 8, 150
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				_, err := l.Append(context.Background(), Event{Op: OpMapAdd, Target: fmt.Sprintf("w%d-%d", w, i)})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	l.Close()

	res := mustVerifyDir(t, dir)
	if res.Records != workers*each || res.HeadSeq != workers*each {
		t.Fatalf("VerifyDir = %+v, want %d records", res, workers*each)
	}
	seen := make(map[string]int)
	files, _ := Files(dir)
	for _, p := range files {
		recs, _, _ := readRecords(p, 0)
		for _, r := range recs {
			seen[r.Target]++
		}
	}
	for w := range workers {
		for i := range each {
			if n := seen[fmt.Sprintf("w%d-%d", w, i)]; n != 1 {
				t.Errorf("w%d-%d recorded %d times", w, i, n)
			}
		}
	}
}

func TestOpenIsExclusive(t *testing.T) {
	dir := t.TempDir()
	openTest(t, dir, Options{})
	if l, err := Open(dir, Options{}); !errors.Is(err, ErrLocked) {
		if l != nil {
			l.Close()
		}
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
}

func TestAppendAfterClose(t *testing.T) {
	l := openTest(t, t.TempDir(), Options{})
	l.Close()
	if _, err := l.Append(context.Background(), Event{Op: OpLoad}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close = %v, want ErrClosed", err)
	}
}

func TestAppendRejectsBadEvents(t *testing.T) {
	l := openTest(t, t.TempDir(), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Append(ctx, Event{Op: OpLoad}); !errors.Is(err, context.Canceled) {
		t.Errorf("Append with a cancelled context = %v", err)
	}
	if _, err := l.Append(context.Background(), Event{Target: "x"}); err == nil {
		t.Error("Append without an operation succeeded")
	}
	if _, err := l.Append(context.Background(), Event{Op: OpLoad, Details: func() {}}); err == nil {
		t.Error("Append with unencodable details succeeded")
	}
	// None of them took a sequence number.
	r := appendN(t, l, "x", 1)
	if r[0].Seq != 1 {
		t.Errorf("first good record has seq %d", r[0].Seq)
	}
}

func TestLargeFieldsAreBounded(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, Options{})
	many := make([]string, 20000)
	for i := range many {
		many[i] = fmt.Sprintf("10.%d.%d.0/24", i>>8, i&0xff)
	}
	r, err := l.Append(context.Background(), Event{Op: OpMapBulk, Target: strings.Repeat("é", 5000), Details: many})
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Omitted int    `json:"omitted_bytes"`
		Sum     string `json:"sha256"`
	}
	if err := json.Unmarshal(r.Details, &d); err != nil || d.Omitted < maxDetailsBytes || len(d.Sum) != 64 {
		t.Errorf("oversized details recorded as %s", r.Details)
	}
	if len(r.Target) > maxFieldBytes+len("…") || !strings.HasSuffix(r.Target, "…") {
		t.Errorf("target of %d bytes not clipped", len(r.Target))
	}
	l.Close()
	mustVerifyDir(t, dir)
}

func TestRecordsGoToSlog(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	l := openTest(t, t.TempDir(), Options{Logger: logger})
	ok := appendN(t, l, "s", 1)[0]
	if _, err := l.Append(context.Background(), Event{Op: OpLimitRefused, Target: "10.0.0.1", Result: ResultRefused, Err: errors.New("IPv4 blocklist full")}); err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	for line := range strings.Lines(buf.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("slog line %q: %v", line, err)
		}
		got = append(got, m)
	}
	if len(got) != 2 {
		t.Fatalf("slog got %d lines, want 2:\n%s", len(got), buf.String())
	}
	details, _ := got[0]["details"].(map[string]any)
	if got[0]["level"] != "INFO" || got[0]["op"] != OpMapAdd || got[0]["hash"] != ok.Hash || details["list"] != "block" {
		t.Errorf("first slog line: %v", got[0])
	}
	if got[1]["level"] != "WARN" || got[1]["result"] != ResultRefused || got[1]["error"] != "IPv4 blocklist full" {
		t.Errorf("refusal slog line: %v", got[1])
	}
}

func TestVerifyWhileAppending(t *testing.T) {
	dir := t.TempDir()
	verifyWhileAppending(t, dir, Options{MaxFileBytes: 4096}, func() (Result, error) { return VerifyDir(dir) })
}

// verifyWhileAppending appends 401 records to a log in dir from several
// goroutines, running verify all along: it must never fail.
func verifyWhileAppending(t *testing.T, dir string, opts Options, verify func() (Result, error)) {
	t.Helper()
	l := openTest(t, dir, opts)
	appendN(t, l, "first", 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() { appendN(t, l, fmt.Sprintf("w%d-", w), 100) })
		}
		wg.Wait()
	}()
	checks := 0
	for running := true; running; checks++ {
		select {
		case <-done:
			running = false
		default:
		}
		if _, err := verify(); err != nil {
			t.Fatalf("verifying a log being written (check %d): %v", checks, err)
		}
	}
	if res, err := verify(); err != nil || res.Records != 401 {
		t.Errorf("verify = %+v, %v after %d checks", res, err, checks)
	}
}
