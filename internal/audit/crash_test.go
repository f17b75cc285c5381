package audit

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// childDirEnv switches the test binary into a writer that appends to the
// log in the named directory until it is killed, printing each
// acknowledged sequence number.
const childDirEnv = "AEGIS_AUDIT_TEST_WRITER"

func TestMain(m *testing.M) {
	if dir := os.Getenv(childDirEnv); dir != "" {
		os.Exit(runWriter(dir))
	}
	os.Exit(m.Run())
}

func runWriter(dir string) int {
	l, err := Open(dir, Options{MaxFileBytes: 8 << 10})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				r, err := l.Append(context.Background(), Event{Op: OpMapAdd, Target: fmt.Sprintf("w%d-%d", w, i),
					Details: map[string]int{"pad": i}})
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				mu.Lock()
				fmt.Fprintln(os.Stdout, r.Seq)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return 0
}

// killWriter runs a writer on dir, SIGKILLs it once it has acknowledged
// at least n more records, and returns the highest acknowledged seq.
func killWriter(t *testing.T, dir string, n int) uint64 {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), childDirEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	var acked uint64
	sc := bufio.NewScanner(out)
	for seen := 0; seen < n && sc.Scan(); seen++ {
		s, err := strconv.ParseUint(sc.Text(), 10, 64)
		if err != nil {
			t.Fatalf("writer said %q", sc.Text())
		}
		acked = max(acked, s)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Acknowledgements already in the pipe count too.
	for sc.Scan() {
		if s, err := strconv.ParseUint(sc.Text(), 10, 64); err == nil {
			acked = max(acked, s)
		}
	}
	err = cmd.Wait()
	killed = true
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		t.Fatalf("writer exited on its own: %v", err)
	}
	if acked == 0 {
		t.Fatal("writer acknowledged nothing")
	}
	return acked
}

func TestKill9KeepsAcknowledgedRecords(t *testing.T) {
	dir := t.TempDir()
	for round := range 4 {
		acked := killWriter(t, dir, 300+round*97)
		res, err := VerifyDir(dir)
		if err != nil {
			t.Fatalf("round %d: VerifyDir after kill -9: %v", round, err)
		}
		if res.LastSeq < acked || res.HeadSeq < acked {
			t.Fatalf("round %d: acknowledged %d but the log ends at %d (head %d)", round, acked, res.LastSeq, res.HeadSeq)
		}
		t.Logf("round %d: acked %d, log ends at %d, head %d, torn %d bytes, %d files",
			round, acked, res.LastSeq, res.HeadSeq, res.TornBytes, res.Files)

		// Open resumes after the last complete record.
		l := openTest(t, dir, Options{MaxFileBytes: 8 << 10})
		next := appendN(t, l, "after-kill", 1)[0]
		l.Close()
		after := mustVerifyDir(t, dir)
		if next.Seq <= res.LastSeq || after.LastSeq != next.Seq || after.TornBytes != 0 || after.Unacknowledged != 0 {
			t.Fatalf("round %d: after reopening, appended %d and VerifyDir = %+v", round, next.Seq, after)
		}
	}
}

func TestTornTailIsRemovedOnOpen(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, Options{})
	appendN(t, l, "t", 5)
	l.Close()
	files, _ := Files(dir)

	// Half of the line a crashed writer would have added as record 6.
	last := readLines(t, files[0])[4]
	r, _ := parseLine(last[:len(last)-1])
	torn, _ := newRecord(Event{Op: OpDetach, Target: "eth0"}, time.Now())
	line, _ := seal(&torn, r.Seq+1, r.Hash)
	f, _ := os.OpenFile(files[0], os.O_WRONLY|os.O_APPEND, 0)
	f.Write(line[:len(line)/2])
	f.Close()

	res := mustVerifyDir(t, dir)
	if res.LastSeq != 5 || res.TornBytes != int64(len(line)/2) {
		t.Fatalf("VerifyDir with a torn tail = %+v", res)
	}

	l = openTest(t, dir, Options{})
	next := appendN(t, l, "n", 1)[0]
	l.Close()
	recs, _, _ := readRecords(files[0], 0)
	if len(recs) != 7 || recs[5].Op != OpRecover || next.Seq != 7 {
		t.Fatalf("after Open: %d records, record 6 %+v", len(recs), recs[5])
	}
	var d map[string]int64
	json.Unmarshal(recs[5].Details, &d)
	if d["torn_bytes_removed"] != int64(len(line)/2) {
		t.Errorf("recovery record details %s", recs[5].Details)
	}
	if res := mustVerifyDir(t, dir); res.TornBytes != 0 || res.LastSeq != 7 {
		t.Errorf("VerifyDir after Open = %+v", res)
	}
}

func TestUnacknowledgedRecordsAreMarked(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, Options{})
	appendN(t, l, "a", 5)
	l.Close()
	headBytes, err := os.ReadFile(dir + "/" + HeadFile)
	if err != nil {
		t.Fatal(err)
	}
	l = openTest(t, dir, Options{})
	appendN(t, l, "b", 2)
	l.Close()
	// As if the writer died after syncing records 6 and 7 but before
	// moving the head past them.
	os.WriteFile(dir+"/"+HeadFile, headBytes, 0o640)

	res := mustVerifyDir(t, dir)
	if res.LastSeq != 7 || res.HeadSeq != 5 || res.Unacknowledged != 2 {
		t.Fatalf("VerifyDir = %+v", res)
	}
	l = openTest(t, dir, Options{})
	if seq, _ := l.Head(); seq != 8 {
		t.Fatalf("Head after Open = %d, want the recovery record 8", seq)
	}
	l.Close()
	files, _ := Files(dir)
	recs, _, _ := readRecords(files[len(files)-1], 0)
	rec := recs[len(recs)-1]
	var d map[string]uint64
	json.Unmarshal(rec.Details, &d)
	if rec.Op != OpRecover || d["unacknowledged_from"] != 6 || d["unacknowledged_to"] != 7 {
		t.Errorf("recovery record %+v", rec)
	}
	if res := mustVerifyDir(t, dir); res.Unacknowledged != 0 || res.LastSeq != 8 {
		t.Errorf("VerifyDir after Open = %+v", res)
	}
}

// TestUnacknowledgedRecordsBeforeRotation covers a crash after a group
// commit that rotated: the head still points into the file before the
// newest one.
func TestUnacknowledgedRecordsBeforeRotation(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, Options{MaxFileBytes: 1500})
	recs := appendN(t, l, "r", 20)
	l.Close()
	files, _ := Files(dir)
	if len(files) < 3 {
		t.Fatalf("%d files", len(files))
	}
	newest, _ := firstSeqOf(files[len(files)-1])
	stale := recs[newest-3] // two records before the newest file
	slot := head{Seq: stale.Seq, Hash: stale.Hash}.slot()
	os.WriteFile(dir+"/"+HeadFile, append(slot, slot...), 0o640)

	res := mustVerifyDir(t, dir)
	if res.Unacknowledged != 20-stale.Seq {
		t.Fatalf("VerifyDir = %+v", res)
	}
	l = openTest(t, dir, Options{MaxFileBytes: 1500})
	if seq, _ := l.Head(); seq != 21 {
		t.Errorf("Head after Open = %d, want the recovery record 21", seq)
	}
	l.Close()
	if res := mustVerifyDir(t, dir); res.LastSeq != 21 || res.Unacknowledged != 0 {
		t.Errorf("VerifyDir after Open = %+v", res)
	}
}
