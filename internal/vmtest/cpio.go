package vmtest

import (
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// newc cpio header fields, in order; see the kernel's
// Documentation/driver-api/early-userspace/buffer-format.rst.
const cpioMagic = "070701"

// cpioWriter writes an initramfs in the "newc" cpio format the kernel
// unpacks at boot. It creates missing parent directories on demand, since
// the kernel does not, and refuses to write an entry twice.
type cpioWriter struct {
	w    io.Writer
	ino  uint32
	seen map[string]bool
	err  error
}

func newCPIOWriter(w io.Writer) *cpioWriter {
	return &cpioWriter{w: w, ino: 1, seen: map[string]bool{"": true}}
}

// cleanName turns an absolute or relative path into the archive's form:
// relative, slash-separated, without "." or "..".
func cleanName(name string) (string, error) {
	n := strings.TrimPrefix(path.Clean("/"+filepath.ToSlash(name)), "/")
	if n == "" {
		return "", fmt.Errorf("cpio: empty entry name %q", name)
	}
	return n, nil
}

func (c *cpioWriter) header(name string, mode uint32, size int) {
	if c.err != nil {
		return
	}
	if size > 0xffffffff {
		c.err = fmt.Errorf("cpio: %s: %d bytes is too large for newc", name, size)
		return
	}
	hdr := fmt.Sprintf("%s%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		cpioMagic, c.ino, mode, 0, 0, 1, 0, size, 0, 0, 0, 0, len(name)+1, 0)
	c.ino++
	c.write([]byte(hdr + name + "\x00"))
	c.pad(len(hdr) + len(name) + 1)
}

func (c *cpioWriter) write(b []byte) {
	if c.err == nil {
		_, c.err = c.w.Write(b)
	}
}

// pad writes the zeros that align the next field to four bytes.
func (c *cpioWriter) pad(n int) {
	if r := n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

// parents emits the directories leading to name that are not written yet.
func (c *cpioWriter) parents(name string) {
	dir := path.Dir(name)
	if dir == "." || c.seen[dir] {
		return
	}
	c.parents(dir)
	c.seen[dir] = true
	c.header(dir, 0o40755, 0)
}

func (c *cpioWriter) claim(name string) (string, error) {
	n, err := cleanName(name)
	if err != nil {
		return "", err
	}
	if c.seen[n] {
		return "", fmt.Errorf("cpio: %s written twice", n)
	}
	c.parents(n)
	c.seen[n] = true
	return n, nil
}

// Dir adds a directory with the given permission bits.
func (c *cpioWriter) Dir(name string, perm os.FileMode) error {
	n, err := c.claim(name)
	if err != nil {
		return err
	}
	c.header(n, 0o40000|uint32(perm.Perm()), 0)
	return c.err
}

// File adds a regular file holding data.
func (c *cpioWriter) File(name string, perm os.FileMode, data []byte) error {
	n, err := c.claim(name)
	if err != nil {
		return err
	}
	c.header(n, 0o100000|uint32(perm.Perm()), len(data))
	c.write(data)
	c.pad(len(data))
	return c.err
}

// CopyFile adds the host file src under name, keeping its permission bits.
func (c *cpioWriter) CopyFile(name, src string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return c.File(name, fi.Mode(), data)
}

// Symlink adds a symbolic link name pointing at target.
func (c *cpioWriter) Symlink(name, target string) error {
	n, err := c.claim(name)
	if err != nil {
		return err
	}
	c.header(n, 0o120777, len(target))
	c.write([]byte(target))
	c.pad(len(target))
	return c.err
}

// Close writes the trailer; the underlying writer stays open.
func (c *cpioWriter) Close() error {
	c.header("TRAILER!!!", 0, 0)
	return c.err
}
