package vmtest

import (
	"errors"
	"os"
	"testing"
)

func TestCheckStatic(t *testing.T) {
	tests := []struct {
		file   string
		static bool
	}{
		{"/bin/busybox", true}, // busybox-static
		{"/bin/ls", false},     // coreutils, linked against libc
	}
	for _, tt := range tests {
		if _, err := os.Stat(tt.file); err != nil {
			t.Logf("%s: %v; not checked", tt.file, err)
			continue
		}
		err := checkStatic(tt.file)
		if tt.static && err != nil {
			t.Errorf("%s: %v, want static", tt.file, err)
		}
		if !tt.static && !errors.Is(err, ErrNotStatic) {
			t.Errorf("%s: %v, want ErrNotStatic", tt.file, err)
		}
	}
	if err := checkStatic("cpio_test.go"); err == nil {
		t.Error("a source file passed as a static binary")
	}
}

func TestModuleRoot(t *testing.T) {
	root := t.TempDir()
	pkg := root + "/internal/pkg"
	if err := os.MkdirAll(pkg, 0o755); err != nil {
		t.Fatal(err)
	}
	if got := moduleRoot(pkg); got != pkg {
		t.Errorf("without go.mod: moduleRoot = %s, want the directory itself", got)
	}
	if err := os.WriteFile(root+"/go.mod", []byte("module x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := moduleRoot(pkg); got != root {
		t.Errorf("moduleRoot = %s, want %s", got, root)
	}
}
