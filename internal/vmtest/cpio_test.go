package vmtest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

type cpioEntry struct {
	name string
	mode uint32
	data string
}

// readCPIO parses a newc archive independently of the writer: fixed-width
// hex fields, names and data each padded to four bytes.
func readCPIO(t *testing.T, b []byte) []cpioEntry {
	t.Helper()
	var out []cpioEntry
	off := 0
	field := func(i int) uint32 {
		v, err := strconv.ParseUint(string(b[off+6+8*i:off+6+8*i+8]), 16, 32)
		if err != nil {
			t.Fatalf("offset %d field %d: %v", off, i, err)
		}
		return uint32(v)
	}
	align := func(n int) int { return (n + 3) &^ 3 }
	for {
		if off+110 > len(b) || string(b[off:off+6]) != cpioMagic {
			t.Fatalf("no header at offset %d", off)
		}
		mode, size, nameSize := field(1), int(field(6)), int(field(11))
		name := string(b[off+110 : off+110+nameSize-1])
		if b[off+110+nameSize-1] != 0 {
			t.Fatalf("%s: name not NUL-terminated", name)
		}
		dataOff := align(off + 110 + nameSize)
		if name == "TRAILER!!!" {
			if dataOff != len(b) {
				t.Fatalf("%d bytes after the trailer", len(b)-dataOff)
			}
			return out
		}
		out = append(out, cpioEntry{name, mode, string(b[dataOff : dataOff+size])})
		off = align(dataOff + size)
	}
}

func TestCPIOWriterEntries(t *testing.T) {
	var buf bytes.Buffer
	c := newCPIOWriter(&buf)
	steps := []error{
		c.File("/a/b/file", 0o755, []byte("hello")), // odd length: padding
		c.Symlink("bin/sh", "busybox"),
		c.Dir("/a/b/c", 0o700),
		c.File("/a/empty", 0o644, nil),
		c.Close(),
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	want := []cpioEntry{
		{"a", 0o40755, ""},
		{"a/b", 0o40755, ""},
		{"a/b/file", 0o100755, "hello"},
		{"bin", 0o40755, ""},
		{"bin/sh", 0o120777, "busybox"},
		{"a/b/c", 0o40700, ""},
		{"a/empty", 0o100644, ""},
	}
	got := readCPIO(t, buf.Bytes())
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("entries:\n got %v\nwant %v", got, want)
	}
}

func TestCPIOWriterRefusesDuplicates(t *testing.T) {
	c := newCPIOWriter(&bytes.Buffer{})
	if err := c.File("/x/y", 0o644, nil); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"/x/y", "x/y", "/x/../x/y", "/x"} {
		if err := c.File(name, 0o644, nil); err == nil {
			t.Errorf("writing %s again succeeded", name)
		}
	}
	if err := c.File("/", 0o644, nil); err == nil {
		t.Error("writing the root as a file succeeded")
	}
}

// TestCPIOExtractsWithBusybox unpacks the archive with another
// implementation, where busybox is installed (scripts/kernels/install.sh).
func TestCPIOExtractsWithBusybox(t *testing.T) {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox not installed")
	}
	var buf bytes.Buffer
	c := newCPIOWriter(&buf)
	if err := c.File("d/e/f.txt", 0o640, []byte("data\n")); err != nil {
		t.Fatal(err)
	}
	if err := c.Symlink("d/link", "e/f.txt"); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cmd := exec.Command(bb, "cpio", "-i", "-d")
	cmd.Dir, cmd.Stdin = dir, &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("busybox cpio: %v: %s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(dir, "d/link"))
	if err != nil || string(got) != "data\n" {
		t.Errorf("d/link reads %q, %v; want the file's data", got, err)
	}
	fi, err := os.Stat(filepath.Join(dir, "d/e/f.txt"))
	if err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("d/e/f.txt: %v, %v; want mode 0640", fi, err)
	}
}
