//go:build linux

package audit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/aegis-edge/aegis/internal/testutil"
	"golang.org/x/sys/unix"
)

// fsImmutableFL is FS_IMMUTABLE_FL from linux/fs.h: no process, root
// included, may write, truncate or replace the file.
const fsImmutableFL = 0x10

// setImmutable sets or clears a file's immutable attribute, as chattr
// does; unlike chmod, it stops root.
func setImmutable(t *testing.T, path string, on bool) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	flags, err := unix.IoctlGetInt(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	if err != nil {
		t.Fatalf("reading attributes of %s: %v", path, err)
	}
	if on {
		flags |= fsImmutableFL
	} else {
		flags &^= fsImmutableFL
	}
	if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, flags); err != nil {
		t.Fatalf("setting attributes of %s: %v", path, err)
	}
}

// mountTmpfs mounts a tmpfs of the given size for the test.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size="+size); err != nil {
		t.Fatalf("mounting tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
			t.Errorf("unmounting %s: %v", mnt, err)
		}
	})
	return mnt
}

// snapshot is every file of a log directory and its contents.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[string]string)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = string(b)
	}
	return m
}

func sameSnapshot(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestFullDiskFailsClosed(t *testing.T) {
	testutil.RequireRoot(t)
	mnt := mountTmpfs(t, "64k")
	filler := filepath.Join(mnt, "filler")
	if err := os.WriteFile(filler, make([]byte, 16<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(mnt, "audit")
	l := openTest(t, dir, Options{})
	pad := strings.Repeat("x", 1500)

	var last Record
	var err error
	for range 100 {
		var r Record
		r, err = l.Append(context.Background(), Event{Op: OpMapAdd, Target: "10.0.0.1", Details: map[string]string{"pad": pad}})
		if err != nil {
			break
		}
		last = r
	}
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("Append on a full disk = %v, want ENOSPC", err)
	}
	if last.Seq == 0 {
		t.Fatal("no record fit")
	}
	before := snapshot(t, dir)
	if _, err := l.Append(context.Background(), Event{Op: OpMapAdd, Target: "10.0.0.2", Details: map[string]string{"pad": pad}}); err == nil {
		t.Fatal("a second Append on a full disk succeeded")
	}
	if !sameSnapshot(before, snapshot(t, dir)) {
		t.Error("a refused Append changed the log")
	}
	if seq, hash := l.Head(); seq != last.Seq || hash != last.Hash {
		t.Errorf("Head = %d after a refused Append, want %d", seq, last.Seq)
	}
	res := mustVerifyDir(t, dir)
	if res.LastSeq != last.Seq || res.TornBytes != 0 || res.Unacknowledged != 0 {
		t.Errorf("VerifyDir after ENOSPC = %+v, want a clean log ending at %d", res, last.Seq)
	}

	// With space again, the log continues where it was.
	os.Remove(filler)
	next, err := l.Append(context.Background(), Event{Op: OpMode, Target: "monitor"})
	if err != nil {
		t.Fatalf("Append after freeing space: %v", err)
	}
	if next.Seq != last.Seq+1 || next.Prev != last.Hash {
		t.Errorf("record after recovery: seq %d prev %s, want %d after %s", next.Seq, next.Prev, last.Seq+1, last.Hash)
	}
	l.Close()
	mustVerifyDir(t, dir)
}

// TestFullDiskConcurrentAppends checks group commit under failure: the
// log holds exactly the records that were acknowledged.
func TestFullDiskConcurrentAppends(t *testing.T) {
	testutil.RequireRoot(t)
	dir := filepath.Join(mountTmpfs(t, "64k"), "audit")
	l := openTest(t, dir, Options{})
	pad := strings.Repeat("y", 700)
	var mu sync.Mutex
	acked := make(map[string]bool)
	refused := 0
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				target := fmt.Sprintf("w%d-%d", w, i)
				_, err := l.Append(context.Background(), Event{Op: OpMapAdd, Target: target, Details: pad})
				mu.Lock()
				if err == nil {
					acked[target] = true
				} else {
					refused++
				}
				mu.Unlock()
				if err != nil {
					if !errors.Is(err, syscall.ENOSPC) {
						t.Errorf("Append = %v, want ENOSPC", err)
					}
					return
				}
			}
		})
	}
	wg.Wait()
	l.Close()

	res := mustVerifyDir(t, dir)
	files, _ := Files(dir)
	inLog := make(map[string]bool)
	for _, p := range files {
		recs, _, _ := readRecords(p, 0)
		for _, r := range recs {
			inLog[r.Target] = true
		}
	}
	if len(inLog) != len(acked) || uint64(len(acked)) != res.Records || res.Unacknowledged != 0 {
		t.Errorf("%d acknowledged, %d in the log, VerifyDir %+v", len(acked), len(inLog), res)
	}
	for target := range acked {
		if !inLog[target] {
			t.Errorf("acknowledged %s is not in the log", target)
		}
	}
	if refused != 8 || len(acked) == 0 {
		t.Errorf("%d refused, %d acknowledged: the test did not fill the disk as intended", refused, len(acked))
	}
}

func TestImmutableFilesFailClosed(t *testing.T) {
	testutil.RequireRoot(t)
	for _, which := range []string{"log file", "head"} {
		t.Run(which, func(t *testing.T) {
			dir := t.TempDir()
			l := openTest(t, dir, Options{})
			last := appendN(t, l, "a", 3)[2]
			files, _ := Files(dir)
			target := files[0]
			if which == "head" {
				target = filepath.Join(dir, HeadFile)
			}
			before := snapshot(t, dir)
			setImmutable(t, target, true)
			t.Cleanup(func() { setImmutable(t, target, false) })

			_, err := l.Append(context.Background(), Event{Op: OpDetach, Target: "eth0"})
			if !errors.Is(err, syscall.EPERM) {
				t.Fatalf("Append with an immutable %s = %v, want EPERM", which, err)
			}
			if !sameSnapshot(before, snapshot(t, dir)) {
				t.Errorf("a refused Append changed the log")
			}
			if res := mustVerifyDir(t, dir); res.LastSeq != 3 || res.Unacknowledged != 0 {
				t.Errorf("VerifyDir = %+v", res)
			}

			setImmutable(t, target, false)
			next, err := l.Append(context.Background(), Event{Op: OpDetach, Target: "eth0"})
			if err != nil || next.Seq != 4 || next.Prev != last.Hash {
				t.Fatalf("Append once writable again = %+v, %v", next, err)
			}
			l.Close()
			mustVerifyDir(t, dir)

			// Open refuses a log it could not append to.
			setImmutable(t, target, true)
			if l, err := Open(dir, Options{}); !errors.Is(err, syscall.EPERM) {
				if l != nil {
					l.Close()
				}
				t.Errorf("Open with an immutable %s = %v, want EPERM", which, err)
			}
		})
	}
}

func TestReadOnlyMountFailsClosed(t *testing.T) {
	testutil.RequireRoot(t)
	src := t.TempDir()
	l := openTest(t, src, Options{})
	appendN(t, l, "a", 2)
	l.Close()

	ro := filepath.Join(t.TempDir(), "ro")
	os.Mkdir(ro, 0o755)
	if err := unix.Mount(src, ro, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind mount: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(ro, unix.MNT_DETACH) })
	if err := unix.Mount("", ro, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Fatalf("remounting read-only: %v", err)
	}
	before := snapshot(t, src)
	if l, err := Open(ro, Options{}); !errors.Is(err, syscall.EROFS) {
		if l != nil {
			l.Close()
		}
		t.Fatalf("Open on a read-only mount = %v, want EROFS", err)
	}
	if !sameSnapshot(before, snapshot(t, src)) {
		t.Error("a refused Open changed the log")
	}
	// Verifying needs no write access.
	if res := mustVerifyDir(t, ro); res.LastSeq != 2 {
		t.Errorf("VerifyDir on a read-only mount = %+v", res)
	}
}
